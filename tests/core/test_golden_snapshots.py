"""A version-1 archive with snapshots keeps reading and working: the snapshot table, the
horizon and the dead list (pages only snapshots reach) as that version wrote them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.testing.tree import tree_state

HERE = Path(__file__).resolve().parent.parent / "data" / "snapshots-v1"
EXPECTED = json.loads((HERE / "expected.json").read_text())


def digests(view: Any) -> dict[str, str]:
    """path -> SHA-256 of every regular file of a tree (an Archive or a SnapshotView)."""
    return {path: entry.sha256 for path, entry in tree_state(view).items()
            if entry.type == "file"}


def test_snapshots_of_version_1_read_back_unchanged() -> None:
    path = HERE / "snapshots.cart"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with Archive.open(path, readonly=True) as archive:
        assert [s.name for s in archive.list_snapshots()] == ["first", "second"]
        assert digests(archive) == EXPECTED["live"]
        for name in ("first", "second"):
            assert digests(archive.snapshot(name)) == EXPECTED[name]
        assert archive.statistics().allocator.dead_pages > 0  # the dead list is exercised
        report = fsck(archive)
        assert report.ok, report.problems
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_snapshots_of_version_1_can_be_deleted_restored_and_written(tmp_path: Path) -> None:
    copy = tmp_path / "copy.cart"
    shutil.copyfile(HERE / "snapshots.cart", copy)
    with Archive.open(copy) as archive:
        archive.delete_snapshot("second")
        archive.write_file("/new.txt", b"written by a later cartfs")
        archive.restore_snapshot("first")
        assert digests(archive) == EXPECTED["first"]
        archive.create_snapshot("third")
    with Archive.open(copy, readonly=True) as archive:
        assert [s.name for s in archive.list_snapshots()] == ["first", "third"]
        assert digests(archive.snapshot("third")) == EXPECTED["first"]
        report = fsck(archive)
        assert report.ok, report.problems
