"""Vacuum: move live pages down and give the free tail of the file back to the disk.

Theory of operation
-------------------
1. Commit, and sweep the snapshot dead list, so that every used page is reachable.
2. Every run above the *boundary* (the number of pages in use, plus a little slack) is copied
   to the lowest free place, with the allocator in first-fit-by-address mode (for the whole
   vacuum, so that what others write between its steps goes low too); nodes that point
   at moved things are rewritten too (relocate.py keeps births and sharing). The live catalog,
   every snapshot and the system tree are relocated, the snapshot records updated, and the old
   copies freed copy-on-write. Commit.
3. The free tail is cut off the allocator, a commit records the smaller file size, and only
   then is the file truncated — so a crash at any point leaves a valid archive: before the last
   commit the old (longer) file is still entirely valid; after it, the superblock no longer
   names anything past the new end.

The page allocator marks every copy as allocated before anything is written to it, so writes
made after a vacuum can never land on live data (the first implementation's vacuum forgot that).

Online: vacuum runs in *steps*, each under the archive lock and each ending with a commit;
step 2 moves at most ``BATCH_PAGES`` pages of extents per step (the largest first, as
planned). Between steps the lock is free, so other threads — a mount serving reads and
writes — go on, waiting at most one step. Each step starts by committing what they changed
and plans from the state it finds, so their changes are never lost and never moved half-way;
the boundary of a pass stays fixed (anything above it is moved, whoever put it there). Inode
numbers and contents never change, so open files are unaffected.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from . import snapshots
from .alloc import GROUP_PAGES
from .btree import TREE_CATALOG, TREE_SYSTEM
from .errors import ArchiveBusy
from .format import PAGE_SIZE
from .reach import catalog_tree, runs_of
from .relocate import Relocator

if TYPE_CHECKING:
    from .archive import Archive

Progress = Callable[[int, int], None]
R = TypeVar("R")


@dataclass(frozen=True)
class VacuumResult:
    """What a vacuum did, for the CLI to report."""

    pages_before: int
    pages_after: int
    moved_pages: int

    @property
    def bytes_reclaimed(self) -> int:
        return (self.pages_before - self.pages_after) * PAGE_SIZE

    slack_bytes = GROUP_PAGES * PAGE_SIZE
    """Free space a vacuum leaves at the end of the file for growth."""


MAX_PASSES = 4
BATCH_PAGES = 8192
"""Extent pages one step moves at most (32 MiB): how long other callers may have to wait."""

PAUSE_MAX = 0.05
"""Online: the longest pause after a step (others get about half the time, or more)."""

_running: weakref.WeakSet[Archive] = weakref.WeakSet()


class _Steps:
    """Runs the steps of one vacuum."""

    def __init__(self, archive: Archive, online: bool) -> None:
        self.archive = archive
        self.online = online

    def __call__(self, call: Callable[[], R]) -> R:
        """One step, as Archive's ``_writing`` calls run: under the lock, on an open and
        writable archive; a step that dies after changing something leaves the archive
        refusing to commit (its last commit stays intact on disk)."""
        started = time.monotonic()
        result = self.archive._run_writing(call)
        if self.online:
            time.sleep(min(time.monotonic() - started, PAUSE_MAX))
        return result


def vacuum(archive: Archive, progress: Progress | None = None, *,
           online: bool = False) -> VacuumResult:
    """Compact the archive in place, in steps (see above); other threads' calls may run
    between them. One vacuum at a time per archive (ArchiveBusy otherwise).

    ``online``: others are waiting to use the archive (a mount), so pause after each step
    as long as it took (at most PAUSE_MAX): a lock is not fair, and without the pause the
    vacuum's thread would take it straight back while the others' threads wake up.

    Extents have different sizes, so one pass leaves scraps: the holes its own moves open
    above the boundary only become free once it commits. Passes repeat (each one a complete,
    crash-safe compaction) while they still shrink the file, at most MAX_PASSES times."""
    with archive._lock:
        if archive in _running:
            raise ArchiveBusy("a vacuum of this archive is already running")
        _running.add(archive)
    step = _Steps(archive, online)
    try:
        # From here to the end every allocation — the vacuum's and anyone else's between
        # its steps — takes the lowest free place: data written meanwhile fills holes low
        # down instead of the free space at the top that the vacuum is about to cut off.
        before = step(lambda: _prepare(archive))
        moved = 0
        for _ in range(MAX_PASSES):
            length = step(lambda: archive._alloc.total_pages)
            moved += _one_pass(archive, step, progress)
            after = step(lambda: _trim_tail(archive))
            if after >= length:
                break
        return VacuumResult(before, after, moved)
    finally:
        with archive._lock:
            archive._alloc.prefer_low = False
            _running.discard(archive)


def _prepare(archive: Archive) -> int:
    archive._alloc.prefer_low = True
    archive._commit()
    snapshots._sweep_dead(archive)
    archive._commit()
    return archive._alloc.total_pages


def _one_pass(archive: Archive, step: _Steps, progress: Progress | None) -> int:
    alloc = archive._alloc

    def boundary_of_pass() -> tuple[int, int] | None:
        archive._commit()
        total = alloc.total_pages
        boundary = total - alloc.statistics().free_pages + GROUP_PAGES
        return (boundary, archive._clock.txid) if boundary < total else None

    found = step(boundary_of_pass)
    if found is None:
        return 0
    boundary, born_before = found
    to_move = step(lambda: alloc.total_pages) - boundary
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, to_move), to_move)

    moved = 0
    while True:
        batch, more = step(lambda: _relocate_catalogs(archive, boundary, born_before, tick))
        moved += batch
        if not more:
            break
    return moved + step(lambda: _relocate_system(archive, boundary, tick))


def _relocator(archive: Archive, boundary: int, tick: Callable[[int], None],
               placement: dict[int, int] | None = None) -> Relocator:
    pager = archive._pager
    return Relocator(pager, pager, archive._alloc.allocate,
                     lambda page, n: page + n > boundary, tick, placement)


def _plan(archive: Archive, boundary: int, born_before: int, budget: int
          ) -> tuple[dict[int, int], bool]:
    """New homes for the extents above the boundary, largest first, each the best fit
    strictly below where it is (placing in tree order let small runs fill the holes the
    big ones needed, and those then had nowhere to go but up) — until ``budget`` pages are
    placed. Only extents born before the pass began: what others write while it runs is
    left to the next pass (chasing it, a pass under a steady writer never ended). Returns
    the placement and whether extents were left for another step."""
    pager, clock, alloc = archive._pager, archive._clock, archive._alloc
    roots = [archive.superblock.catalog] + [s.root for s in snapshots.list_snapshots(archive)]
    runs: dict[int, int] = {}
    seen: set[int] = set()
    for root in roots:
        for start, n, birth in runs_of(catalog_tree(pager, clock, root), seen, nodes=False):
            if start + n > boundary and birth < born_before:
                runs[start] = n
    placement: dict[int, int] = {}
    placed = 0
    for start, n in sorted(runs.items(), key=lambda run: (-run[1], -run[0])):
        if placed >= budget:
            return placement, True
        new = alloc.allocate_below(n, start, boundary)
        if new is not None:
            placement[start] = new
            placed += n
    return placement, False


def _release(archive: Archive, mover: Relocator) -> int:
    """Free what the relocation replaced; point dead-list entries at their new homes."""
    alloc, txid = archive._alloc, archive._clock.txid
    dead = dict(alloc.dead_entries())
    alloc.forget_dead(list(dead))
    for start, n in dead.items():
        alloc.keep_dead(mover.moved_start(start), n)
    alloc.set_live_owned({mover.moved_start(start): n
                          for start, n in alloc.live_owned_entries()})
    moved = 0
    for start, n in mover.replaced:
        alloc.free(start, n, 0, txid, shared=False)
        moved += n
    return moved


def _relocate_catalogs(archive: Archive, boundary: int, born_before: int,
                       tick: Callable[[int], None]) -> tuple[int, bool]:
    """One step: move up to BATCH_PAGES pages of extents (and every node above the
    boundary) of the live tree and all snapshots; (pages moved, whether more are left)."""
    archive._commit()  # what other callers changed since the last step
    placement, more = _plan(archive, boundary, born_before, BATCH_PAGES)
    mover = _relocator(archive, boundary, tick, placement)
    live = mover.tree(archive.superblock.catalog, TREE_CATALOG)
    for info in snapshots.list_snapshots(archive):
        new_root = mover.tree(info.root, TREE_CATALOG)
        if new_root != info.root:
            snapshots.set_snapshot_root(archive, info, new_root)
    archive._replace_catalog_root(live)
    moved = _release(archive, mover)
    archive._commit()
    return moved, more and bool(placement)


def _relocate_system(archive: Archive, boundary: int, tick: Callable[[int], None]) -> int:
    archive._commit()
    mover = _relocator(archive, boundary, tick)
    root = mover.tree(archive.superblock.system, TREE_SYSTEM)
    archive._system.replace_root(root)
    archive._meta_dirty = True
    moved = _release(archive, mover)
    archive._commit()  # the allocator state is rewritten low in this commit
    return moved


def _trim_tail(archive: Archive) -> int:
    """Record the shorter length in a commit, then shrink the file; returns the length."""
    alloc = archive._alloc
    archive._commit()
    alloc.trim_last_group()
    # Keep the free pages the recording commits reserve (Archive._commit_pages): without
    # them that commit would grow the file straight back.
    new_total = alloc.highest_used_page() + 1 + archive._commit_pages()
    if new_total >= alloc.total_pages:
        return alloc.total_pages
    alloc.truncate_to(new_total)
    archive._meta_dirty = True
    archive._commit()
    # Not ``new_total``: if that commit had to grow the file for its own pages, the
    # superblock now names the longer length, and cutting below it would lose them.
    archive._pager.shrink(alloc.total_pages)
    # The other superblock slot still describes the longer file; one more commit rewrites
    # it, so even a damaged newest superblock cannot lead an open to a length we cut off.
    archive._meta_dirty = True
    archive._commit()
    return alloc.total_pages
