"""Hybrid page allocator: bitmap groups for single pages, free extents for runs.

Theory of operation
-------------------
The file is ``total_pages`` pages long. Pages 0 and 1 are the superblocks. Every other page is
in exactly one of these states:

* **free extent** — part of a run in ``_free`` (start → length, coalesced; a size index finds
  the best fit for a run of n pages in O(log n));
* **group page** — inside a *bitmap group*: a run (normally 64 pages) carved from the free
  extents to serve single-page allocations (B-tree nodes, small chunks) close together; a bit
  per page says used/free. A group that becomes wholly free goes back to the extents;
* **in use** — reachable from the committed or the working tree;
* **pending** — freed by transaction T (copy-on-write replaced it). The previous superblock may
  still point at it, so it becomes free only after T is durable (``release``). In-process
  readers that looked a page up before T committed also hold it back (``hold``/``unhold``);
* **dead** — freed by the live tree, but born (birth txid B) no later than the newest snapshot
  S, so a snapshot may still reach it (ZFS's birth-time rule: a snapshot at S holds what was
  born at B ≤ S and freed after S). Dead runs return only when a snapshot is deleted and a mark
  pass proves no remaining root reaches them (see snapshots.py and ``release_dead``).

Growth: when no free run fits, the file grows by at least 1/8 of its size (1 MiB .. 64 MiB),
through a callback that reserves real disk blocks, so a full disk raises NoSpace *before* any
state changes.

Persistence: ``encode()`` writes the free extents, the groups' bitmaps, the pending lists (they
are free in the state being committed) and the dead list, as varints. The blob's own pages are
allocated before it is encoded, so the stored state accounts for itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict, SortedList

from .errors import CorruptArchive
from .format import FIRST_DATA_PAGE

GROUP_PAGES = 64
MIN_GROWTH_PAGES = 256  # 1 MiB
MAX_GROWTH_PAGES = 16384  # 64 MiB


@dataclass(frozen=True)
class AllocatorStatistics:
    """Counters for `cartfs info`, statfs and benchmarks (all in pages)."""

    total_pages: int
    free_pages: int
    used_pages: int
    pending_pages: int
    dead_pages: int
    free_extents: int
    groups: int
    growths: int


@dataclass
class _Group:
    start: int
    size: int
    used: int  # bitmask: bit i set = page start+i in use

    @property
    def full_mask(self) -> int:
        return (1 << self.size) - 1

    def free_count(self) -> int:
        return self.size - self.used.bit_count()


class Allocator:
    """Tracks which pages are free; see the module comment for the page states."""

    def __init__(self, total_pages: int, grow: Callable[[int], None] | None = None) -> None:
        self.total_pages = total_pages
        self._grow_callback = grow
        self._free: SortedDict = SortedDict()  # start -> length
        self._by_size: SortedList = SortedList()  # (length, start)
        self._extent_pages = 0  # sum of free extent lengths
        self._groups: SortedDict = SortedDict()  # start -> _Group
        self._groups_with_space: SortedList = SortedList()  # starts
        self._pending: dict[int, list[tuple[int, int]]] = {}  # txid -> [(start, n)]
        self._dead: dict[int, int] = {}  # start -> n: runs a snapshot may still reach
        self._owned: dict[int, int] = {}  # start -> n: old runs only the live tree reaches
        self._holds: dict[int, int] = {}  # txid -> number of readers holding pages of it
        self.snapshot_horizon = 0  # newest snapshot txid: births <= this may be shared
        self.prefer_low = False  # vacuum: first fit by address, so the file can shrink
        self._growths = 0

    # ---- creation -------------------------------------------------------------------------

    @classmethod
    def fresh(cls, total_pages: int, grow: Callable[[int], None] | None = None) -> Allocator:
        """All pages after the superblocks free."""
        alloc = cls(total_pages, grow)
        if total_pages > FIRST_DATA_PAGE:
            alloc._add_free(FIRST_DATA_PAGE, total_pages - FIRST_DATA_PAGE)
        return alloc

    # ---- free-extent bookkeeping ------------------------------------------------------------

    def _insert_extent(self, start: int, length: int) -> None:
        self._free[start] = length
        self._by_size.add((length, start))
        self._extent_pages += length

    def _remove_extent(self, start: int) -> int:
        length: int = self._free.pop(start)
        self._by_size.remove((length, start))
        self._extent_pages -= length
        return length

    def _add_free(self, start: int, length: int) -> None:
        """Return a run to the free extents, merging with neighbours."""
        if start < FIRST_DATA_PAGE or start + length > self.total_pages:
            raise CorruptArchive(f"free of pages {start}..{start + length - 1} outside the file",
                                 page=start, kind="allocator")
        keys = self._free.keys()
        idx = self._free.bisect_right(start)
        if idx < len(keys):
            next_start = keys[idx]
            if start + length > next_start:
                raise CorruptArchive(f"double free of page {next_start}", page=next_start,
                                     kind="allocator")
            if start + length == next_start:
                length += self._remove_extent(next_start)
        if idx > 0:
            prev_start = keys[idx - 1]
            prev_len = self._free[prev_start]
            if prev_start + prev_len > start:
                raise CorruptArchive(f"double free of page {start}", page=start,
                                     kind="allocator")
            if prev_start + prev_len == start:
                self._remove_extent(prev_start)
                start, length = prev_start, prev_len + length
        self._insert_extent(start, length)

    def _take_extent(self, n: int) -> int | None:
        """Best fit: the smallest free run of at least n pages; None if none."""
        idx = self._by_size.bisect_left((n, -1))
        if idx == len(self._by_size):
            return None
        length, start = self._by_size[idx]
        self._remove_extent(start)
        if length > n:
            self._insert_extent(start + n, length - n)
        return int(start)

    # ---- growth -----------------------------------------------------------------------------

    def _grow_for(self, n: int) -> None:
        step = min(max(self.total_pages // 8, MIN_GROWTH_PAGES), MAX_GROWTH_PAGES)
        new_total = self.total_pages + max(n, step)
        if self._grow_callback is not None:
            self._grow_callback(new_total)  # may raise NoSpace: nothing changed yet
        old_total = self.total_pages
        self.total_pages = new_total
        self._growths += 1
        self._add_free(old_total, new_total - old_total)

    def reserve(self, n: int, *, keep: int = 0) -> None:
        """Make sure n single pages can be allocated without growing and ``keep`` more stay
        free afterwards (raises NoSpace, changing nothing, when the disk is full)."""
        shortfall = n + keep - self.free_page_count()
        if shortfall > 0:
            self._grow_for(shortfall + GROUP_PAGES)

    @property
    def metadata_reserve(self) -> int:
        """Pages data may not take: a commit that only deletes must still find pages for its
        copied-on-write nodes when the disk is full (deleted pages free up only after it)."""
        return max(64, min(self.total_pages // 128, 4096))

    def take_runs(self, sizes: list[int]) -> list[int]:
        """Allocate one run per size for data, leaving the metadata reserve free — all or
        nothing: on NoSpace every run taken so far is given back and the error raised."""
        taken: list[tuple[int, int]] = []
        try:
            for n in sizes:
                taken.append((self.allocate(n), n))
            self.reserve(0, keep=self.metadata_reserve)
        except BaseException:
            for start, n in taken:
                self.free_now(start, n)
            raise
        return [start for start, _ in taken]

    # ---- allocation -------------------------------------------------------------------------

    def allocate(self, n: int = 1) -> int:
        """Allocate n contiguous pages and return the first page number."""
        if n < 1:
            raise ValueError("allocate needs n >= 1")
        if self.prefer_low:
            low = self._allocate_low(n)
            if low is not None:
                return low
        if n == 1:
            return self._allocate_single()
        start = self._take_extent(n)
        if start is None:
            self._grow_for(n)
            start = self._take_extent(n)
            assert start is not None
        return start

    def _allocate_low(self, n: int) -> int | None:
        """The lowest-addressed free place for n pages (a group bit or an extent)."""
        group_page = None
        if n == 1 and self._groups_with_space:
            group: _Group = self._groups[self._groups_with_space[0]]
            free_bits = ~group.used & group.full_mask
            group_page = group.start + (free_bits & -free_bits).bit_length() - 1
        for start, length in self._free.items():
            if group_page is not None and start > group_page:
                break
            if length >= n:
                self._remove_extent(start)
                if length > n:
                    self._insert_extent(start + n, length - n)
                return int(start)
        if group_page is not None:
            return self._allocate_single()
        return None

    def allocate_below(self, n: int, limit: int, boundary: int) -> int | None:
        """Vacuum's planner: a free run of n pages wholly below ``limit`` (where the run is
        now), or None — never anywhere higher. Best fit among the holes below ``boundary``
        (the target length) packs tightest; failing that, the lowest hole that fits."""
        if n == 1 and self._groups_with_space:
            group: _Group = self._groups[self._groups_with_space[0]]
            free_bits = ~group.used & group.full_mask
            page = group.start + (free_bits & -free_bits).bit_length() - 1
            if page < limit:
                group.used |= 1 << (page - group.start)
                if group.used == group.full_mask:
                    self._groups_with_space.remove(group.start)
                return page
        below = min(limit, boundary)
        chosen = next((start for length, start in self._by_size.irange((n, -1))
                       if start + n <= below), None)
        if chosen is None:
            chosen = next((start for start, length in self._free.items()
                           if length >= n and start + n <= limit), None)
        if chosen is None:
            return None
        length = self._remove_extent(chosen)
        if length > n:
            self._insert_extent(chosen + n, length - n)
        return int(chosen)

    def _allocate_single(self) -> int:
        if not self._groups_with_space:
            self._new_group()
        group: _Group = self._groups[self._groups_with_space[0]]
        free_bits = ~group.used & group.full_mask
        bit = (free_bits & -free_bits).bit_length() - 1
        group.used |= 1 << bit
        if group.used == group.full_mask:
            self._groups_with_space.remove(group.start)
        return group.start + bit

    def _new_group(self) -> None:
        start = self._take_extent(GROUP_PAGES)
        size = GROUP_PAGES
        if start is None and self._by_size:
            size = int(self._by_size[-1][0])  # fragmented: use the largest run there is
            start = self._take_extent(size)
        if start is None:
            self._grow_for(GROUP_PAGES)
            start = self._take_extent(GROUP_PAGES)
            size = GROUP_PAGES
        assert start is not None
        self._groups[start] = _Group(start, size, 0)
        self._groups_with_space.add(start)

    # ---- freeing ----------------------------------------------------------------------------

    def free(self, start: int, n: int, birth: int, txid: int, *, shared: bool = True) -> None:
        """Page run (start, n), written at ``birth``, is no longer used by transaction txid.

        ``shared`` says a snapshot could reach the run (catalog pages and file data); the
        allocator state and the system tree are never part of a snapshot.
        """
        if start in self._owned:
            del self._owned[start]
        elif shared and birth <= self.snapshot_horizon:
            self._dead.setdefault(start, n)
            return
        self._pending.setdefault(txid, []).append((start, n))

    def free_now(self, start: int, n: int) -> None:
        """Return pages no committed state or reader has ever seen (e.g. a failed encode)."""
        group = self._group_of(start) if n == 1 else None
        if group is None:
            self._add_free(start, n)
            return
        bit = 1 << (start - group.start)
        if not group.used & bit:
            raise CorruptArchive(f"double free of page {start}", page=start, kind="allocator")
        was_full = group.used == group.full_mask
        group.used &= ~bit
        if group.used == 0:
            del self._groups[group.start]
            if not was_full:
                self._groups_with_space.remove(group.start)
            self._add_free(group.start, group.size)
        elif was_full:
            self._groups_with_space.add(group.start)

    def _group_of(self, page: int) -> _Group | None:
        idx = self._groups.bisect_right(page) - 1
        if idx < 0:
            return None
        group: _Group = self._groups.values()[idx]
        return group if page < group.start + group.size else None

    def hold(self, txid: int) -> None:
        """A reader looked pages up during transaction txid: keep its frees pending."""
        self._holds[txid] = self._holds.get(txid, 0) + 1

    def unhold(self, txid: int) -> None:
        count = self._holds[txid] - 1
        if count:
            self._holds[txid] = count
        else:
            del self._holds[txid]

    def release(self, durable_txid: int) -> None:
        """Frees of transactions up to ``durable_txid`` (committed) become reusable.

        A free made in transaction T is held back while a reader that started at or before T
        is still running.
        """
        oldest_reader = min(self._holds, default=None)
        for txid in sorted(self._pending):
            if txid > durable_txid or (oldest_reader is not None and txid >= oldest_reader):
                break
            for start, n in self._pending.pop(txid):
                self.free_now(start, n)

    # ---- snapshots ----------------------------------------------------------------------------

    def dead_entries(self) -> list[tuple[int, int]]:
        """(start, n) of every page run a snapshot may still hold."""
        return list(self._dead.items())

    def release_dead(self, starts: list[int], txid: int) -> None:
        """The archive proved no remaining root reaches these dead runs: free them."""
        for start in starts:
            self._pending.setdefault(txid, []).append((start, self._dead.pop(start)))

    def forget_dead(self, starts: list[int]) -> None:
        """The live tree reaches these runs again (after a restore): it will free them."""
        for start in starts:
            del self._dead[start]

    def keep_dead(self, start: int, n: int) -> None:
        """A run only snapshots reach now (the live tree let go of it in a restore)."""
        self._dead.setdefault(start, n)

    def is_dead(self, start: int) -> bool:
        return start in self._dead

    def set_live_owned(self, runs: dict[int, int]) -> None:
        """Runs born no later than the horizon that only the live tree reaches (it went
        back to an older snapshot that was then deleted). The birth rule would park them on
        the dead list when freed; they go straight to pending instead."""
        self._owned = dict(runs)

    def live_owned_entries(self) -> list[tuple[int, int]]:
        return list(self._owned.items())

    # ---- queries ----------------------------------------------------------------------------

    def free_page_count(self) -> int:
        groups = sum(self._groups[s].free_count() for s in self._groups_with_space)
        return int(self._extent_pages + groups)

    def iter_free(self) -> Iterator[tuple[int, int]]:
        """Every free run (start, n), extents and group bits alike, pending excluded."""
        yield from self._free.items()
        for group in self._groups.values():
            free_bits = ~group.used & group.full_mask
            while free_bits:
                bit = (free_bits & -free_bits).bit_length() - 1
                free_bits &= free_bits - 1
                yield group.start + bit, 1

    def iter_pending(self) -> Iterator[tuple[int, int]]:
        for runs in self._pending.values():
            yield from runs

    def statistics(self) -> AllocatorStatistics:
        free = self.free_page_count()
        pending = sum(n for _, n in self.iter_pending())
        dead = sum(self._dead.values())
        return AllocatorStatistics(
            total_pages=self.total_pages, free_pages=free,
            used_pages=self.total_pages - free - pending - dead - FIRST_DATA_PAGE,
            pending_pages=pending, dead_pages=dead, free_extents=len(self._free),
            groups=len(self._groups), growths=self._growths,
        )

    # ---- shrinking (vacuum) -------------------------------------------------------------------

    def highest_used_page(self) -> int:
        """The last page that is not free (pending and dead count as used)."""
        end = self.total_pages
        while True:
            idx = self._free.bisect_right(end - 1) - 1
            if idx < 0:
                return end - 1
            start = int(self._free.keys()[idx])
            if start + self._free[start] < end:
                return end - 1
            end = start
            if end <= FIRST_DATA_PAGE:
                return FIRST_DATA_PAGE - 1

    def trim_last_group(self) -> None:
        """Vacuum: hand the free pages at the top of the highest bitmap group back to the
        extents. Relocation empties every group above its boundary, but the one group that
        straddles it keeps up to 63 free bits at its top, which would pin the file length."""
        if not self._groups:
            return
        group: _Group = self._groups.values()[-1]
        keep = group.used.bit_length()  # pages up to the highest one in use
        if keep == group.size:
            return
        had_space = group.used != group.full_mask
        if keep == 0:
            del self._groups[group.start]
            if had_space:
                self._groups_with_space.remove(group.start)
            self._add_free(group.start, group.size)
            return
        freed = group.size - keep
        group.size = keep
        if group.used == group.full_mask and had_space:
            self._groups_with_space.remove(group.start)
        self._add_free(group.start + keep, freed)

    def truncate_to(self, total_pages: int) -> None:
        """Drop the free tail so the file can shrink to ``total_pages``."""
        if total_pages <= self.highest_used_page():
            raise ValueError("cannot truncate below a used page")
        # The free tail starts at or below ``total_pages`` (often exactly there: bisecting
        # for ``total_pages - 1`` would pick the extent before it and free live pages).
        idx = self._free.bisect_right(total_pages) - 1
        start = self._free.keys()[idx]
        if start + self._free[start] != self.total_pages:
            raise ValueError("the pages above the new end are not one free tail")
        self._remove_extent(start)
        if start < total_pages:
            self._insert_extent(start, total_pages - start)
        self.total_pages = total_pages

    # ---- persistence --------------------------------------------------------------------------

    def encode(self, min_length: int = 0) -> bytes:
        """Serialise the state *as it will be once this commit is durable*.

        ``min_length`` pads the encoding with redundant varint bytes (still valid LEB128,
        decoding to the same values): the commit allocates the state's pages before encoding
        it, and if taking them made the encoding shorter, it must still fill every page it
        was given — a page allocated but not covered by the blob would leak.
        """
        data = self._encode(None)
        if len(data) >= min_length:
            return data
        budget = [min_length - len(data)]
        data = self._encode(budget)
        if budget[0]:
            raise ValueError("allocator state cannot be padded that far")
        return data

    def _encode(self, pad: list[int] | None) -> bytes:
        out = bytearray()
        _put(out, self.total_pages, pad)
        _put(out, self.snapshot_horizon, pad)
        _put_runs(out, list(self._free.items()), pad)
        _put(out, len(self._groups), pad)
        last = 0
        for group in self._groups.values():
            _put(out, group.start - last, pad)
            _put(out, group.size, pad)
            out += group.used.to_bytes((group.size + 7) // 8, "little")
            last = group.start
        _put_runs(out, sorted(self.iter_pending()), pad)
        _put(out, len(self._dead), pad)
        last = 0
        for start in sorted(self._dead):
            _put(out, start - last, pad)
            _put(out, self._dead[start], pad)
            last = start
        if self._owned:  # optional trailing section (absent in most archives)
            _put_runs(out, sorted(self._owned.items()), pad)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, grow: Callable[[int], None] | None = None) -> Allocator:
        """Rebuild from ``encode()``'s bytes; pending runs are free now."""
        reader = _Reader(data)
        try:
            alloc = cls(reader.get(), grow)
            alloc.snapshot_horizon = reader.get()
            for start, length in reader.runs():
                alloc._insert_extent(start, length)
            last = 0
            for _ in range(reader.get()):
                start = last + reader.get()
                size = reader.get()
                used = int.from_bytes(reader.take((size + 7) // 8), "little")
                alloc._groups[start] = _Group(start, size, used)
                if used != (1 << size) - 1:
                    alloc._groups_with_space.add(start)
                last = start
            for start, n in reader.runs():
                alloc.free_now(start, n)
            last = 0
            for _ in range(reader.get()):
                start = last + reader.get()
                alloc._dead[start] = reader.get()
                last = start
            if not reader.done():
                alloc._owned = dict(reader.runs())
        except (IndexError, ValueError, KeyError) as exc:
            raise CorruptArchive(f"allocator state does not decode: {exc}",
                                 kind="allocator") from exc
        if not reader.done():
            raise CorruptArchive("allocator state has trailing bytes", kind="allocator")
        runs = [*alloc._free.items(), *((g.start, g.size) for g in alloc._groups.values())]
        for start, n in runs:  # else allocations would land outside the file
            if start < FIRST_DATA_PAGE or n < 1 or start + n > alloc.total_pages:
                raise CorruptArchive(f"free run {start}+{n} outside the file", kind="allocator")
        if any(g.used >> g.size for g in alloc._groups.values()):
            raise CorruptArchive("group bitmap has bits past its end", kind="allocator")
        return alloc


MAX_VARINT_BYTES = 10  # what _Reader accepts (shift up to 63)


def _put(out: bytearray, value: int, pad: list[int] | None = None) -> None:
    """Unsigned LEB128 varint; takes up to ``pad[0]`` redundant bytes (0x80 groups) from a
    padding budget."""
    extra = 0
    if pad and pad[0] > 0:
        extra = min(pad[0], MAX_VARINT_BYTES - max(1, -(-value.bit_length() // 7)))
        pad[0] -= extra
    while value >= 0x80 or extra > 0:
        if value < 0x80:
            extra -= 1
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_runs(out: bytearray, runs: list[tuple[int, int]],
              pad: list[int] | None = None) -> None:
    _put(out, len(runs), pad)
    last = 0
    for start, length in runs:
        _put(out, start - last, pad)
        _put(out, length, pad)
        last = start


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def get(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def runs(self) -> Iterator[tuple[int, int]]:
        last = 0
        for _ in range(self.get()):
            start = last + self.get()
            yield start, self.get()
            last = start

    def done(self) -> bool:
        return self.pos == len(self.data)
