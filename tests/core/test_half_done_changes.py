"""Calls that fail halfway must never have their half-done state committed, and what the
cache holds must be what it counts. Each test is a defect found in review, reproduced first."""

from __future__ import annotations

import errno
import gc
import os
import tracemalloc

import pytest

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import CartError, NotPermitted
from cartfs.core.fsck import fsck

NEVER = OpenOptions(commit_interval=1e9, commit_bytes=1 << 40, flush_bytes=1 << 40)


class FlakyDevice(MemoryDevice):
    """A device whose next pwrite fails once with EIO (a transient I/O error)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_after: int | None = None

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.fail_after = None
                raise OSError(errno.EIO, "injected I/O error")
            self.fail_after -= 1
        super().pwrite(data, offset)


def test_a_commit_that_fails_while_encoding_data_is_never_completed_later() -> None:
    """The flush used to drop the dirty chunks it had not stored yet and leave the archive
    usable, so the next commit stored the new file size with zeros where the data was."""
    device = FlakyDevice()
    archive = Archive.create_on(device, chunk_size=4096, options=NEVER)
    archive.write_file("/f", b"A" * 5000)
    archive.sync()
    durable = bytes(device.data)
    ino = archive.resolve("/f").ino
    archive.write(ino, 100, b"B" * 10)  # chunk 0, partial
    archive.write(ino, 6000, b"C" * 2000)  # chunk 1, partial: the file grows
    device.fail_after = 1  # the first chunk's extent is written, the second fails
    with pytest.raises(OSError):
        archive.sync()
    with pytest.raises(CartError, match="reopened"):
        archive.sync()
    with pytest.raises(CartError):
        archive.write(ino, 0, b"x")
    reopened = Archive.open_on(MemoryDevice(bytes(device.data)), options=NEVER)
    assert reopened.read_file("/f") == b"A" * 5000  # the last commit, whole
    assert fsck(reopened).ok
    assert bytes(device.data[:8192]) == durable[:8192]  # superblocks untouched


def test_link_replace_refuses_before_removing_the_old_file() -> None:
    """link(replace=True) unlinked the existing file, then found the source was a
    directory; the removal was committed."""
    archive = Archive.create_on(MemoryDevice(), options=NEVER)
    archive.write_file("/important", b"keep me")
    directory = archive.mkdir(1, "dir")
    with pytest.raises(NotPermitted):
        archive.link(directory.ino, 1, "important", replace=True)
    archive.sync()  # the archive is still usable ...
    assert archive.read_file("/important") == b"keep me"  # ... and nothing was lost
    assert fsck(archive).ok


def test_an_error_after_a_change_refuses_further_commits() -> None:
    """A CartError raised after a call changed something marks the archive as needing a
    reopen; one raised before anything changed does not."""
    archive = Archive.create_on(MemoryDevice(), options=NEVER)
    archive.write_file("/a", b"a")
    with pytest.raises(CartError):
        archive.rmdir(1, "missing")  # nothing changed
    archive.sync()
    assert archive.read_file("/a") == b"a"


def test_guarded_move_onto_a_symlink_replaces_the_link_not_its_target() -> None:
    archive = Archive.create_on(MemoryDevice(), options=NEVER)
    archive.write_file("/bob/report", b"bob's report", parents=True)
    archive.write_file("/alice/new", b"alice's file", parents=True)
    archive.make_symlink("/bob/report", "/alice/shortcut")
    guarded = archive.as_principal("alice")  # no policies: IAM is off, moves are allowed
    guarded.move("/alice/new", "/alice/shortcut")
    assert archive.read_file("/bob/report") == b"bob's report"
    assert archive.file_type("/alice/shortcut") == "file"
    assert archive.read_file("/alice/shortcut") == b"alice's file"


def test_cached_chunks_do_not_pin_whole_read_buffers() -> None:
    """Chunks read several at a time were cached as views into the whole read buffer: the
    cache counted 64 KiB per chunk while one cached chunk kept up to 4 MiB alive."""
    budget = 2 * 1024 * 1024
    device = MemoryDevice()
    archive = Archive.create_on(device, compression="none", options=NEVER)
    ino = archive.create_file(1, "big").ino
    size = 32 * 1024 * 1024
    for off in range(0, size, 1 << 20):
        archive.write(ino, off, os.urandom(1 << 20))
    archive.close()
    reader = Archive.open_on(device, readonly=True,
                             options=OpenOptions(cache_bytes=budget))
    gc.collect()
    tracemalloc.start()
    try:
        for off in range(0, size, 1 << 20):
            assert len(reader.read(ino, off, 1 << 20)) == 1 << 20
            reader.read(ino, off + (1 << 20) - 10, 10)  # keeps the run's last chunk hot
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 3 * budget, f"{held >> 20} MiB held for a {budget >> 20} MiB cache"
