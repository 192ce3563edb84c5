"""Sizes at the edges: st_blocks is what a file's data really takes (sparse files, huge
truncates), and the largest file size is the kernel's, so no write it accepts is lost."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Mounts, fsck_ok

MiB = 1 << 20


def _du_bytes(path: Path) -> int:
    """``du`` (allocated, not apparent size) in bytes."""
    out = subprocess.run(["du", "-B1", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def test_st_blocks_counts_stored_data(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    sparse = mnt / "sparse"
    subprocess.run(["truncate", "-s", "1G", str(sparse)], check=True)
    with open(sparse, "r+b") as fh:
        fh.seek(512 * MiB)
        fh.write(os.urandom(4096))
    huge = mnt / "huge"
    subprocess.run(["truncate", "-s", "999999999999999999", str(huge)], check=True)
    dense = mnt / "dense"
    payload = os.urandom(8 * MiB)  # incompressible
    dense.write_bytes(payload)
    (mnt / "empty").write_bytes(b"")
    text = mnt / "text"
    text.write_bytes(b"".join(b"line %d of a compressible file\n" % i for i in range(200_000)))

    def check() -> None:
        assert sparse.stat().st_size == 1 << 30
        assert sparse.stat().st_blocks * 512 <= 1 * MiB, sparse.stat()
        assert _du_bytes(sparse) <= 1 * MiB
        assert huge.stat().st_size == 999999999999999999
        assert huge.stat().st_blocks == 0
        assert _du_bytes(huge) == 0
        used = dense.stat().st_blocks * 512
        assert len(payload) <= used <= len(payload) * 1.1, used
        assert (mnt / "empty").stat().st_blocks == 0
        assert text.stat().st_blocks * 512 < text.stat().st_size / 2  # stored compressed
        assert (mnt).stat().st_blocks == 0

    check()
    mounts.unmount()
    mnt = mounts.mount(archive)
    check()
    assert dense.read_bytes() == payload
    mounts.unmount()


KERNEL_MAX = (1 << 63) - 1  # Linux's MAX_LFS_FILESIZE, the s_maxbytes of every FUSE mount


def test_largest_file_size_agrees_with_the_kernel(mounts: Mounts) -> None:
    """The kernel caches writes (writeback cache) and checks only its own limit, so the
    archive accepts every size the kernel does: a write the kernel takes is never lost at
    write-back, and past the limit write(2) and truncate fail at once."""
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    far = mnt / "far"
    fd = os.open(far, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"hello")
        assert os.pwrite(fd, b"x", (1 << 62) + 10) == 1
        os.fsync(fd)  # no EFBIG at write-back: the archive took it
        assert os.fstat(fd).st_size == (1 << 62) + 11
        with pytest.raises(OSError) as info:  # past the limit: refused at once, as on tmpfs
            os.pwrite(fd, b"y", KERNEL_MAX)
        assert info.value.errno in (errno.EFBIG, errno.EINVAL)
        os.fsync(fd)
        assert os.fstat(fd).st_size == (1 << 62) + 11
    finally:
        os.close(fd)
    edge = mnt / "edge"
    proc = subprocess.run(["truncate", "-s", str(KERNEL_MAX + 1), str(edge)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    subprocess.run(["truncate", "-s", str(KERNEL_MAX), str(edge)], check=True)
    with open(edge, "r+b") as fh:
        assert os.pwrite(fh.fileno(), b"z", KERNEL_MAX - 1) == 1
        os.fsync(fh.fileno())
        assert os.pread(fh.fileno(), 4, KERNEL_MAX - 4) == b"\0\0\0z"

    def check() -> None:
        assert far.stat().st_size == (1 << 62) + 11
        assert edge.stat().st_size == KERNEL_MAX
        with open(far, "rb") as fh:
            assert fh.read(5) == b"hello"
            assert os.pread(fh.fileno(), 2, (1 << 62) + 9) == b"\0x"
        assert far.stat().st_blocks * 512 <= 1 << 20

    check()
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    check()
    mounts.unmount()


def test_st_blocks_of_a_file_with_many_chunks(mounts: Mounts) -> None:
    """Past 4096 chunk records st_blocks is extrapolated from the first ones (a big file is
    not walked on every getattr): still about the size for a dense file, a fraction for a
    half-sparse one. 4 KiB chunks make that 16 MiB here."""
    archive = mounts.archive(chunk_size=4096, compression="none")
    mnt = mounts.mount(archive)
    dense, half = mnt / "dense", mnt / "half"
    dense.write_bytes(os.urandom(24 * MiB))
    with open(half, "wb") as fh:
        block = os.urandom(4096)
        for i in range(12 * 1024):  # every other 4 KiB block: 96 MiB, half of it holes
            fh.seek(2 * i * 4096)
            fh.write(block)
    mounts.unmount()
    mnt = mounts.mount(archive)
    used = dense.stat().st_blocks * 512
    assert 24 * MiB <= used <= 24 * MiB * 1.1, used
    used = half.stat().st_blocks * 512
    assert 0.45 * half.stat().st_size <= used <= 0.55 * half.stat().st_size, used
    mounts.unmount()
