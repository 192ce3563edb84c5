"""A request that fails inside the daemon returns an errno and the mount stays up: here a
data extent damaged on disk under a mounted archive reads as EIO, the daemon logs why, and
every other file still works."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Mounts, run_cli


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
