"""mknod(2) through the mount: regular files, FIFOs, sockets (and devices, as root) keep
their type, mode and device number across a remount; a FIFO in the mount works as one."""

from __future__ import annotations

import os
import stat
import threading

from .conftest import Mounts, fsck_ok

NODES = {
    "plain": (stat.S_IFREG | 0o640, 0),
    "fifo": (stat.S_IFIFO | 0o600, 0),
    "sock": (stat.S_IFSOCK | 0o755, 0),
}


def test_mknod_regular_fifo_socket(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    nodes = dict(NODES)
    if os.geteuid() == 0:
        nodes["null"] = (stat.S_IFCHR | 0o666, os.makedev(1, 3))
    old = os.umask(0)
    try:
        for name, (mode, rdev) in nodes.items():
            os.mknod(mnt / name, mode, rdev)
    finally:
        os.umask(old)

    def check(content: bytes) -> None:
        for name, (mode, rdev) in nodes.items():
            st = os.lstat(mnt / name)
            assert st.st_mode == mode, (name, oct(st.st_mode))
            assert st.st_rdev == rdev, name
        assert (mnt / "plain").read_bytes() == content

    check(b"")
    (mnt / "plain").write_bytes(b"a regular file made by mknod")
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append((mnt / "fifo").read_bytes()))
    reader.start()
    with open(mnt / "fifo", "wb") as pipe:  # the kernel runs the pipe; the mount only names it
        pipe.write(b"through the fifo")
    reader.join(timeout=30)
    assert received == [b"through the fifo"]
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    check(b"a regular file made by mknod")
    mounts.unmount()
