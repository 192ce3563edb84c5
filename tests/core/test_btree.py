"""The copy-on-write B+tree against a dict (hypothesis stateful), plus targeted unit tests.

The machine puts (small and near-maximal entries, so nodes split at every level), deletes
(in runs, so nodes fall under a quarter full and merge or borrow), reads, range-scans, commits
(write_out + allocator release, like an archive commit) and reopens from the committed root
with a cold cache. After every commit the tree's structure is checked: keys sorted and inside
their parent's separators, every leaf at the same depth, no node over a page or empty, every
branch with two children or more, and the allocator agrees with the pages the tree uses.
"""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cartfs.core.alloc import Allocator
from cartfs.core.btree import MAX_ENTRY, MAX_KEY, BTree, TxnClock
from cartfs.core.cache import ARCCache
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import CorruptArchive, ReadOnly
from cartfs.core.format import FIRST_DATA_PAGE, PAGE_SIZE, TreeRef, TxnId
from cartfs.core.pager import Pager

TREE_ID = 1
EMPTY = TreeRef()


class Store:
    """A device, pager, allocator and clock: what an archive gives a tree."""

    def __init__(self, cache_bytes: int = 1 << 20) -> None:
        self.device = MemoryDevice()
        self.device.resize(FIRST_DATA_PAGE * PAGE_SIZE)
        self.pager = Pager(self.device, ARCCache(cache_bytes))
        self.alloc = Allocator.fresh(FIRST_DATA_PAGE, self.pager.grow)
        self.clock = TxnClock(1)

    def tree(self, root: TreeRef = EMPTY, *, cold: bool = False) -> BTree:
        if cold:
            self.pager = Pager(self.device, ARCCache(1 << 20))
        return BTree(self.pager, self.alloc, self.clock, TREE_ID, root)

    def commit(self, tree: BTree) -> TreeRef:
        root = tree.write_out()
        self.alloc.release(self.clock.txid)
        self.clock.txid = TxnId(self.clock.txid + 1)
        return root


def check_structure(tree: BTree, alloc: Allocator) -> int:
    """Validate a committed tree; return its depth. Raises AssertionError on any breach."""
    leaf_depths: set[int] = set()
    used: set[int] = set()
    stack: list[tuple[TreeRef, bytes | None, bytes | None, int]] = []
    root = tree.root_ref()
    if not root.empty:
        stack.append((root, None, None, 0))
    while stack:
        ref, lo, hi, depth = stack.pop()
        assert ref.page not in used, f"page {ref.page} used twice"
        used.add(ref.page)
        node = tree.load(ref)
        assert node.size <= tree.capacity
        assert node.keys, f"empty node at page {ref.page}"
        assert node.keys == sorted(node.keys) and len(set(node.keys)) == len(node.keys)
        real_keys = node.keys[1:] if not node.is_leaf else node.keys
        for key in real_keys:
            assert (lo is None or key >= lo) and (hi is None or key < hi), "key outside range"
        if node.is_leaf:
            leaf_depths.add(depth)
            continue
        assert node.keys[0] == b"" and len(node.vals) >= 2
        bounds = [*node.keys[1:], hi]
        for i, child in enumerate(node.vals):
            assert isinstance(child, TreeRef)
            stack.append((child, node.keys[i] if i else lo, bounds[i], depth + 1))
    assert len(leaf_depths) <= 1, f"leaves at depths {leaf_depths}"
    free = {p for start, n in alloc.iter_free() for p in range(start, start + n)}
    assert not used & free, f"pages both used and free: {sorted(used & free)[:5]}"
    return leaf_depths.pop() if leaf_depths else 0


keys = st.one_of(
    st.binary(min_size=0, max_size=12),
    st.integers(0, 5000).map(lambda i: i.to_bytes(4, "big")),  # dense, ordered
    st.binary(min_size=MAX_KEY - 5, max_size=MAX_KEY),  # large keys: few per node
)
values = st.one_of(
    st.binary(max_size=20),
    st.integers(0, MAX_ENTRY - 4 - MAX_KEY).map(lambda n: b"v" * n),
)


class BTreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.tree = self.store.tree()
        self.model: dict[bytes, bytes] = {}

    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        value = value[:MAX_ENTRY - 4 - len(key)]
        self.tree.put(key, value)
        self.model[key] = value

    @rule(data=st.data(), count=st.integers(1, 250), seed=st.integers(0, 2**32))
    def put_many(self, data: st.DataObject, count: int, seed: int) -> None:
        """A burst of inserts in random order, large enough to split several levels."""
        rng = random.Random(seed)
        size = data.draw(st.sampled_from([8, 100, 600]))
        for _ in range(count):
            key = rng.randbytes(rng.randrange(1, 40))
            value = rng.randbytes(rng.randrange(0, size))
            self.tree.put(key, value)
            self.model[key] = value

    @rule(data=st.data())
    def delete_existing(self, data: st.DataObject) -> None:
        if not self.model:
            return
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.tree.delete(key)
        del self.model[key]

    @rule(fraction=st.floats(0.3, 1.0), seed=st.integers(0, 2**32))
    def delete_run(self, fraction: float, seed: int) -> None:
        """Delete a contiguous range of keys (empties whole leaves: forces merges)."""
        ordered = sorted(self.model)
        if not ordered:
            return
        rng = random.Random(seed)
        n = max(1, int(len(ordered) * fraction))
        start = rng.randrange(0, len(ordered) - n + 1)
        for key in ordered[start:start + n]:
            assert self.tree.delete(key)
            del self.model[key]

    @rule(key=keys)
    def delete_missing(self, key: bytes) -> None:
        if key not in self.model:
            assert not self.tree.delete(key)

    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.tree.get(key) == self.model.get(key)

    @rule(lo=keys, hi=keys)
    def scan(self, lo: bytes, hi: bytes) -> None:
        expected = sorted((k, v) for k, v in self.model.items() if lo <= k < hi)
        assert list(self.tree.items(lo, hi)) == expected

    @rule()
    def commit(self) -> None:
        self.store.commit(self.tree)
        check_structure(self.tree, self.store.alloc)

    @rule()
    def commit_and_reopen(self) -> None:
        root = self.store.commit(self.tree)
        self.tree = self.store.tree(root, cold=True)
        check_structure(self.tree, self.store.alloc)

    @invariant()
    def matches_model(self) -> None:
        assert list(self.tree.items()) == sorted(self.model.items())


BTreeMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBTreeModel = BTreeMachine.TestCase


# ---- targeted cases ---------------------------------------------------------------------------


def test_deep_tree_then_delete_everything() -> None:
    """Thousands of entries (three levels), random order, then all deleted in another random
    order with commits in between: the tree shrinks back to nothing and frees every page."""
    store = Store()
    tree = store.tree()
    rng = random.Random(3)
    entries = {rng.randbytes(16): rng.randbytes(rng.randrange(0, 200)) for _ in range(4000)}
    for key, value in entries.items():
        tree.put(key, value)
    store.commit(tree)
    assert check_structure(tree, store.alloc) >= 2
    doomed = list(entries)
    rng.shuffle(doomed)
    for i, key in enumerate(doomed):
        assert tree.delete(key)
        if i % 500 == 0:
            store.commit(tree)
            check_structure(tree, store.alloc)
            assert list(tree.items()) == sorted((k, entries[k]) for k in doomed[i + 1:])
    store.commit(tree)
    store.commit(tree)  # the last frees become reusable one commit later
    assert tree.is_empty and tree.root_ref().empty
    assert store.alloc.statistics().used_pages == 0


def test_every_version_stays_readable_until_released() -> None:
    """Copy-on-write: a committed root stays intact while the next transaction changes the
    tree (the old pages are only pending), which is what crash safety rests on."""
    store = Store()
    tree = store.tree()
    for i in range(500):
        tree.put(i.to_bytes(4, "big"), b"old" * 50)
    old_root = store.commit(tree)
    for i in range(0, 500, 2):
        tree.put(i.to_bytes(4, "big"), b"new")
    for i in range(1, 500, 4):
        tree.delete(i.to_bytes(4, "big"))
    tree.write_out()  # written, not yet released
    old = store.tree(old_root, cold=True)
    assert [v for _, v in old.items()] == [b"old" * 50] * 500


def test_entry_limits() -> None:
    tree = Store().tree()
    with pytest.raises(ValueError):
        tree.put(b"k" * (MAX_KEY + 1), b"")
    with pytest.raises(ValueError):
        tree.put(b"k", b"v" * MAX_ENTRY)
    tree.put(b"k" * MAX_KEY, b"v" * (MAX_ENTRY - 4 - MAX_KEY))


def test_read_only_tree_refuses_changes() -> None:
    store = Store()
    tree = store.tree()
    tree.put(b"a", b"1")
    root = store.commit(tree)
    ro = BTree(store.pager, None, store.clock, TREE_ID, root, writable=False)
    assert ro.get(b"a") == b"1"
    with pytest.raises(ReadOnly):
        ro.put(b"b", b"2")
    with pytest.raises(ReadOnly):
        ro.delete(b"a")


def test_wrong_tree_and_stale_birth_are_detected() -> None:
    store = Store()
    tree = store.tree()
    tree.put(b"a", b"1")
    root = store.commit(tree)
    cold = Pager(store.device, ARCCache(0))
    other = BTree(cold, store.alloc, store.clock, TREE_ID + 1, root)
    with pytest.raises(CorruptArchive, match="tree"):
        other.get(b"a")
    stale = BTree(cold, store.alloc, store.clock, TREE_ID,
                  TreeRef(root.page, TxnId(root.birth + 1)))
    with pytest.raises(CorruptArchive) as info:
        stale.get(b"a")
    assert info.value.page == root.page
