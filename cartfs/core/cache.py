"""Byte-budgeted ARC buffer pool for decoded B-tree nodes and decoded file chunks.

Theory of operation
-------------------
ARC (Megiddo & Modha, FAST 2003) keeps four LRU lists: T1 holds entries seen once recently,
T2 entries seen at least twice, and the "ghost" lists B1 and B2 remember the keys (never the
values) recently evicted from T1 and T2. Here every list is weighted in bytes, because a node
(~4 KiB) and a chunk (up to 64 KiB) must not count the same.

The target ``p`` is the number of bytes T1 should hold. A put of a key found in B1 means "T1
was too small": p grows by the ghost's size times max(1, |B2|/|B1|) (in bytes), capped at the
capacity. A put of a key found in B2 means "T2 was too small": p shrinks symmetrically, not
below 0. To make room, REPLACE evicts the LRU of T1 into B1 while T1 holds more than p bytes
(or exactly p on a B2 hit), otherwise the LRU of T2 into B2. A one-time scan therefore only
churns T1 and leaves the twice-used working set in T2 alone.

Invariants (c = capacity in bytes), restored by every public call before it returns:

* |T1| + |T2| <= c                (resident bytes; a value larger than c is never cached)
* |T1| + |B1| <= c and |B2| <= c  (each ghost list holds at most c bytes)
* |T1| + |T2| + |B1| + |B2| <= 2c
* 0 <= p <= c
* a key is in at most one of the four lists.

Every trimming loop pops one entry per iteration and stops when its list is empty, so it
cannot spin (an earlier implementation looped forever once ghosts exceeded 2c). Each entry is
charged at least one byte, so entry counts are bounded by the byte budget too. One
``threading.Lock`` guards all state; every operation is O(1) amortised on ``OrderedDict``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ARCCache", "CacheStatistics"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_P = TypeVar("_P")


@dataclass(frozen=True)
class CacheStatistics:
    """A consistent snapshot of cache counters, so benchmarks and ``cartfs info`` report facts."""

    hits: int
    misses: int
    evictions: int
    bytes: int
    entries: int
    capacity: int
    recent_bytes: int
    frequent_bytes: int
    ghost_recent_bytes: int
    ghost_frequent_bytes: int
    target_recent_bytes: int

    @property
    def hit_ratio(self) -> float:
        """Fraction of get() calls that hit; 0.0 before the first get()."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class _Lane(Generic[K, _P]):
    """One LRU list (LRU first, MRU last) that keeps its total byte weight up to date."""

    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: OrderedDict[K, tuple[_P, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def push(self, key: K, payload: _P, size: int) -> None:
        """Insert at the MRU end (replacing any existing entry for the key)."""
        self.remove(key)
        self.entries[key] = (payload, size)
        self.bytes += size

    def remove(self, key: K) -> tuple[_P, int] | None:
        """Remove the key and return (payload, size), or None when absent."""
        item = self.entries.pop(key, None)
        if item is not None:
            self.bytes -= item[1]
        return item

    def pop_lru(self) -> tuple[K, _P, int]:
        """Remove and return the least recently used entry; the lane must be non-empty."""
        key, (payload, size) = self.entries.popitem(last=False)
        self.bytes -= size
        return key, payload, size

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


def _check_capacity(capacity_bytes: int) -> int:
    if capacity_bytes < 0:
        raise ValueError(f"cache capacity must be >= 0 bytes, got {capacity_bytes}")
    return capacity_bytes


def _charge(size: int) -> int:
    """Bytes an entry costs: its size, but at least 1 so entry counts stay bounded."""
    if size < 0:
        raise ValueError(f"cache entry size must be >= 0 bytes, got {size}")
    return max(size, 1)


class ARCCache(Generic[K, V]):
    """Thread-safe ARC cache with a byte budget, so node and chunk decoding is paid once.

    Values are stored by reference, never copied. Capacity 0 caches nothing.
    """

    def __init__(self, capacity_bytes: int) -> None:
        """Create an empty cache holding at most ``capacity_bytes`` bytes of values."""
        self._lock = threading.Lock()
        self._capacity = _check_capacity(capacity_bytes)
        self._target = 0
        self._t1: _Lane[K, V] = _Lane()
        self._t2: _Lane[K, V] = _Lane()
        self._b1: _Lane[K, None] = _Lane()
        self._b2: _Lane[K, None] = _Lane()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    # --- public API ---------------------------------------------------------------------

    def get(self, key: K) -> V | None:
        """Return the cached value (promoting it to T2) or None, so callers decode only once."""
        with self._lock:
            item = self._t1.remove(key)
            if item is not None:
                self._t2.push(key, item[0], item[1])
            else:
                item = self._t2.entries.get(key)
                if item is None:
                    self._misses += 1
                    return None
                self._t2.entries.move_to_end(key)
            self._hits += 1
            return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Insert or replace ``key`` costing ``size`` bytes; a ghost hit adapts p.

        A value larger than the capacity is not cached (any older copy is dropped).
        """
        charge = _charge(size)
        with self._lock:
            resident = self._t1.remove(key) is not None
            resident = self._t2.remove(key) is not None or resident
            if charge > self._capacity:
                self._b1.remove(key)
                self._b2.remove(key)
            elif resident:
                self._admit(self._t2, key, value, charge, from_b2=False)
            elif key in self._b1:
                self._adapt_from_b1(key)
                self._admit(self._t2, key, value, charge, from_b2=False)
            elif key in self._b2:
                self._adapt_from_b2(key)
                self._admit(self._t2, key, value, charge, from_b2=True)
            else:
                self._admit(self._t1, key, value, charge, from_b2=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` everywhere (resident and ghost), so stale data can never return."""
        with self._lock:
            for lane in (self._t1, self._t2):
                lane.remove(key)
            for ghost in (self._b1, self._b2):
                ghost.remove(key)

    def clear(self) -> None:
        """Drop every entry and ghost and reset p; hit/miss/eviction counters are kept."""
        with self._lock:
            self._t1.clear()
            self._t2.clear()
            self._b1.clear()
            self._b2.clear()
            self._target = 0

    def resize(self, capacity_bytes: int) -> None:
        """Change the byte budget; shrinking evicts immediately so memory drops at once."""
        _check_capacity(capacity_bytes)
        with self._lock:
            self._capacity = capacity_bytes
            self._target = min(self._target, capacity_bytes)
            self._make_room(0, from_b2=False)
            self._trim_ghosts()

    def statistics(self) -> CacheStatistics:
        """Return a consistent snapshot of the counters and list sizes."""
        with self._lock:
            return CacheStatistics(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                bytes=self._t1.bytes + self._t2.bytes,
                entries=len(self._t1) + len(self._t2),
                capacity=self._capacity,
                recent_bytes=self._t1.bytes,
                frequent_bytes=self._t2.bytes,
                ghost_recent_bytes=self._b1.bytes,
                ghost_frequent_bytes=self._b2.bytes,
                target_recent_bytes=self._target,
            )

    def __contains__(self, key: object) -> bool:
        """True if ``key`` is resident; touches neither statistics nor recency."""
        with self._lock:
            return key in self._t1 or key in self._t2

    def __len__(self) -> int:
        """Number of resident entries."""
        with self._lock:
            return len(self._t1) + len(self._t2)

    # --- ARC internals (caller holds the lock) -------------------------------------------

    def _adapt_from_b1(self, key: K) -> None:
        """B1 ghost hit: T1 was too small, so grow p (in bytes) and forget the ghost."""
        ghost_size = self._ghost_weight(self._b1, self._b2, key)
        self._target = min(self._capacity, self._target + ghost_size)

    def _adapt_from_b2(self, key: K) -> None:
        """B2 ghost hit: T2 was too small, so shrink p (in bytes) and forget the ghost."""
        ghost_size = self._ghost_weight(self._b2, self._b1, key)
        self._target = max(0, self._target - ghost_size)

    @staticmethod
    def _ghost_weight(hit: _Lane[K, None], other: _Lane[K, None], key: K) -> int:
        """ARC's delta in bytes: ghost size * max(1, |other| / |hit|); removes the ghost."""
        total = hit.bytes
        item = hit.remove(key)
        size = item[1] if item is not None else 1
        return max(size, size * other.bytes // max(total, 1))

    def _admit(self, lane: _Lane[K, V], key: K, value: V, charge: int, *, from_b2: bool) -> None:
        """Make room for ``charge`` bytes, insert at ``lane``'s MRU end, then trim ghosts."""
        self._make_room(charge, from_b2=from_b2)
        lane.push(key, value, charge)
        self._trim_ghosts()

    def _make_room(self, incoming: int, *, from_b2: bool) -> None:
        """Evict until ``incoming`` more bytes fit; stops if nothing is left to evict."""
        while self._t1.bytes + self._t2.bytes + incoming > self._capacity:
            if not self._replace(from_b2=from_b2):
                break

    def _replace(self, *, from_b2: bool) -> bool:
        """ARC REPLACE: demote one resident LRU entry to its ghost list; False if none."""
        t1, t2 = self._t1, self._t2
        prefer_t1 = t1.bytes > self._target or (from_b2 and t1.bytes == self._target)
        if t1 and (prefer_t1 or not t2):
            key, _, size = t1.pop_lru()
            self._b1.push(key, None, size)
        elif t2:
            key, _, size = t2.pop_lru()
            self._b2.push(key, None, size)
        else:
            return False
        self._evictions += 1
        return True

    def _trim_ghosts(self) -> None:
        """Drop LRU ghosts until the byte bounds hold; each loop pops or stops."""
        capacity = self._capacity
        b1, b2 = self._b1, self._b2
        while b1 and self._t1.bytes + b1.bytes > capacity:
            b1.pop_lru()
        while b2 and b2.bytes > capacity:
            b2.pop_lru()
        while b2 and self._total_bytes() > 2 * capacity:
            b2.pop_lru()
        while b1 and self._total_bytes() > 2 * capacity:
            b1.pop_lru()

    def _total_bytes(self) -> int:
        return self._t1.bytes + self._t2.bytes + self._b1.bytes + self._b2.bytes
