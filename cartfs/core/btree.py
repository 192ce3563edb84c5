"""Copy-on-write B+tree of byte keys and byte values over 4 KiB pages.

Theory of operation
-------------------
A tree is a root reference. Clean nodes live on disk and, decoded, in the ARC pool under the
key ``("n", page, birth)`` — a page number is reused only with a new birth, so a cached node
can never be stale and nothing needs invalidating. Clean nodes are immutable.

To change a key, every node on the path from the root is made *writable*: a clean node is
copied into a dirty in-memory node and its page is handed to the allocator as freed in the
open transaction (it stays readable until that transaction is durable — see alloc.py). A dirty
branch holds its children either as :class:`TreeRef` (clean, on disk) or as dirty
:class:`Node` objects. Nothing is written until :meth:`BTree.write_out`, which assigns pages
bottom-up, so a node changed a thousand times in one transaction is written once.

Nodes are sized in encoded bytes, not entries: a node splits when its entries exceed the page
payload, and merges with (or borrows from) a sibling when it falls under a quarter of it.
Entries are at most a quarter of a page, so a split always yields two halves that fit. Branch
``keys[0]`` is always empty: child i holds keys in ``[keys[i], keys[i+1])``.

Leaf entry:   klen u16, vlen u16, key, value
Branch entry: klen u16, child page u64, child birth u64, key
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Union

from .alloc import Allocator
from .errors import CorruptArchive, ReadOnly
from .format import (
    KIND_BRANCH,
    KIND_LEAF,
    PAGE_SIZE,
    PageHeader,
    PageNo,
    TreeRef,
    TxnId,
)
from .pager import Pager

LEAF_ENTRY = struct.Struct("<HH")
BRANCH_ENTRY = struct.Struct("<HQQ")
LEAF_OVERHEAD = LEAF_ENTRY.size  # 4
BRANCH_OVERHEAD = BRANCH_ENTRY.size  # 18
MAX_KEY = 300
MAX_ENTRY = 1004  # <= a quarter of the sealed payload (4036 // 4)
MAX_DEPTH = 24

TREE_CATALOG = 1
TREE_SYSTEM = 2


class TxnClock:
    """The id of the open (not yet committed) transaction, shared by all trees and files."""

    def __init__(self, txid: int) -> None:
        self.txid = TxnId(txid)


ChildRef = Union["Node", TreeRef]


class Node:
    """A decoded node. ``dirty`` nodes are private to the open transaction and mutable."""

    __slots__ = ("birth", "dirty", "keys", "level", "page", "size", "vals")

    def __init__(self, level: int, keys: list[bytes], vals: list[bytes] | list[ChildRef],
                 size: int, *, dirty: bool, page: int = 0, birth: int = 0) -> None:
        self.level = level
        self.keys = keys
        self.vals: list[Any] = vals  # list[bytes] for leaves, list[ChildRef] for branches
        self.size = size
        self.dirty = dirty
        self.page = page
        self.birth = birth

    @property
    def is_leaf(self) -> bool:
        return self.level == 0

    def copy(self) -> Node:
        return Node(self.level, list(self.keys), list(self.vals), self.size, dirty=True)


def _entry_size(level: int, key: bytes, val: bytes | None) -> int:
    if level == 0:
        assert val is not None
        return LEAF_OVERHEAD + len(key) + len(val)
    return BRANCH_OVERHEAD + len(key)


def encode_node(node: Node) -> bytes:
    parts: list[bytes] = []
    if node.is_leaf:
        for key, val in zip(node.keys, node.vals, strict=True):
            parts += (LEAF_ENTRY.pack(len(key), len(val)), key, val)
    else:
        for key, child in zip(node.keys, node.vals, strict=True):
            assert isinstance(child, TreeRef), "write children before their parent"
            parts += (BRANCH_ENTRY.pack(len(key), child.page, child.birth), key)
    return b"".join(parts)


def decode_node(header: PageHeader, payload: bytes) -> Node:
    """Decode and sanity-check a node payload (sizes in bounds, keys strictly sorted)."""
    keys: list[bytes] = []
    vals: list[Any] = []
    off = 0
    try:
        if header.kind == KIND_LEAF:
            for _ in range(header.count):
                klen, vlen = LEAF_ENTRY.unpack_from(payload, off)
                off += LEAF_OVERHEAD
                keys.append(payload[off:off + klen])
                vals.append(payload[off + klen:off + klen + vlen])
                off += klen + vlen
        else:
            for _ in range(header.count):
                klen, page, birth = BRANCH_ENTRY.unpack_from(payload, off)
                off += BRANCH_OVERHEAD
                keys.append(payload[off:off + klen])
                vals.append(TreeRef(PageNo(page), TxnId(birth)))
                off += klen
    except struct.error as exc:
        raise CorruptArchive("node entries run past the page", page=header.page,
                             kind="B-tree node") from exc
    if off > len(payload) or header.count == 0:
        raise CorruptArchive("node entries run past the page or node is empty",
                             page=header.page, kind="B-tree node")
    if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
        raise CorruptArchive("node keys out of order", page=header.page, kind="B-tree node")
    level = 0 if header.kind == KIND_LEAF else header.level
    if (level == 0) != (header.kind == KIND_LEAF):
        raise CorruptArchive("leaf/branch level mismatch", page=header.page, kind="B-tree node")
    return Node(level, keys, vals, off, dirty=False, page=header.page, birth=header.birth)


@dataclass(frozen=True)
class NodeVisit:
    """One node met by :meth:`BTree.walk`: where it is and what it holds."""

    ref: TreeRef
    node: Node
    depth: int


class BTree:
    """A copy-on-write B+tree; all methods expect the caller to hold the archive lock."""

    def __init__(self, pager: Pager, alloc: Allocator | None, clock: TxnClock, tree_id: int,
                 root: TreeRef, *, writable: bool = True, shared: bool = True) -> None:
        self.pager = pager
        self.shared = shared  # can snapshots reach this tree's pages? (catalog yes, system no)
        self.alloc = alloc
        self.clock = clock
        self.tree_id = tree_id
        self.writable = writable and alloc is not None
        self._root: ChildRef | None = None if root.empty else root
        self.capacity = pager.node_capacity
        self.version = 0  # bumped by every change (the archive detects half-done calls)

    # ---- loading ----------------------------------------------------------------------------

    def load(self, ref: TreeRef, *, level: int | None = None) -> Node:
        key = ("n", ref.page, ref.birth)
        node: Node | None = self.pager.cache.get(key)
        if node is None:
            header, payload = self.pager.read_node(ref.page, ref.birth)
            if header.tree != self.tree_id:
                raise CorruptArchive(f"node belongs to tree {header.tree}, not {self.tree_id}",
                                     page=ref.page, kind="B-tree node")
            node = decode_node(header, payload)
            self.pager.cache.put(key, node, PAGE_SIZE)
        if level is not None and node.level != level:
            raise CorruptArchive(f"node at level {node.level}, parent expects {level}",
                                 page=ref.page, kind="B-tree node")
        return node

    def _resolve(self, child: ChildRef, level: int | None = None) -> Node:
        return child if isinstance(child, Node) else self.load(child, level=level)

    # ---- reading ----------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return self._root is None

    @property
    def is_dirty(self) -> bool:
        return isinstance(self._root, Node)

    def replace_root(self, root: TreeRef) -> None:
        """Point the tree at another committed root (snapshot restore)."""
        if isinstance(self._root, Node):
            raise RuntimeError("replace_root needs a committed tree")
        self.version += 1
        self._root = None if root.empty else root

    def dirty_node_count(self) -> int:
        """How many pages write_out() will need."""
        count = 0
        stack = [self._root] if isinstance(self._root, Node) else []
        while stack:
            node = stack.pop()
            count += 1
            if not node.is_leaf:
                stack.extend(c for c in node.vals if isinstance(c, Node))
        return count

    def root_ref(self) -> TreeRef:
        """The clean root (valid after write_out)."""
        if isinstance(self._root, Node):
            raise RuntimeError("tree has unwritten changes")
        return self._root or TreeRef()

    def get(self, key: bytes) -> bytes | None:
        if self._root is None:
            return None
        node = self._resolve(self._root)
        depth = 0
        while not node.is_leaf:
            idx = max(bisect_right(node.keys, key) - 1, 0)
            node = self._resolve(node.vals[idx], node.level - 1)
            depth += 1
            if depth > MAX_DEPTH:
                raise CorruptArchive("B-tree deeper than possible", kind="B-tree node")
        idx = bisect_left(node.keys, key)
        if idx < len(node.keys) and node.keys[idx] == key:
            val: bytes = node.vals[idx]
            return val
        return None

    def _seek(self, key: bytes) -> tuple[Node | None, int, bytes | None]:
        """Leaf that would hold ``key``, the index of the first entry >= key, and the lower
        bound of the next leaf (None when this is the last leaf)."""
        if self._root is None:
            return None, 0, None
        node = self._resolve(self._root)
        upper: bytes | None = None
        while not node.is_leaf:
            idx = max(bisect_right(node.keys, key) - 1, 0)
            if idx + 1 < len(node.keys):
                upper = node.keys[idx + 1]
            node = self._resolve(node.vals[idx], node.level - 1)
        return node, bisect_left(node.keys, key), upper

    def items(self, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key < end, in order. Safe against changes between steps:
        each leaf is found again by key."""
        key: bytes | None = start
        while key is not None:
            leaf, idx, upper = self._seek(key)
            if leaf is None:
                return
            keys, vals = leaf.keys, leaf.vals
            for i in range(idx, len(keys)):
                if end is not None and keys[i] >= end:
                    return
                yield keys[i], vals[i]
            key = upper

    def first_in(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        for item in self.items(start, end):
            return item
        return None

    # ---- writing ----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnly("this tree is read-only")

    def _writable(self, child: ChildRef, level: int | None = None) -> Node:
        """Copy-on-write: a dirty node is returned as is; a clean one is copied and freed."""
        if isinstance(child, Node):
            if child.dirty:
                return child
            raise AssertionError("clean node objects are never linked into dirty parents")
        node = self.load(child, level=level)
        assert self.alloc is not None
        self.alloc.free(child.page, 1, child.birth, self.clock.txid, shared=self.shared)
        return node.copy()

    def _writable_child(self, parent: Node, idx: int) -> Node:
        child = self._writable(parent.vals[idx], parent.level - 1)
        parent.vals[idx] = child
        return child

    def _writable_root(self) -> Node:
        if self._root is None:
            self._root = Node(0, [], [], 0, dirty=True)
        root = self._writable(self._root)
        self._root = root
        return root

    def put(self, key: bytes, val: bytes) -> None:
        """Insert or replace."""
        self._check_writable()
        if len(key) > MAX_KEY or LEAF_OVERHEAD + len(key) + len(val) > MAX_ENTRY:
            raise ValueError(f"B-tree entry too large ({len(key)} + {len(val)} bytes)")
        self.version += 1
        root = self._writable_root()
        split = self._put(root, key, val)
        if split is not None:
            sep, right = split
            size = 2 * BRANCH_OVERHEAD + len(sep)
            children: list[ChildRef] = [root, right]
            self._root = Node(root.level + 1, [b"", sep], children, size, dirty=True)

    def _put(self, node: Node, key: bytes, val: bytes) -> tuple[bytes, Node] | None:
        if node.is_leaf:
            idx = bisect_left(node.keys, key)
            if idx < len(node.keys) and node.keys[idx] == key:
                node.size += len(val) - len(node.vals[idx])
                node.vals[idx] = val
            else:
                node.keys.insert(idx, key)
                node.vals.insert(idx, val)
                node.size += LEAF_OVERHEAD + len(key) + len(val)
        else:
            idx = max(bisect_right(node.keys, key) - 1, 0)
            split = self._put(self._writable_child(node, idx), key, val)
            if split is not None:
                sep, right = split
                node.keys.insert(idx + 1, sep)
                node.vals.insert(idx + 1, right)
                node.size += BRANCH_OVERHEAD + len(sep)
        return self._split(node) if node.size > self.capacity else None

    def _split(self, node: Node) -> tuple[bytes, Node]:
        """Split an overfull node at the byte midpoint; return (separator, right node)."""
        half = node.size // 2
        acc = 0
        mid = 1
        for i, key in enumerate(node.keys):
            acc += _entry_size(node.level, key, node.vals[i] if node.is_leaf else None)
            if acc >= half:
                mid = min(max(i, 1), len(node.keys) - 1)
                break
        return self._cut(node, mid)

    def _cut(self, node: Node, mid: int) -> tuple[bytes, Node]:
        """Move entries [mid:] of node into a new right sibling."""
        sep = node.keys[mid]
        right_keys = node.keys[mid:]
        if not node.is_leaf:
            right_keys[0] = b""
        right = Node(node.level, right_keys, node.vals[mid:], 0, dirty=True)
        del node.keys[mid:]
        del node.vals[mid:]
        self._resize(node)
        self._resize(right)
        return sep, right

    @staticmethod
    def _resize(node: Node) -> None:
        if node.is_leaf:
            node.size = sum(LEAF_OVERHEAD + len(k) + len(v)
                            for k, v in zip(node.keys, node.vals, strict=True))
        else:
            node.size = sum(BRANCH_OVERHEAD + len(k) for k in node.keys)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it was there (a miss copies nothing)."""
        self._check_writable()
        if self.get(key) is None:
            return False
        self.version += 1
        root = self._writable_root()
        self._delete(root, key)
        while not root.is_leaf and len(root.vals) == 1:
            only = root.vals[0]
            self._root = only
            if isinstance(only, TreeRef):
                return True
            root = only
        if root.is_leaf and not root.keys:
            self._root = None
        return True

    def _delete(self, node: Node, key: bytes) -> None:
        if node.is_leaf:
            idx = bisect_left(node.keys, key)
            node.size -= LEAF_OVERHEAD + len(node.keys[idx]) + len(node.vals[idx])
            del node.keys[idx]
            del node.vals[idx]
            return
        idx = max(bisect_right(node.keys, key) - 1, 0)
        child = self._writable_child(node, idx)
        self._delete(child, key)
        if child.size < self.capacity // 4 or not child.keys:
            self._rebalance(node, idx)

    def _rebalance(self, parent: Node, idx: int) -> None:
        """Merge child idx with a neighbour, or even the two out."""
        if len(parent.vals) < 2:
            return
        left_idx = idx if idx + 1 < len(parent.vals) else idx - 1
        left = self._writable_child(parent, left_idx)
        right = self._writable_child(parent, left_idx + 1)
        sep = parent.keys[left_idx + 1]
        if not left.is_leaf:
            right.keys[0] = sep
            right.size += len(sep)
        if left.size + right.size <= self.capacity:
            left.keys += right.keys
            left.vals += right.vals
            left.size += right.size
            del parent.keys[left_idx + 1]
            del parent.vals[left_idx + 1]
            parent.size -= BRANCH_OVERHEAD + len(sep)
            return
        left.keys += right.keys
        left.vals += right.vals
        left.size += right.size
        self._resize(left)
        new_sep, new_right = self._split(left)
        parent.vals[left_idx + 1] = new_right
        parent.keys[left_idx + 1] = new_sep
        parent.size += len(new_sep) - len(sep)

    # ---- commit -----------------------------------------------------------------------------

    def write_out(self) -> TreeRef:
        """Write every dirty node (children first) and return the new clean root."""
        if isinstance(self._root, Node):
            self._root = self._write_node(self._root)
        return self._root or TreeRef()

    def _write_node(self, node: Node) -> TreeRef:
        if not node.is_leaf:
            for i, child in enumerate(node.vals):
                if isinstance(child, Node):
                    node.vals[i] = self._write_node(child)
        assert self.alloc is not None
        page = PageNo(self.alloc.allocate(1))
        birth = self.clock.txid
        kind = KIND_LEAF if node.is_leaf else KIND_BRANCH
        header = PageHeader(kind, 0, len(node.keys), 0, page, birth, node.level, self.tree_id)
        self.pager.write_node(header, encode_node(node))
        node.dirty, node.page, node.birth = False, page, birth
        self.pager.cache.put(("n", page, birth), node, PAGE_SIZE)
        return TreeRef(page, birth)

    # ---- whole-tree walks (fsck, snapshot accounting) ------------------------------------------

    def walk(self, descend: Callable[[TreeRef], bool] = lambda ref: True
             ) -> Iterator[NodeVisit]:
        """Every clean node, parents before children; ``descend(ref)`` False skips a subtree
        (used to stop at pages another root already accounted for)."""
        if self._root is None:
            return
        if isinstance(self._root, Node):
            raise RuntimeError("walk needs a committed tree")
        stack: list[tuple[TreeRef, int | None, int]] = [(self._root, None, 0)]
        while stack:
            ref, level, depth = stack.pop()
            if not descend(ref):
                continue
            if depth > MAX_DEPTH:
                raise CorruptArchive("B-tree deeper than possible", page=ref.page,
                                     kind="B-tree node")
            node = self.load(ref, level=level)
            yield NodeVisit(ref, node, depth)
            if not node.is_leaf:
                stack.extend((child, node.level - 1, depth + 1) for child in reversed(node.vals))
