"""A request that fails inside the daemon returns an errno and the mount stays up: a data
extent damaged on disk under a mounted archive reads as EIO, the daemon logs why, and every
other file still works; an unexpected exception (a bug) in a handler is EIO and logged."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Embedded, Mounts, fsck_ok, run_cli


def test_damaged_extent_is_eio_and_mount_survives(mounts: Mounts) -> None:
    archive = mounts.archive(compression="none")
    marker = os.urandom(64 * 1024)
    with Archive.open(archive) as a:
        a.write_file("/damaged.bin", marker * 4)
        a.write_file("/healthy.txt", b"fine")
    raw = bytearray(archive.read_bytes())
    at = raw.find(marker[:4096])
    assert at > 0, "the test payload should be stored as is (compression=none)"
    raw[at + 100:at + 200] = bytes(100)
    archive.write_bytes(bytes(raw))

    mnt = mounts.mount(archive, options=["ro"])
    with pytest.raises(OSError) as info:
        (mnt / "damaged.bin").read_bytes()
    assert info.value.errno == errno.EIO
    assert (mnt / "healthy.txt").read_text() == "fine"
    assert sorted(os.listdir(mnt)) == ["damaged.bin", "healthy.txt"]
    with pytest.raises(OSError):
        (mnt / "damaged.bin").read_bytes()  # again: still an errno, not a dead mount
    assert (mnt / "healthy.txt").read_text() == "fine"
    mounts.unmount()


def test_unmount_with_open_files_and_lazy(mounts: Mounts) -> None:
    """`cartfs umount` on a busy mount says so in one line; -z detaches it anyway."""
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    (mnt / "f").write_text("x")
    fh = open(mnt / "f")  # noqa: SIM115
    try:
        proc = run_cli("umount", str(mnt), check=False)
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "busy" in proc.stderr
        run_cli("umount", "-z", str(mnt))
        assert fh.read() == "x"
    finally:
        fh.close()
    Path(mnt).stat()


def _eio(fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errno.EIO, f"{fn.__name__}: {info.value}"


def test_unexpected_exception_is_eio_logged_and_mount_survives(mounts: Mounts) -> None:
    """A bug in the core (an exception that is no CartError) inside a handler — on the trio
    thread or in a worker thread — answers EIO, is logged with its traceback, and the mount
    goes on serving; once the cause is gone the same calls work again."""
    archive = mounts.archive()
    with Archive.open(archive) as a:
        a.write_file("/f.txt", b"data")
    daemon = Embedded(mounts, archive, [])
    try:
        mnt = daemon.mnt
        f = mnt / "f.txt"
        os.setxattr(f, "user.k", b"v")
        daemon.command(fail=["listxattr"])
        daemon.command(fail=["readlink"])
        daemon.command(fail=["sync"])  # fsync runs it in a worker thread
        os.symlink("f.txt", mnt / "link")
        _eio(os.listxattr, f)
        _eio(os.readlink, mnt / "link")
        fd = os.open(f, os.O_RDONLY)
        try:
            _eio(os.fsync, fd)
            assert os.read(fd, 10) == b"data"  # the same open file still reads
        finally:
            os.close(fd)
        _eio(os.listxattr, f)  # again: an errno each time, never a dead mount
        assert f.read_bytes() == b"data"
        (mnt / "new.txt").write_text("still writable")
        assert sorted(os.listdir(mnt)) == ["f.txt", "link", "new.txt"]
        for method in ("listxattr", "readlink", "sync"):
            daemon.command(heal=[method])
        assert os.listxattr(f) == ["user.k"]
        assert os.readlink(mnt / "link") == "f.txt"
        fd = os.open(mnt / "new.txt", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        log = daemon.stop()
    finally:
        daemon.close_pipes()
    for handler, method in (("listxattr", "listxattr"), ("readlink", "readlink"),
                            ("fsync", "sync")):
        assert f"unexpected error in {handler}" in log, log
        assert f"RuntimeError: injected failure in Archive.{method}" in log, log
    assert log.count("Traceback") == 4, log  # listxattr twice, readlink, fsync
    fsck_ok(archive)
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/new.txt") == b"still writable"
