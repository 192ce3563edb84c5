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
from .relocate import Relocator

if TYPE_CHECKING:
    from .archive import Archive

Progress = Callable[[int, int], None]
COMMIT_RESERVE = 16


@dataclass(frozen=True)
class VacuumResult:
    """What a vacuum did, for the CLI to report."""

    pages_before: int
    pages_after: int
    moved_pages: int

    @property
    def bytes_reclaimed(self) -> int:
        return (self.pages_before - self.pages_after) * PAGE_SIZE


def vacuum(archive: Archive, progress: Progress | None = None) -> VacuumResult:
    """Compact the archive in place (callers hold the archive lock)."""
    archive._commit()
    snapshots._sweep_dead(archive)
    archive._commit()
    alloc = archive._alloc
    before = alloc.total_pages
    stats = alloc.statistics()
    boundary = before - stats.free_pages + GROUP_PAGES
    moved = 0
    if boundary < before:
        to_move = before - boundary
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, to_move), to_move)

        alloc.prefer_low = True
        try:
            moved = _relocate_catalogs(archive, boundary, tick)
            moved += _relocate_system(archive, boundary, tick)
        finally:
            alloc.prefer_low = False
    _trim_tail(archive)
    return VacuumResult(before, alloc.total_pages, moved)


def _relocator(archive: Archive, boundary: int, tick: Callable[[int], None]) -> Relocator:
    pager = archive._pager
    return Relocator(pager, pager, archive._alloc.allocate,
                     lambda page, n: page + n > boundary, tick)


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
    mover = _relocator(archive, boundary, tick)
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
    # Keep the free pages the recording commit reserves (Archive._commit asks for 16 beyond
    # its dirty pages): without them that commit would grow the file straight back.
    new_total = alloc.highest_used_page() + 1 + COMMIT_RESERVE
    if new_total >= alloc.total_pages:
        return
    alloc.truncate_to(new_total)
    archive._meta_dirty = True
    archive._commit()
    # Not ``new_total``: if that commit had to grow the file for its own pages, the
    # superblock now names the longer length, and cutting below it would lose them.
    archive._pager.shrink(alloc.total_pages)
