"""Tests for cartfs.core.cache: a model-based stateful test plus targeted ARC behaviour tests."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cartfs.core.cache import ARCCache, CacheStatistics

Key = tuple[object, ...]
UNIT = 4096


def check_bounds(stats: CacheStatistics) -> None:
    """The byte-budget invariants every public call must leave behind."""
    cap = stats.capacity
    assert stats.bytes <= cap
    assert stats.recent_bytes + stats.frequent_bytes == stats.bytes
    assert stats.ghost_recent_bytes <= cap
    assert stats.ghost_frequent_bytes <= cap
    assert stats.bytes + stats.ghost_recent_bytes + stats.ghost_frequent_bytes <= 2 * cap
    assert 0 <= stats.target_recent_bytes <= cap
    assert stats.entries <= stats.bytes  # each entry costs at least one byte


def read_through(
    get: Callable[[Key], object], put: Callable[[Key, object], None], key: Key
) -> bool:
    """Cache-aside access as the storage engine does it; returns True on a hit."""
    if get(key) is not None:
        return True
    put(key, ("decoded", key))
    return False


# --- stateful model test -----------------------------------------------------------------

KEYS: list[Key] = [("node", i) for i in range(5)] + [("chunk", 1, j) for j in range(5)]
key_st = st.sampled_from(KEYS)
size_st = st.integers(0, 40)
capacity_st = st.just(0) | st.integers(1, 200)


class ARCModelMachine(RuleBasedStateMachine):
    """Drives ARCCache and a dict of the last put value per key side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: ARCCache[Key, list[object]] = ARCCache(0)
        self.model: dict[Key, tuple[list[object], int]] = {}
        self.gets = 0
        self.serial = 0
        self.last_evictions = 0

    @initialize(capacity=st.integers(30, 200))
    def start(self, capacity: int) -> None:
        self.cache = ARCCache(capacity)

    def _capacity(self) -> int:
        return self.cache.statistics().capacity

    def _put(self, key: Key, size: int) -> None:
        self.serial += 1
        value: list[object] = [key, self.serial]
        self.cache.put(key, value, size)
        charge = max(size, 1)
        if charge > self._capacity():
            self.model.pop(key, None)
            assert key not in self.cache
        else:
            self.model[key] = (value, charge)
            assert key in self.cache  # a just-put value that fits is resident

    @rule(key=key_st, size=size_st)
    def put(self, key: Key, size: int) -> None:
        self._put(key, size)

    @rule(key=key_st, excess=st.integers(1, 100))
    def put_oversized(self, key: Key, excess: int) -> None:
        self._put(key, self._capacity() + excess)

    @rule(key=key_st)
    def get(self, key: Key) -> None:
        was_resident = key in self.cache
        got = self.cache.get(key)
        self.gets += 1
        assert (got is not None) == was_resident
        if got is not None:
            assert key in self.model
            assert got is self.model[key][0], "stale or copied value returned"

    @rule(key=key_st, size=size_st)
    def read_through(self, key: Key, size: int) -> None:
        """The engine's pattern: get, and on a miss decode and put (drives ghost hits)."""
        self.get(key)
        if key not in self.cache:
            self._put(key, size)

    @rule(key=key_st)
    def discard(self, key: Key) -> None:
        self.cache.discard(key)
        self.model.pop(key, None)
        assert key not in self.cache

    @rule(capacity=capacity_st)
    def resize(self, capacity: int) -> None:
        self.cache.resize(capacity)
        assert self._capacity() == capacity

    @precondition(lambda self: self.cache.statistics().target_recent_bytes > 0)
    @rule()
    def shrink_below_target(self) -> None:
        capacity = self.cache.statistics().target_recent_bytes // 2
        self.cache.resize(capacity)
        assert self._capacity() == capacity

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        assert len(self.cache) == 0

    @invariant()
    def counters_and_bounds_hold(self) -> None:
        stats = self.cache.statistics()
        check_bounds(stats)
        assert stats.hits + stats.misses == self.gets
        assert stats.evictions >= self.last_evictions
        self.last_evictions = stats.evictions

    @invariant()
    def residents_match_model(self) -> None:
        stats = self.cache.statistics()
        resident = [k for k in KEYS if k in self.cache]
        assert all(k in self.model for k in resident)
        assert len(self.cache) == stats.entries == len(resident)
        assert stats.bytes == sum(self.model[k][1] for k in resident)


TestARCModel = ARCModelMachine.TestCase
TestARCModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- behaviour tests ---------------------------------------------------------------------


class LRU:
    """Plain byte-free LRU of the same entry capacity, for contrast with ARC."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.data: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: Hashable, value: object) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.entries:
            self.data.popitem(last=False)


def test_scan_resistance_keeps_working_set_unlike_lru() -> None:
    cache: ARCCache[Key, object] = ARCCache(100 * UNIT)
    lru = LRU(100)
    working = [("node", i) for i in range(80)]
    scan = [("chunk", 9, j) for j in range(2000)]

    def arc_put(k: Key, v: object) -> None:
        cache.put(k, v, UNIT)

    for key in working + working + scan:
        read_through(cache.get, arc_put, key)
        read_through(lru.get, lru.put, key)
    before = cache.statistics()
    arc_hits = sum(read_through(cache.get, arc_put, k) for k in working)
    lru_hits = sum(read_through(lru.get, lru.put, k) for k in working)
    after = cache.statistics()

    lookups = (after.hits + after.misses) - (before.hits + before.misses)
    assert (after.hits - before.hits) / lookups == 1.0
    assert arc_hits == len(working)
    assert lru_hits == 0  # the scan flushed plain LRU completely
    check_bounds(after)


def test_target_grows_on_b1_hit_and_shrinks_on_b2_hit() -> None:
    size = 10
    cache: ARCCache[str, str] = ARCCache(4 * size)
    for k in "ab":
        cache.put(k, k, size)
        assert cache.get(k) == k  # a, b -> T2
    cache.put("c", "c", size)
    cache.put("d", "d", size)
    cache.put("e", "e", size)  # T1 over target 0: evicts c into B1
    stats = cache.statistics()
    assert "c" not in cache
    assert stats.ghost_recent_bytes == size
    assert stats.target_recent_bytes == 0

    cache.put("c", "c2", size)  # B1 ghost hit
    grown = cache.statistics()
    assert grown.target_recent_bytes == size
    assert cache.get("c") == "c2"

    cache.put("f", "f", size)  # T1 no longer above p: evicts LRU of T2 (a) into B2
    assert "a" not in cache
    assert cache.statistics().ghost_frequent_bytes == size
    cache.put("a", "a2", size)  # B2 ghost hit
    assert cache.statistics().target_recent_bytes < grown.target_recent_bytes
    check_bounds(cache.statistics())


def test_target_step_is_weighted_by_ghost_bytes() -> None:
    cache: ARCCache[str, str] = ARCCache(1000)
    cache.put("big", "x", 300)
    cache.get("big")  # -> T2
    cache.put("s1", "x", 400)
    cache.put("s2", "x", 400)  # evicts s1 (400 bytes) into B1
    assert cache.statistics().ghost_recent_bytes == 400
    cache.put("s1", "y", 400)
    assert cache.statistics().target_recent_bytes == 400


def test_oversized_value_is_not_cached_and_drops_old_copy() -> None:
    cache: ARCCache[str, bytes] = ARCCache(1000)
    cache.put("k", b"old", 10)
    cache.put("k", b"huge", 1001)
    assert "k" not in cache
    assert cache.get("k") is None
    stats = cache.statistics()
    assert (stats.bytes, stats.entries, len(cache)) == (0, 0, 0)
    cache.put("fits", b"x", 1000)
    assert cache.get("fits") == b"x"


def test_oversized_put_forgets_a_ghost() -> None:
    cache: ARCCache[str, str] = ARCCache(20)
    cache.put("hot", "h", 10)
    cache.get("hot")
    cache.put("a", "a", 10)
    cache.put("b", "b", 10)  # a -> B1
    assert cache.statistics().ghost_recent_bytes == 10
    cache.put("a", "huge", 21)
    assert cache.statistics().ghost_recent_bytes == 0
    cache.put("a", "a", 10)  # not a ghost hit any more: p stays 0
    assert cache.statistics().target_recent_bytes == 0


def test_capacity_zero_caches_nothing() -> None:
    cache: ARCCache[str, bytes] = ARCCache(0)
    for i, size in enumerate([0, 1, 4096]):
        cache.put(f"k{i}", b"v", size)
        assert cache.get(f"k{i}") is None
    stats = cache.statistics()
    assert stats.bytes == stats.entries == len(cache) == 0
    assert stats.ghost_recent_bytes == stats.ghost_frequent_bytes == 0
    assert (stats.hits, stats.misses) == (0, 3)


def test_replacing_a_key_updates_value_and_bytes() -> None:
    cache: ARCCache[tuple[str, int], bytes] = ARCCache(10_000)
    key = ("node", 1)
    cache.put(key, b"a", 100)
    cache.put(key, b"b", 300)
    stats = cache.statistics()
    assert (stats.bytes, stats.entries) == (300, 1)
    assert cache.get(key) == b"b"
    assert cache.statistics().frequent_bytes == 300  # a second reference promotes to T2
    cache.put(key, b"c", 50)
    assert cache.statistics().bytes == 50
    assert cache.get(key) == b"c"


def test_put_of_resident_key_counts_as_a_reference() -> None:
    cache: ARCCache[str, str] = ARCCache(100)
    cache.put("k", "v1", 10)
    cache.put("k", "v2", 10)
    stats = cache.statistics()
    assert (stats.recent_bytes, stats.frequent_bytes) == (0, 10)


def test_values_are_not_copied() -> None:
    cache: ARCCache[str, bytearray] = ARCCache(100)
    value = bytearray(b"node")
    cache.put("k", value, len(value))
    assert cache.get("k") is value


def test_contains_touches_neither_stats_nor_recency() -> None:
    cache: ARCCache[str, str] = ARCCache(20)
    cache.put("a", "a", 10)
    cache.put("b", "b", 10)
    assert "a" in cache
    assert "zz" not in cache
    assert cache.statistics().hits == cache.statistics().misses == 0
    cache.put("c", "c", 10)  # "a" is still LRU of T1 despite the membership test
    assert "a" not in cache
    assert "b" in cache


def test_discard_removes_resident_and_ghost() -> None:
    cache: ARCCache[str, str] = ARCCache(20)
    cache.put("keep", "k", 10)
    cache.get("keep")
    cache.put("a", "a", 10)
    cache.put("b", "b", 10)  # a -> B1
    assert cache.statistics().ghost_recent_bytes == 10
    cache.discard("a")
    cache.discard("b")
    cache.discard("never-seen")
    stats = cache.statistics()
    assert stats.ghost_recent_bytes == 0
    assert "b" not in cache
    cache.put("a", "a", 10)  # no longer a ghost: no adaptation
    assert cache.statistics().target_recent_bytes == 0


def test_resize_shrink_evicts_immediately_and_trims_ghosts() -> None:
    cache: ARCCache[int, int] = ARCCache(64 * 100)
    for i in range(500):
        cache.put(i, i, 100)
        if i % 3 == 0:
            cache.get(i)
    check_bounds(cache.statistics())
    cache.resize(1000)
    stats = cache.statistics()
    assert stats.bytes <= 1000 and stats.entries == 10
    check_bounds(stats)
    cache.resize(0)
    stats = cache.statistics()
    assert stats.bytes == stats.ghost_recent_bytes == stats.ghost_frequent_bytes == 0
    assert len(cache) == 0
    cache.resize(500)
    cache.put(1, 1, 100)
    assert cache.get(1) == 1


def test_resize_clamps_target() -> None:
    cache: ARCCache[str, str] = ARCCache(1000)
    cache.put("hot", "h", 500)
    cache.get("hot")
    for key in "abc":
        cache.put(key, key, 250)  # c evicts a into B1
    cache.put("a", "a", 250)  # B1 hit: p = 250
    assert cache.statistics().target_recent_bytes == 250
    cache.resize(100)
    stats = cache.statistics()
    assert stats.target_recent_bytes == 100
    check_bounds(stats)


def test_clear_empties_but_keeps_counters() -> None:
    cache: ARCCache[str, str] = ARCCache(100)
    cache.put("a", "a", 10)
    cache.get("a")
    cache.clear()
    stats = cache.statistics()
    assert (stats.bytes, stats.entries, stats.hits) == (0, 0, 1)
    assert cache.get("a") is None


def test_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError):
        ARCCache(-1)
    cache: ARCCache[str, str] = ARCCache(10)
    with pytest.raises(ValueError):
        cache.put("k", "v", -1)
    with pytest.raises(ValueError):
        cache.resize(-5)


def test_hit_ratio() -> None:
    assert CacheStatistics(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).hit_ratio == 0.0
    assert CacheStatistics(3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0).hit_ratio == 0.75


def test_thread_safety_smoke() -> None:
    """Four threads hammer one cache; values carry their key and size to expose races."""
    cache: ARCCache[tuple[str, int], tuple[tuple[str, int], int]] = ARCCache(1 << 20)
    keys = [("chunk", i) for i in range(64)]
    errors: list[BaseException] = []
    gets = [0] * 4
    deadline = time.monotonic() + 1.0

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        try:
            while time.monotonic() < deadline:
                key = rng.choice(keys)
                gets[slot] += 1
                got = cache.get(key)
                if got is not None:
                    assert got[0] == key
                if rng.random() < 0.05:
                    cache.discard(key)
                elif got is None or rng.random() < 0.1:
                    size = rng.randrange(1, 65536)
                    cache.put(key, (key, size), size)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force frequent thread switches inside critical sections
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert not errors
    stats = cache.statistics()
    check_bounds(stats)
    assert stats.hits + stats.misses == sum(gets)
    assert stats.hits > 0 and stats.evictions > 0
    resident = [v for v in (cache.get(k) for k in keys) if v is not None]
    assert len(cache) == stats.entries == len(resident)
    assert stats.bytes == sum(size for _, size in resident)
