"""What editors and shell tools do to files: atomic saves, sed -i, appends, truncation,
sparse files, O_TRUNC, mmap, unlink while open — checked through the mount and again after
a remount (so the archive, not just the kernel's cache, holds the result)."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Mounts, fsck_ok

MiB = 1024 * 1024


def _remount(mounts: Mounts, archive: Path) -> Path:
    mounts.unmount()
    fsck_ok(archive)
    return mounts.mount(archive)


def test_atomic_save_sed_append_truncate(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    doc = mnt / "doc.txt"
    doc.write_text("version 1\n")
    # an editor's save: temp file, fsync, rename over the original, fsync the directory
    tmp = mnt / ".doc.txt.swp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"version 2\nline two\n")
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, doc)
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    assert doc.read_text() == "version 2\nline two\n"
    assert not tmp.exists()

    subprocess.run(["sed", "-i", "s/two/2/", str(doc)], check=True)
    assert doc.read_text() == "version 2\nline 2\n"

    for i in range(50):
        subprocess.run(["sh", "-c", f"echo append {i} >> '{doc}'"], check=True)
    subprocess.run(["sh", "-c", f"echo short > '{mnt}/trunc.txt'"], check=True)
    (mnt / "trunc.txt").write_text("a much longer first version\n")
    subprocess.run(["sh", "-c", f"echo short > '{mnt}/trunc.txt'"], check=True)  # O_TRUNC

    big = mnt / "cut.bin"
    big.write_bytes(b"z" * (3 * MiB + 5))
    subprocess.run(["truncate", "-s", "1000000", str(big)], check=True)
    subprocess.run(["truncate", "-s", "+24", str(big)], check=True)

    expected_doc = "version 2\nline 2\n" + "".join(f"append {i}\n" for i in range(50))
    for _ in range(2):
        assert doc.read_text() == expected_doc
        assert (mnt / "trunc.txt").read_text() == "short\n"
        assert big.read_bytes() == b"z" * 1_000_000 + bytes(24)
        mnt = _remount(mounts, archive)
        doc, big = mnt / "doc.txt", mnt / "cut.bin"
    mounts.unmount()


def test_sparse_file(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    sparse = mnt / "sparse.img"
    subprocess.run(["truncate", "-s", "1G", str(sparse)], check=True)
    middle = 512 * MiB + 12345
    with open(sparse, "r+b") as fh:
        fh.seek(middle)
        fh.write(b"hello in the middle")
    for _ in range(2):
        assert sparse.stat().st_size == 1 << 30
        with open(sparse, "rb") as fh:
            fh.seek(middle - 10)
            assert fh.read(29) == bytes(10) + b"hello in the middle"
            fh.seek((1 << 30) - 4096)
            assert fh.read() == bytes(4096)
        mnt = _remount(mounts, archive)
        sparse = mnt / "sparse.img"
    mounts.unmount()
    assert archive.stat().st_size < 64 * MiB  # holes take no space


def _appender(path: str, tag: int, count: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for i in range(count):
        os.write(fd, f"{tag:02d}:{i:04d}\n".encode())
    os.close(fd)


def test_concurrent_o_append(mounted: Path) -> None:
    """O_APPEND from several processes at once: every line lands, none overwrites another
    (with the writeback cache the kernel places appends; the daemon must not move them)."""
    log = mounted / "log.txt"
    log.write_bytes(b"")
    procs = [multiprocessing.get_context("fork").Process(
        target=_appender, args=(str(log), tag, 300)) for tag in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(f"{t:02d}:{i:04d}" for t in range(4) for i in range(300))


def test_mmap_and_unlink_while_open(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    path = mnt / "mapped.bin"
    path.write_bytes(bytes(64 * 1024))
    with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as mm:
        mm[100:105] = b"hello"
        mm.flush()
    assert path.read_bytes()[100:105] == b"hello"

    victim = mnt / "victim"
    victim.write_bytes(b"still here" * 1000)
    with open(victim, "rb") as fh:
        victim.unlink()
        assert not victim.exists()
        assert fh.read() == b"still here" * 1000
    fd = os.open(mnt / "tmpfile", os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(mnt / "tmpfile")
    os.write(fd, b"anonymous data")
    assert os.pread(fd, 100, 0) == b"anonymous data"
    os.close(fd)
    mnt = _remount(mounts, archive)
    assert sorted(os.listdir(mnt)) == ["mapped.bin"]
    mounts.unmount()


def test_times_modes_links(mounted: Path) -> None:
    """touch -d, chmod, ln: the attributes tools see afterwards."""
    f = mounted / "f"
    f.write_text("x")
    subprocess.run(["touch", "-d", "2001-02-03 04:05:06.123456789 UTC", str(f)], check=True)
    assert f.stat().st_mtime_ns == 981173106123456789
    f.chmod(0o4750)
    assert f.stat().st_mode & 0o7777 == 0o4750
    os.link(f, mounted / "g")
    assert f.stat().st_nlink == 2
    (mounted / "g").unlink()
    assert f.stat().st_nlink == 1
    d = mounted / "d"
    d.mkdir()
    (d / "sub").mkdir()
    assert d.stat().st_nlink == 3
    before = d.stat().st_mtime_ns
    (d / "new").write_text("y")
    assert d.stat().st_mtime_ns >= before
    os.symlink("f", mounted / "sym")
    assert os.readlink(mounted / "sym") == "f"
    assert (mounted / "sym").read_text() == "x"


@pytest.mark.parametrize("writeback", ["1", "0"])
def test_write_mtime_reaches_the_archive(mounts: Mounts, writeback: str) -> None:
    """Writeback cache on: the kernel sets mtime/ctime on write(2) and hands them over
    (SETATTR) on close, while the daemon's writes leave times alone (Archive.write with
    touch=False), so the stored mtime is exactly the one stat showed. Off: the daemon
    stamps them itself on each write."""
    archive = mounts.archive()
    mnt = mounts.mount(archive, options=[f"writeback={writeback}"])
    f = mnt / "f"
    f.write_bytes(b"a")
    created = f.stat().st_mtime_ns
    time.sleep(0.05)
    with open(f, "ab") as fh:
        fh.write(b"b" * 100_000)
    seen = f.stat()
    assert seen.st_mtime_ns > created and seen.st_size == 100_001
    preserved = 1_000_000_000_123_456_789
    with open(mnt / "copy", "wb") as fh:  # cp -p / rsync: write, set times, close
        fh.write(os.urandom(4 << 20))
        os.utime(fh.fileno(), ns=(preserved, preserved))
    mounts.unmount()
    with Archive.open(archive, readonly=True) as a:
        stored = a.stat("/f")
        assert a.stat("/copy").mtime_ns == preserved
    assert stored.size == 100_001
    if writeback == "1":
        assert stored.mtime_ns == seen.st_mtime_ns
    else:
        assert stored.mtime_ns >= seen.st_mtime_ns > created
