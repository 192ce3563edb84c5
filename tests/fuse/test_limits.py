"""Sizes at the edges: st_blocks is what a file's data really takes (sparse files, huge
truncates), and sizes past the largest file size fail with EFBIG everywhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .conftest import Mounts

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
