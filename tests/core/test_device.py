"""Every Device backend passes the same conformance checks, and the FaultyDevice itself
behaves as the power-loss and full-disk tests assume (a fault injector that silently injects
nothing would make those tests pass vacuously)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.device import FileDevice, MemoryDevice
from cartfs.core.errors import ArchiveBusy, NoSpace, NotAnArchive
from cartfs.testing.conformance import (
    ALL_CHECKS,
    DeviceFactory,
    DeviceLike,
    Reopen,
    same_device,
)
from cartfs.testing.faults import SECTOR, FaultyDevice, PowerLoss


def _file_backend(tmp_path: Path) -> tuple[DeviceFactory, Reopen]:
    counter = iter(range(1_000_000))

    def make() -> DeviceLike:
        return FileDevice(str(tmp_path / f"dev{next(counter)}"), writable=True, create=True)

    def reopen(dev: DeviceLike) -> DeviceLike:
        assert isinstance(dev, FileDevice)
        return FileDevice(dev.path, writable=True)

    return make, reopen


BACKENDS: dict[str, Callable[[Path], tuple[DeviceFactory, Reopen]]] = {
    "memory": lambda _: (MemoryDevice, same_device),
    "file": _file_backend,
    "faulty": lambda _: (FaultyDevice, same_device),
}


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_conformance(backend: str, check: Callable[[DeviceFactory, Reopen], None],
                     tmp_path: Path) -> None:
    make, reopen = BACKENDS[backend](tmp_path)
    check(make, reopen)


def test_file_device_refuses_second_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "a")
    first = FileDevice(path, writable=True, create=True)
    try:
        with pytest.raises(ArchiveBusy):
            FileDevice(path, writable=True)
        with pytest.raises(ArchiveBusy):
            FileDevice(path, writable=False)
    finally:
        first.close()
    FileDevice(path, writable=False).close()


def test_file_device_refuses_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(NotAnArchive):
        FileDevice("/dev/zero", writable=False)
    with pytest.raises(NotAnArchive):
        FileDevice(str(tmp_path), writable=False)


def test_faulty_unsynced_writes_can_be_lost() -> None:
    dev = FaultyDevice()
    dev.pwrite(b"A" * 4096, 0)
    dev.sync()
    dev.pwrite(b"B" * 4096, 0)
    assert dev.pread(4096, 0) == b"B" * 4096, "the writer sees its own writes"
    assert dev.durable_image() == b"A" * 4096
    outcomes = {dev.crash_image(seed) for seed in range(60)}
    assert b"A" * 4096 in outcomes, "dropping an unsynced write must be possible"
    assert b"B" * 4096 in outcomes, "applying an unsynced write must be possible"
    torn = [img for img in outcomes if img not in (b"A" * 4096, b"B" * 4096)]
    assert torn, "tearing an unsynced write must be possible"
    for image in torn:
        cut = image.index(b"A")
        assert cut % SECTOR == 0 and 0 < cut < 4096
        assert image == b"B" * cut + b"A" * (4096 - cut)


def test_faulty_synced_writes_survive() -> None:
    dev = FaultyDevice()
    dev.pwrite(b"A" * 1000, 10)
    dev.sync()
    assert all(dev.crash_image(seed) == bytes(10) + b"A" * 1000 for seed in range(20))


def test_faulty_power_fails_at_the_chosen_op() -> None:
    dev = FaultyDevice(fail_at_op=3)
    dev.pwrite(b"x", 0)
    dev.sync()
    with pytest.raises(PowerLoss):
        dev.pwrite(b"y", 1)
    with pytest.raises(PowerLoss):
        dev.pread(1, 0)
    assert dev.crash_image(random.Random(1)) == b"x", "the failing write never happened"


def test_faulty_capacity_and_write_budget() -> None:
    dev = FaultyDevice(capacity=8192)
    dev.resize(8192)
    with pytest.raises(NoSpace):
        dev.resize(8193)
    assert dev.size() == 8192, "a failed resize changes nothing"
    with pytest.raises(NoSpace):
        dev.pwrite(b"z", 8192)
    budget = FaultyDevice(write_budget=1500)
    budget.pwrite(b"a" * 1000, 0)
    with pytest.raises(NoSpace):
        budget.pwrite(b"b" * 1000, 1000)
    assert budget.pread(2000, 0) == b"a" * 1000, "only whole sectors of the failed write land"
