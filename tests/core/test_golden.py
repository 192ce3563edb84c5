"""Golden archives: files written by format version 1 keep opening in every later cartfs.

tests/data/golden-v1/ holds archives made once by tests/data/make_golden.py (lz4, zstd, no
compression with 4 KiB chunks, encrypted) and a manifest of what each must contain: every
path with its type, mode, link count, size, SHA-256, symlink target, xattrs and hard-link
group. Each archive is opened read-only straight from the repository (and must not change by
a single byte), compared with the manifest and checked by fsck; a copy is then opened for
writing, changed, reopened and checked again — old archives must stay writable, too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.testing.tree import diff_states, tree_state

DATA = Path(__file__).resolve().parent.parent / "data"
GOLDEN_DIRS = sorted(DATA.glob("golden-v*"))


def cases() -> list[tuple[Path, str, dict[str, Any]]]:
    found = []
    for directory in GOLDEN_DIRS:
        manifest = json.loads((directory / "manifest.json").read_text())
        for name, spec in sorted(manifest["archives"].items()):
            found.append((directory, name, spec))
    return found


CASES = cases()


def test_golden_archives_exist() -> None:
    assert GOLDEN_DIRS, "tests/data/golden-v*/ is missing"
    names = {name for _, name, _ in CASES}
    assert {"lz4.cart", "zstd.cart", "none-4k.cart", "encrypted.cart"} <= names


@pytest.mark.parametrize(("directory", "name", "spec"), CASES,
                         ids=[f"{d.name}/{n}" for d, n, _ in CASES])
def test_golden_archive_reads_back(directory: Path, name: str, spec: dict[str, Any]) -> None:
    path = directory / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with Archive.open(path, readonly=True, passphrase=spec["passphrase"]) as archive:
        assert archive.compression == spec["compression"]
        assert archive.superblock.chunk_size == spec["chunk_size"]
        for key, value in spec["manifest"].items():
            assert archive.manifest()[key] == value
        found = {p: asdict(e) for p, e in tree_state(archive).items()}
        assert found == spec["entries"], "\n".join(diff_states(spec["entries"], found))
        report = fsck(archive)
        assert report.ok, report.problems
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "read-only open wrote"


def test_golden_archives_cover_every_kind_of_entry() -> None:
    """The manifest really holds what the golden set promises to exercise."""
    for _, name, spec in CASES:
        entries = spec["entries"].values()
        types = {e["type"] for e in entries}
        assert {"dir", "file", "symlink", "fifo"} <= types, name
        assert any(e["xattrs"] for e in entries), name
        assert any(e["nlink"] == 2 and e["type"] == "file" for e in entries), name
        assert any(e["size"] > 5 << 20 for e in entries), f"{name}: no sparse file"
        assert any(e["size"] > spec["chunk_size"] and e["type"] == "file"
                   for e in entries), f"{name}: no multi-chunk file"


@pytest.mark.parametrize(("directory", "name", "spec"), CASES,
                         ids=[f"{d.name}/{n}" for d, n, _ in CASES])
def test_golden_archive_stays_writable(directory: Path, name: str, spec: dict[str, Any],
                                       tmp_path: Path) -> None:
    copy = tmp_path / name
    shutil.copyfile(directory / name, copy)
    with Archive.open(copy, passphrase=spec["passphrase"]) as archive:
        archive.write_file("/new/in/old.txt", b"written by a later cartfs\n" * 500,
                           parents=True)
        archive.remove("/docs/readme.txt")
        archive.write(archive.resolve("/sparse").ino, 1 << 20, b"middle")
    with Archive.open(copy, passphrase=spec["passphrase"]) as archive:
        assert archive.read_file("/new/in/old.txt") == b"written by a later cartfs\n" * 500
        assert not archive.exists("/docs/readme.txt")
        assert archive.read(archive.resolve("/sparse").ino, 1 << 20, 6) == b"middle"
        state = tree_state(archive)
        assert asdict(state["/large/words.bin"]) == spec["entries"]["/large/words.bin"]
        report = fsck(archive)
        assert report.ok, report.problems
