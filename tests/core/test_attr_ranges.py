"""Values the format cannot hold are refused up front, and the archive keeps working: a
setattr that failed halfway would otherwise block every later commit."""

from __future__ import annotations

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import ValueOverflow

YEAR_2300_NS = 10_413_792_000 * 10**9
YEAR_1600_NS = -11_676_096_000 * 10**9


@pytest.mark.parametrize("change", [
    {"mtime_ns": YEAR_2300_NS}, {"atime_ns": YEAR_1600_NS}, {"ctime_ns": 1 << 63},
    {"uid": 1 << 32}, {"gid": -1},
])
def test_out_of_range_attributes_are_refused_and_nothing_breaks(change: dict[str, int]
                                                                ) -> None:
    device = MemoryDevice()
    with Archive.create_on(device) as archive:
        archive.write_file("/before.txt", b"before")
        archive.sync()
        ino = archive.stat("/before.txt").ino
        old = archive.getattr(ino)
        with pytest.raises(ValueOverflow) as info:
            archive.setattr(ino, mode=0o600, size=0, **change)
        assert info.value.errno == 75  # EOVERFLOW
        assert archive.getattr(ino) == old
        assert archive.read_file("/before.txt") == b"before"
        archive.write_file("/after.txt", b"after")
        archive.setattr(ino, mtime_ns=(1 << 63) - 1, atime_ns=-(1 << 63))
    with Archive.open_on(device, readonly=True) as archive:
        assert archive.read_file("/after.txt") == b"after"
        assert archive.stat("/before.txt").mtime_ns == (1 << 63) - 1
        assert archive.stat("/before.txt").atime_ns == -(1 << 63)
