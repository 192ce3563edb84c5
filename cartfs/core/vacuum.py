"""Vacuum: move live pages down and give the free tail of the file back to the disk.

Theory of operation
-------------------
1. Commit, and sweep the snapshot dead list, so that every used page is reachable.
2. Every run above the *boundary* (the number of pages in use, plus a little slack) is copied
   to the lowest free place, with the allocator in first-fit-by-address mode; nodes that point
   at moved things are rewritten too (relocate.py keeps births and sharing). The live catalog,
   every snapshot and the system tree are relocated, the snapshot records updated, and the old
   copies freed copy-on-write. Commit.
3. The free tail is cut off the allocator, a commit records the smaller file size, and only
   then is the file truncated — so a crash at any point leaves a valid archive: before the last
   commit the old (longer) file is still entirely valid; after it, the superblock no longer
   names anything past the new end.

The page allocator marks every copy as allocated before anything is written to it, so writes
made after a vacuum can never land on live data (the first implementation's vacuum forgot that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import snapshots
from .alloc import GROUP_PAGES
from .btree import TREE_CATALOG, TREE_SYSTEM
from .format import PAGE_SIZE
from .reach import catalog_tree, extents_of
from .relocate import Relocator

if TYPE_CHECKING:
    from .archive import Archive

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VacuumResult:
    """What a vacuum did, for the CLI to report."""

    pages_before: int
    pages_after: int
    moved_pages: int

    @property
    def bytes_reclaimed(self) -> int:
        return (self.pages_before - self.pages_after) * PAGE_SIZE


MAX_PASSES = 4


def vacuum(archive: Archive, progress: Progress | None = None) -> VacuumResult:
    """Compact the archive in place (callers hold the archive lock).

    Extents have different sizes, so one pass leaves scraps: the holes its own moves open
    above the boundary only become free once it commits. Passes repeat (each one a complete,
    crash-safe compaction) while they still shrink the file, at most MAX_PASSES times."""
    archive._commit()
    snapshots._sweep_dead(archive)
    archive._commit()
    alloc = archive._alloc
    before = alloc.total_pages
    moved = 0
    for _ in range(MAX_PASSES):
        length = alloc.total_pages
        moved += _one_pass(archive, progress)
        _trim_tail(archive)
        if alloc.total_pages >= length:
            break
    return VacuumResult(before, alloc.total_pages, moved)


def _one_pass(archive: Archive, progress: Progress | None) -> int:
    alloc = archive._alloc
    total = alloc.total_pages
    boundary = total - alloc.statistics().free_pages + GROUP_PAGES
    if boundary >= total:
        return 0
    to_move = total - boundary
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, to_move), to_move)

    alloc.prefer_low = True
    try:
        moved = _relocate_catalogs(archive, boundary, tick)
        return moved + _relocate_system(archive, boundary, tick)
    finally:
        alloc.prefer_low = False


def _relocator(archive: Archive, boundary: int, tick: Callable[[int], None],
               placement: dict[int, int] | None = None) -> Relocator:
    pager = archive._pager
    return Relocator(pager, pager, archive._alloc.allocate,
                     lambda page, n: page + n > boundary, tick, placement)


def _plan(archive: Archive, boundary: int) -> dict[int, int]:
    """New homes for the extents above the boundary, largest first, each the best fit
    strictly below where it is (placing in tree order let small runs fill the holes the
    big ones needed, and those then had nowhere to go but up)."""
    pager, clock, alloc = archive._pager, archive._clock, archive._alloc
    roots = [archive.superblock.catalog] + [s.root for s in snapshots.list_snapshots(archive)]
    runs: dict[int, int] = {}
    seen: set[int] = set()
    for root in roots:
        for start, n in extents_of(catalog_tree(pager, clock, root), seen):
            if start + n > boundary:
                runs[start] = n
    placement: dict[int, int] = {}
    for start, n in sorted(runs.items(), key=lambda run: (-run[1], -run[0])):
        new = alloc.allocate_below(n, start, boundary)
        if new is not None:
            placement[start] = new
    return placement


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


def _relocate_catalogs(archive: Archive, boundary: int, tick: Callable[[int], None]) -> int:
    mover = _relocator(archive, boundary, tick, _plan(archive, boundary))
    live = mover.tree(archive.superblock.catalog, TREE_CATALOG)
    for info in snapshots.list_snapshots(archive):
        new_root = mover.tree(info.root, TREE_CATALOG)
        if new_root != info.root:
            snapshots.set_snapshot_root(archive, info, new_root)
    archive._replace_catalog_root(live)
    moved = _release(archive, mover)
    archive._commit()
    return moved


def _relocate_system(archive: Archive, boundary: int, tick: Callable[[int], None]) -> int:
    mover = _relocator(archive, boundary, tick)
    root = mover.tree(archive.superblock.system, TREE_SYSTEM)
    archive._system.replace_root(root)
    archive._meta_dirty = True
    moved = _release(archive, mover)
    archive._commit()  # the allocator state is rewritten low in this commit
    return moved


def _trim_tail(archive: Archive) -> None:
    """Record the shorter length in a commit, then shrink the file."""
    alloc = archive._alloc
    alloc.trim_last_group()
    # Keep the free pages the recording commits reserve (Archive._commit_pages): without
    # them that commit would grow the file straight back.
    new_total = alloc.highest_used_page() + 1 + archive._commit_pages()
    if new_total >= alloc.total_pages:
        return
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
