"""A page device that fails the way real storage fails: power loss, torn writes, a full disk.

Theory of operation
-------------------
:class:`FaultyDevice` implements the core's ``Device`` protocol over an in-memory image and
keeps two views of it:

* the *current* image — what reads see, every write applied at once (as the OS page cache
  shows it to the process that wrote it);
* the *durable* image — what the last ``sync()`` made safe, plus the list of writes and
  resizes issued since (``unsynced``).

At a chosen moment — after ``fail_at_op`` device operations, or when the test calls
:meth:`FaultyDevice.power_fail` — the power goes out: the operation raises
:class:`PowerLoss`, and so does every later one. :meth:`FaultyDevice.crash_image` then builds
what a disk could hold after the reboot: the durable image plus, for each unsynced operation
in order, a choice made by a seeded RNG — drop it, apply it, or (writes only) apply a torn
prefix cut at a 512-byte sector boundary. A commit protocol is correct when every such image
opens at the last durable commit (or a later complete one).

A *full disk* is modelled by ``capacity`` (the device may not grow past this many bytes:
``resize`` and extending writes raise ``NoSpace``, and a resize that fails changes nothing) and
by ``write_budget`` (after this many bytes written in total, ``pwrite`` raises ``NoSpace`` —
the ENOSPC a thin-provisioned or quota-limited disk gives in the middle of a commit).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cartfs.core.errors import NoSpace

SECTOR = 512


class PowerLoss(BaseException):
    """The simulated power failure. A BaseException so nothing in the core swallows it."""


@dataclass(frozen=True)
class _Write:
    offset: int
    data: bytes


@dataclass(frozen=True)
class _Resize:
    nbytes: int


_Op = _Write | _Resize


@dataclass(frozen=True)
class FaultStatistics:
    """What the device saw: for tests that want to know a fault was actually reached."""

    ops: int
    writes: int
    syncs: int
    bytes_written: int
    unsynced: int
    failed: bool


def _apply(image: bytearray, op: _Op) -> None:
    if isinstance(op, _Resize):
        if op.nbytes > len(image):
            image.extend(bytes(op.nbytes - len(image)))
        else:
            del image[op.nbytes:]
        return
    end = op.offset + len(op.data)
    if end > len(image):
        image.extend(bytes(end - len(image)))
    image[op.offset:end] = op.data


def _torn(op: _Write, rng: random.Random) -> _Write:
    """A prefix of the write, cut at a sector boundary inside it (never the whole write)."""
    first_boundary = (op.offset // SECTOR + 1) * SECTOR
    cuts = list(range(first_boundary, op.offset + len(op.data), SECTOR))
    if not cuts:
        return _Write(op.offset, b"")
    cut = rng.choice(cuts)
    return _Write(op.offset, op.data[:cut - op.offset])


class FaultyDevice:
    """In-memory Device with power-loss, torn-write and full-disk injection."""

    def __init__(self, data: bytes = b"", *, fail_at_op: int | None = None,
                 capacity: int | None = None, write_budget: int | None = None) -> None:
        self._current = bytearray(data)
        self._durable = bytearray(data)
        self.unsynced: list[_Op] = []
        self.fail_at_op = fail_at_op
        self.capacity = capacity
        self.write_budget = write_budget
        self.failed = False
        self.closed = False
        self._ops = 0
        self._writes = 0
        self._syncs = 0
        self._bytes_written = 0

    # ---- fault control ------------------------------------------------------------------------

    def power_fail(self) -> None:
        """Cut the power now: every later operation raises PowerLoss."""
        self.failed = True

    def _tick(self) -> None:
        if self.failed:
            raise PowerLoss("the power is off")
        self._ops += 1
        if self.fail_at_op is not None and self._ops >= self.fail_at_op:
            self.failed = True
            raise PowerLoss(f"power failed at device operation {self._ops}")

    def crash_image(self, rng: random.Random | int = 0, *, torn: bool = True) -> bytes:
        """What the disk may hold after the power came back (see the module comment)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        image = bytearray(self._durable)
        for op in self.unsynced:
            choice = rng.randrange(3 if torn and isinstance(op, _Write) else 2)
            if choice == 1:
                _apply(image, op)
            elif choice == 2:
                assert isinstance(op, _Write)
                _apply(image, _torn(op, rng))
        return bytes(image)

    def durable_image(self) -> bytes:
        """The image as of the last sync (every unsynced operation dropped)."""
        return bytes(self._durable)

    def current_image(self) -> bytes:
        """The image with every operation applied (what a process crash, not a power loss,
        leaves behind)."""
        return bytes(self._current)

    def statistics(self) -> FaultStatistics:
        return FaultStatistics(self._ops, self._writes, self._syncs, self._bytes_written,
                               len(self.unsynced), self.failed)

    # ---- the Device protocol ----------------------------------------------------------------

    def pread(self, size: int, offset: int) -> bytes:
        if self.failed:
            raise PowerLoss("the power is off")
        return bytes(self._current[offset:offset + size])

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        self._tick()
        payload = bytes(data)
        end = offset + len(payload)
        if self.capacity is not None and end > max(self.capacity, len(self._current)):
            raise NoSpace("simulated disk is full (write past capacity)")
        if self.write_budget is not None:
            room = self.write_budget - self._bytes_written
            if len(payload) > room:
                # A real disk may have written part of it before ENOSPC: keep that part.
                self._record(_Write(offset, payload[:max(room, 0) // SECTOR * SECTOR]))
                self._bytes_written = self.write_budget
                raise NoSpace("simulated disk is full (write budget spent)")
        self._record(_Write(offset, payload))
        self._writes += 1
        self._bytes_written += len(payload)

    def _record(self, op: _Op) -> None:
        if isinstance(op, _Write) and not op.data:
            return
        _apply(self._current, op)
        self.unsynced.append(op)

    def sync(self) -> None:
        self._tick()
        for op in self.unsynced:
            _apply(self._durable, op)
        self.unsynced.clear()
        self._syncs += 1

    def size(self) -> int:
        if self.failed:
            raise PowerLoss("the power is off")
        return len(self._current)

    def resize(self, nbytes: int) -> None:
        self._tick()
        if self.capacity is not None and nbytes > max(self.capacity, len(self._current)):
            raise NoSpace("simulated disk is full (cannot grow the file)")
        self._record(_Resize(nbytes))

    def close(self) -> None:
        self.closed = True
