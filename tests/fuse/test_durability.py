"""Durability: unmount/remount keeps everything; fsync commits; the commit timer bounds the
loss (also for data the kernel still caches); SIGTERM and SIGINT commit; SIGKILL mid-write
never corrupts the archive; a refused change (a time outside int64 ns) blocks no commit."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.fuse.mount import find_mount

from .conftest import Mounts, force_unmount, fsck_ok, wait_for


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def crash(daemon: subprocess.Popen[bytes], mnt: Path, archive: Path) -> None:
    """SIGKILL the mount daemon, clear its dead mount, and prove the archive is whole."""
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    force_unmount(mnt)
    fsck_ok(archive)


def test_remount_identical(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    for i in range(200):
        d = mnt / f"d{i % 7}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(i * 37) + b"tail")
    before = _tree_digest(mnt)
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    assert _tree_digest(mnt) == before
    mounts.unmount()


def test_fsync_is_durable_before_sigkill(mounts: Mounts) -> None:
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=["commit=3600"])
    mnt = mounts.mountpoints[-1]
    fd = os.open(mnt / "synced.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"made durable by fsync")
    os.fsync(fd)
    os.close(fd)
    (mnt / "unsynced.txt").write_text("may be lost")
    crash(daemon, mnt, archive)
    with Archive.open(archive) as a:
        assert a.read_file("/synced.txt") == b"made durable by fsync"


def test_commit_interval_bounds_loss(mounts: Mounts) -> None:
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=["commit=0.5"])
    mnt = mounts.mountpoints[-1]
    (mnt / "a.txt").write_text("committed by the timer")
    time.sleep(2.0)  # several commit intervals
    crash(daemon, mnt, archive)
    with Archive.open(archive) as a:
        assert a.read_file("/a.txt") == b"committed by the timer"


def test_sigkill_mid_write_never_corrupts(mounts: Mounts) -> None:
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=["commit=0.2"])
    mnt = mounts.mountpoints[-1]
    stop = threading.Event()

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                (mnt / f"w{i % 50}.bin").write_bytes(os.urandom(300_000))
                i += 1
        except OSError:
            pass  # the daemon is gone

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    stop.set()
    force_unmount(mnt)
    for t in threads:
        t.join(timeout=30)
    fsck_ok(archive)
    mnt = mounts.mount(archive)  # mounts again, and the files read back whole
    names = os.listdir(mnt)
    assert names, "nothing was committed in 2.5 s with commit=0.2"
    for name in names:
        assert (mnt / name).stat().st_size in (0, 300_000)
    mounts.unmount()
    fsck_ok(archive)


def test_signals_and_fusermount_commit(mounts: Mounts) -> None:
    archive = mounts.archive()
    for stopper in ("SIGTERM", "SIGINT", "fusermount3"):
        daemon = mounts.mount_foreground(archive, options=["commit=3600"])
        mnt = mounts.mountpoints[-1]
        payload = os.urandom(2_000_000)
        fd = os.open(mnt / f"{stopper}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, payload)  # with the writeback cache these pages are still dirty
        if stopper == "fusermount3":
            os.close(fd)
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        else:  # the file stays open: the daemon must flush the kernel's pages itself
            daemon.send_signal(getattr(signal, stopper))
        assert daemon.wait(timeout=60) == 0, mounts.log_text()
        if stopper != "fusermount3":
            with contextlib.suppress(OSError):  # the mount went away under the open file
                os.close(fd)
        wait_for(lambda m=mnt: find_mount(str(m)) is None, what="unmount")
        fsck_ok(archive)
        with Archive.open(archive) as a:
            assert a.read_file(f"/{stopper}.bin") == payload, stopper


@pytest.mark.parametrize("options", ["commit=1", "commit=1,threads=1,xattr=0"])
def test_sigkill_keeps_data_of_a_file_still_open(mounts: Mounts, options: str) -> None:
    """Data written to a file that stays open sits in the kernel's page cache (writeback
    cache), not in the daemon; the commit timer must have the kernel hand it over, so a
    SIGKILL loses about one commit interval, not the kernel's 30 s dirty-page expiry."""
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=[options])
    mnt = mounts.mountpoints[-1]
    payload = os.urandom(300_000)
    fd = os.open(mnt / "open.log", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        (mnt / "closed.txt").write_text("closed")
        time.sleep(4.0)  # commit=1: several rounds; the kernel alone would wait 30 s
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    finally:
        with contextlib.suppress(OSError):  # the daemon is gone
            os.close(fd)
    force_unmount(mnt)
    fsck_ok(archive)
    with Archive.open(archive) as a:
        assert a.read_file("/closed.txt") == b"closed"
        assert a.read_file("/open.log") == payload
    assert "write-back" not in mounts.log_text()  # the barrier worked: no fallback, no timeout


def test_refused_times_change_nothing_and_commits_go_on(mounts: Mounts) -> None:
    """`touch -d 2300-01-01` (and 1600) is outside int64 nanoseconds: it fails with
    EOVERFLOW, nothing keeps the refused time (not the daemon, not the kernel's attribute
    cache, not a later write-back of kernel-owned times), and commits continue."""
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=["commit=1"])
    mnt = mounts.mountpoints[-1]
    before = mnt / "before.txt"
    fd = os.open(before, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"written before")  # dirty in the kernel: it owns this file's mtime now
    for date in ("2300-01-01", "1600-01-01"):
        proc = subprocess.run(["touch", "-d", date, str(before)], capture_output=True,
                              text=True, check=False)
        assert proc.returncode != 0
        assert os.strerror(errno.EOVERFLOW) in proc.stderr, proc.stderr
    for ns in ((1 << 63) + 5, -(1 << 63) - 5):
        with pytest.raises(OSError) as info:
            os.utime(before, ns=(ns, ns))
        assert info.value.errno == errno.EOVERFLOW
    os.close(fd)  # the kernel sends its own mtime now: a real one
    st = before.stat()
    assert abs(st.st_mtime_ns - time.time_ns()) < 60 * 10**9, st
    (mnt / "after.txt").write_text("written after")
    time.sleep(3.0)  # commit=1: the timer commits both (the refusal blocks nothing)
    crash(daemon, mnt, archive)
    with Archive.open(archive) as a:
        assert a.read_file("/before.txt") == b"written before"
        assert a.read_file("/after.txt") == b"written after"
        assert abs(a.stat("/before.txt").mtime_ns - st.st_mtime_ns) < 10**9

    mnt = mounts.mount(archive)
    assert (mnt / "before.txt").read_text() == "written before"
    assert (mnt / "after.txt").read_text() == "written after"
    assert (mnt / "before.txt").stat().st_mtime_ns == st.st_mtime_ns
    os.utime(mnt / "before.txt", ns=(0, 0))  # the epoch is fine
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    assert (mnt / "before.txt").stat().st_mtime_ns == 0
    mounts.unmount()


def test_fsyncdir_is_durable_before_sigkill(mounts: Mounts) -> None:
    """fsync on a directory makes its entries durable (the editor/mail-spool pattern:
    create, write, fsync the file, rename, fsync the directory)."""
    archive = mounts.archive()
    daemon = mounts.mount_foreground(archive, options=["commit=3600"])
    mnt = mounts.mountpoints[-1]
    spool = mnt / "spool"
    spool.mkdir()
    (spool / "empty-entry").touch()
    (spool / "msg.tmp").write_bytes(b"message body")
    os.rename(spool / "msg.tmp", spool / "msg")
    for directory in (spool, mnt):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    (spool / "after-the-fsync").touch()  # may be lost
    crash(daemon, mnt, archive)
    mnt = mounts.mount(archive)
    names = set(os.listdir(mnt / "spool"))
    assert {"empty-entry", "msg"} <= names and "msg.tmp" not in names, names
    assert (mnt / "spool" / "msg").read_bytes() == b"message body"
    mounts.unmount()
