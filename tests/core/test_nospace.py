"""A full disk: NoSpace (a CartError) from write or sync, and nothing committed is lost.

Two kinds of full disk, both from :class:`FaultyDevice`:

* ``capacity`` — the file cannot grow past N bytes (``posix_fallocate`` failing with ENOSPC):
  the allocator's growth raises NoSpace *before* any state changes, so the archive stays
  usable — delete something and the next sync succeeds without reopening;
* ``write_budget`` — a ``pwrite`` fails with ENOSPC in the middle of a commit (after part of
  the commit is on disk): the archive refuses further changes until reopened, and the reopened
  archive holds the last synced state (or the commit that was being written, if its
  superblock got through), passes fsck and takes new writes.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import CartError, NoSpace
from cartfs.core.fsck import fsck
from cartfs.testing.faults import FaultyDevice
from cartfs.testing.tree import EntryState, diff_states, tree_state

OPTIONS = OpenOptions(commit_interval=1e9, flush_bytes=256 * 1024)
State = dict[str, EntryState]


def fill_until_full(archive: Archive, rng: random.Random, limit: int = 2000
                    ) -> tuple[State, list[State], str]:
    """Write and sync until NoSpace; returns (last synced state, states a failed commit may
    have made durable, where NoSpace came from)."""
    synced = tree_state(archive)
    for i in range(limit):
        data = rng.randbytes(rng.randrange(1000, 60000))
        try:
            archive.write_file(f"/fill/f{i}", data, parents=True)
        except NoSpace:
            return synced, [], "write"
        if rng.random() < 0.3:
            candidate = tree_state(archive)
            try:
                archive.sync()
            except NoSpace:
                return synced, [candidate], "sync"
            synced = candidate
    raise AssertionError("the disk never filled up")


def reopen_and_check(image: bytes, synced: State, in_flight: list[State]) -> Archive:
    archive = Archive.open_on(MemoryDevice(image), options=OPTIONS)
    report = fsck(archive)
    assert report.ok, report.problems
    found = tree_state(archive)
    assert found == synced or found in in_flight, "\n".join(diff_states(synced, found))
    return archive


def filled_archive(seed: int) -> tuple[FaultyDevice, Archive, State, list[State]]:
    rng = random.Random(seed)
    device = FaultyDevice(capacity=rng.choice([2, 3, 5]) << 20)
    archive = Archive.create_on(device, chunk_size=rng.choice([4096, 65536]),
                                compression=rng.choice(["none", "lz4"]), options=OPTIONS)
    synced, in_flight, _where = fill_until_full(archive, rng)
    assert device.size() <= (device.capacity or 0)
    return device, archive, synced, in_flight


@pytest.mark.parametrize("seed", range(6))
def test_file_cannot_grow(seed: int) -> None:
    """NoSpace from write or sync; close may fail too; the file holds the last commit."""
    device, archive, synced, in_flight = filled_archive(seed)
    in_flight = [*in_flight, tree_state(archive)]  # close may commit what was written
    with contextlib.suppress(NoSpace):
        archive.close()
    reopened = reopen_and_check(device.current_image(), synced, in_flight)
    reopened.close()


@pytest.mark.parametrize("seed", range(8))
def test_after_a_full_disk_reopen_delete_and_go_on(seed: int) -> None:
    """The usual way out: reopen (unsynced writes are gone, as after a crash), delete some
    files, sync — within the file's current size — and keep writing."""
    device, archive, synced, in_flight = filled_archive(seed)
    in_flight = [*in_flight, tree_state(archive)]  # close may commit what was written
    with contextlib.suppress(CartError):
        archive.close()
    reopened = reopen_and_check(device.current_image(), synced, in_flight)
    names = reopened.listdir("/fill")
    for name in names[: len(names) // 2 + 1]:
        reopened.remove(f"/fill/{name}")
    reopened.sync()
    reopened.write_file("/fill/again", b"y" * 100_000)
    reopened.sync()
    report = fsck(reopened)
    assert report.ok, report.problems
    reopened.close()


@pytest.mark.parametrize("seed", range(12))
def test_full_disk_never_breaks_the_open_archive(seed: int) -> None:
    """NoSpace must come before the commit changes anything, so the archive stays usable:
    the caller can delete what it just wrote and go on without reopening (seed 4 once
    needed a contiguous run the page count did not promise)."""
    _device, archive, synced, _in_flight = filled_archive(seed)
    unsynced = [n for n in archive.listdir("/fill") if f"/fill/{n}" not in synced]
    for name in unsynced:
        archive.remove(f"/fill/{name}")
    archive.sync()
    assert tree_state(archive) == synced


@pytest.mark.parametrize("seed", range(12))
def test_deleting_without_reopening_when_the_disk_is_full(seed: int) -> None:
    """Data never takes the metadata reserve, so a commit that only deletes still finds
    pages for its nodes on a full disk (seed 3 once filled every page)."""
    _device, archive, synced, _in_flight = filled_archive(seed)
    for name in archive.listdir("/fill"):
        if f"/fill/{name}" not in synced or name.endswith(("0", "2", "4")):
            archive.remove(f"/fill/{name}")
    archive.sync()
    report = fsck(archive)
    assert report.ok, report.problems


@pytest.mark.parametrize("seed", range(10))
def test_enospc_in_the_middle_of_a_commit(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.randrange(300_000, 3_000_000)
    device = FaultyDevice(write_budget=budget)
    archive = Archive.create_on(device, chunk_size=rng.choice([4096, 65536]),
                                compression=rng.choice(["none", "zstd"]), options=OPTIONS)
    synced, in_flight, _where = fill_until_full(archive, rng)
    # After a failed write the archive must not pretend all is well.
    with pytest.raises(CartError):
        archive.write_file("/after", b"x" * 100)
        archive.sync()
    with contextlib.suppress(CartError):
        archive.close()
    reopened = reopen_and_check(device.current_image(), synced, in_flight)
    reopened.write_file("/more/data", b"after the disk was freed" * 100, parents=True)
    reopened.close()


def test_nospace_is_a_carterror_with_errno() -> None:
    assert issubclass(NoSpace, CartError)
    assert NoSpace("x").errno == 28
