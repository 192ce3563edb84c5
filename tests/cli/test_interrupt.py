"""An interrupted ``put`` leaves a consistent archive in which every file is complete or
absent — never torn: SIGKILL at random moments (fresh archives, and archives whose files
are being replaced by new versions), and Ctrl-C / SIGTERM, which stop cleanly (exit 130)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cartfs.cli.main import main
from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck

from .conftest import cartfs_cmd, cartfs_env

MiB = 1 << 20
FILES = 30


@dataclass(frozen=True)
class Version:
    """A source tree on disk and the sha256 of each of its files, by archive path."""

    root: Path
    digests: dict[str, str]


def _make_version(root: Path, tag: str, seed: int) -> Version:
    rng = random.Random(seed)
    pool = rng.randbytes(6 * MiB)
    digests = {}
    for i in range(FILES):
        rel = f"d{i % 4}/f{i:03d}.bin"
        size = rng.randint(1 * MiB, 4 * MiB) if i % 6 else rng.randint(0, 5000)
        start = rng.randint(0, len(pool) - size)
        data = f"{tag} file {i}\n".encode() + pool[start:start + size]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digests[f"/tree/{rel}"] = hashlib.sha256(data).hexdigest()
    return Version(root, digests)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Version, Version]:
    """Two trees with the same names and different contents (about 90 MiB each)."""
    base = tmp_path_factory.mktemp("sources")
    return (_make_version(base / "a" / "tree", "A", 1),
            _make_version(base / "b" / "tree", "B", 2))


def start_put(archive: Path, source: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cartfs_cmd("put", archive, source, "/", "--commit-every", "4M"),
                            env=cartfs_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def archive_digests(archive: Path) -> Iterator[tuple[str, str]]:
    with Archive.open(archive, readonly=True) as a:
        for top, _dirs, files in a.walk("/"):
            for name in files:
                path = f"{top.rstrip('/')}/{name}"
                yield path, hashlib.sha256(a.read_file(path)).hexdigest()


def check_consistent(archive: Path, allowed: list[dict[str, str]]) -> dict[str, str]:
    """fsck is clean (through the CLI), and every file present is byte-identical to one of
    the allowed versions of its source; returns the digests of the files present."""
    assert main(["fsck", str(archive)]) == 0
    found = dict(archive_digests(archive))
    for path, digest in found.items():
        assert any(v.get(path) == digest for v in allowed), f"{path} is torn"
    with Archive.open(archive) as a:  # a writable open reclaims an unfinished file
        pass
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
        assert report.ok, report.problems
        assert report.files == len(found)  # nothing half-written left behind
    return found


def wait_for_first_write(archive: Path, proc: subprocess.Popen[bytes]) -> None:
    """Block until the put starts changing the archive (after Python has started and the
    sources were listed), so kill moments spread over the copy itself."""
    before = archive.stat()
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        now = archive.stat()
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            return
        assert time.monotonic() < deadline, "put never wrote"
        time.sleep(0.002)


@pytest.fixture(scope="module")
def full_put(versions: tuple[Version, Version], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, float]:
    """A complete put of version A: the archive, and how long the copying part takes."""
    archive = tmp_path_factory.mktemp("full") / "full.cart"
    Archive.create(archive).close()
    proc = start_put(archive, versions[0].root)
    wait_for_first_write(archive, proc)
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    elapsed = time.monotonic() - started
    assert len(check_consistent(archive, [versions[0].digests])) == FILES
    return archive, elapsed


def kill_at_random_moments(versions: tuple[Version, Version], full: tuple[Path, float],
                           work: Path, rounds: int, seed: int) -> None:
    a, b = versions
    full_archive, duration = full
    rng = random.Random(seed)
    partial_fresh = 0
    for i in range(rounds):
        archive = work / f"kill{i}.cart"
        replacing = i % 2 == 1
        if replacing:  # a complete archive of version A, being overwritten with version B
            shutil.copyfile(full_archive, archive)
        else:
            Archive.create(archive).close()
        delay = duration * 1.1 * (i + rng.random()) / rounds  # spread over the whole copy
        proc = start_put(archive, (b if replacing else a).root)
        wait_for_first_write(archive, proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        allowed = [a.digests, b.digests] if replacing else [a.digests]
        found = check_consistent(archive, allowed)
        present = len(found)
        new = sum(1 for path, d in found.items() if b.digests.get(path) == d)
        print(f"round {i}: killed {delay:.2f}s into the copy, {present} files present"
              + (f", {new} replaced" if replacing else ""))
        if replacing:
            assert present == FILES, "a replaced file went missing"
        elif 0 < present < FILES:
            partial_fresh += 1
        archive.unlink()
    assert partial_fresh > 0, f"no kill landed mid-put (seed {seed}, put {duration:.2f}s)"


def test_sigkill_at_random_moments(versions: tuple[Version, Version],
                                   full_put: tuple[Path, float], tmp_path: Path) -> None:
    seed = int(os.environ.get("CARTFS_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    kill_at_random_moments(versions, full_put, tmp_path, rounds=10, seed=seed)


@pytest.mark.soak
def test_sigkill_soak(versions: tuple[Version, Version], full_put: tuple[Path, float],
                      tmp_path: Path) -> None:
    seed = int(os.environ.get("CARTFS_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    kill_at_random_moments(versions, full_put, tmp_path, rounds=60, seed=seed)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly(versions: tuple[Version, Version], tmp_path: Path,
                              sig: signal.Signals) -> None:
    """Ctrl-C mid-put: exit 130, one line, no traceback; finished files are committed, the
    unfinished one is dropped (no orphan even before the next writable open)."""
    archive = tmp_path / "int.cart"
    Archive.create(archive).close()
    start_size = archive.stat().st_size
    proc = start_put(archive, versions[0].root)
    deadline = time.monotonic() + 60
    while archive.stat().st_size < start_size + 16 * MiB and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert text.strip() == "cartfs: interrupted"
    present = 0
    for path, digest in archive_digests(archive):
        assert versions[0].digests[path] == digest, f"{path} is torn"
        present += 1
    assert 0 < present < FILES
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
    assert report.ok, report.problems
    assert report.files == present
