"""Checks every Device backend must pass (trio's ``testing/_check_streams.py`` idea).

A backend is handed over as a factory returning a fresh, empty, writable device (and, for
backends whose ``close`` really closes, a ``reopen`` giving a new device on the same storage;
in-memory devices survive ``close``, so the default returns the same object). The same
checks run over MemoryDevice, FileDevice and FaultyDevice in tests/core/test_device.py, so a
new backend (say, a block device or an object store) is correct when it passes them too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck

from .tree import tree_state


class DeviceLike(Protocol):
    """The core's Device protocol, restated so this module needs no core internals."""

    def pread(self, size: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None: ...

    def sync(self) -> None: ...

    def size(self) -> int: ...

    def resize(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


DeviceFactory = Callable[[], DeviceLike]
Reopen = Callable[[DeviceLike], DeviceLike]


def same_device(dev: DeviceLike) -> DeviceLike:
    """``reopen`` for in-memory devices, whose content outlives ``close``."""
    return dev


def check_byte_io(make: DeviceFactory, reopen: Reopen = same_device) -> None:
    """pwrite/pread round-trip at odd offsets; reads past the end are short, never errors."""
    dev = make()
    assert dev.size() == 0
    dev.pwrite(b"hello", 3)
    assert dev.size() == 8, "a write past the end extends the device"
    assert dev.pread(8, 0) == b"\0\0\0hello"
    assert dev.pread(100, 5) == b"llo", "a read past the end is short"
    assert dev.pread(10, 1000) == b""
    dev.pwrite(memoryview(b"XY"), 4)
    assert dev.pread(8, 0) == b"\0\0\0hXYlo"
    dev.sync()
    dev.close()


def check_resize(make: DeviceFactory, reopen: Reopen = same_device) -> None:
    """Growth zero-fills, shrinking drops the tail, and data below the cut survives."""
    dev = make()
    dev.resize(3 * 4096)
    assert dev.size() == 3 * 4096
    assert dev.pread(3 * 4096, 0) == bytes(3 * 4096)
    dev.pwrite(b"\xff" * 4096, 4096)
    dev.resize(4096 + 100)
    assert dev.size() == 4196
    assert dev.pread(200, 4096) == b"\xff" * 100
    dev.resize(2 * 4096)
    assert dev.pread(4096, 4096) == b"\xff" * 100 + bytes(3996)
    dev.close()


def check_archive_round_trip(make: DeviceFactory, reopen: Reopen = same_device) -> None:
    """A small archive written, synced and reopened on the backend reads back the same."""
    rng = random.Random(7)
    dev = make()
    archive = Archive.create_on(dev, chunk_size=4096)
    payloads = {f"/d/f{i}": rng.randbytes(rng.randrange(0, 20000)) for i in range(5)}
    for path, data in payloads.items():
        archive.write_file(path, data, parents=True)
    archive.sync()
    before = tree_state(archive)
    archive.close()
    reopened = Archive.open_on(reopen(dev))
    try:
        assert tree_state(reopened) == before
        for path, data in payloads.items():
            assert reopened.read_file(path) == data
        report = fsck(reopened)
        assert report.ok, report.problems
    finally:
        reopened.close()


ALL_CHECKS: tuple[Callable[[DeviceFactory, Reopen], None], ...] = (
    check_byte_io, check_resize, check_archive_round_trip,
)


def run_all(make: DeviceFactory, reopen: Reopen = same_device) -> None:
    """Every conformance check, in order."""
    for check in ALL_CHECKS:
        check(make, reopen)
