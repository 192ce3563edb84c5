"""Moving trees to new pages: the engine behind vacuum and freeze.

A node is rewritten when it must move itself, or when anything it points at moved (a child
node, a chunk extent, an xattr blob). Rewriting goes bottom-up, so a parent is written once
its children have their new addresses. Three rules keep every invariant of the archive:

* **Births are preserved.** A moved node or extent keeps the birth txid it had: the
  snapshot birth-time rule (alloc.py) keeps deciding correctly who may still reach it, and
  sealed extents stay valid, since their associated data names their owner key and birth, not
  their page.
* **Sharing is preserved.** Every move is memoised by its old address, so a subtree that the
  live tree and several snapshots share is copied once and stays shared.
* **No stale cache hits.** The ARC pool keys decoded pages by (page, birth), which is
  unique for ordinary writes (a page freed in transaction T is reused only after T). A moved
  copy keeps its old birth, so before writing it we drop whatever the cache holds under its
  new (page, birth).
* **Leaving records out (freeze).** ``drop`` names catalog keys not to copy (the records
  of orphans: files unlinked while open). A leaf loses those entries, a node left with none
  is dropped from its parent (whose first key becomes the empty key again), and the extents
  of dropped records are never visited, so they are not copied.
* **Nothing is overwritten.** New copies go to free pages (below the vacuum boundary, or into
  the new file for freeze); the old pages are released only after the commit that stops
  referring to them is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .btree import (
    BRANCH_OVERHEAD,
    LEAF_OVERHEAD,
    TREE_CATALOG,
    BTree,
    Node,
    TxnClock,
    encode_node,
)
from .catalog import REC_CHUNK, REC_XATTR, decode_xattr, encode_xattr_blob
from .format import (
    KIND_BRANCH,
    KIND_LEAF,
    BlobRef,
    PageHeader,
    PageNo,
    TreeRef,
    decode_chunk_ptr,
    encode_chunk_ptr,
)
from .pager import Pager

Allocate = Callable[[int], int]


def _size(level: int, keys: list[bytes], vals: list[Any]) -> int:
    """Encoded size of a node's entries (btree.py's layout)."""
    if level == 0:
        return sum(LEAF_OVERHEAD + len(k) + len(v) for k, v in zip(keys, vals, strict=True))
    return sum(BRANCH_OVERHEAD + len(k) for k in keys)
ShouldMove = Callable[[int, int], bool]


class Relocator:
    """Copies what ``should_move(page, npages)`` selects from ``src`` into ``dst`` pages
    obtained from ``allocate(n)``; remembers what moved so callers can free it."""

    def __init__(self, src: Pager, dst: Pager, allocate: Allocate, should_move: ShouldMove,
                 progress: Callable[[int], None] | None = None,
                 placement: dict[int, int] | None = None,
                 drop: Callable[[bytes], bool] | None = None) -> None:
        self.src = src
        self.drop = drop  # catalog keys to leave out of the copy (freeze: orphans)
        self.dst = dst
        self.allocate = allocate
        self.should_move = should_move
        self.progress = progress
        self.placement = placement  # planned new homes of extents (vacuum); None = allocate
        self._clock = TxnClock(0)
        self._nodes: dict[tuple[int, int], TreeRef | None] = {}
        self._extents: dict[int, int] = {}  # old first page -> new first page
        self._moved_nodes: dict[int, int] = {}  # old node page -> new node page
        self.replaced: list[tuple[int, int]] = []  # old runs nobody refers to any more

    def moved_start(self, start: int) -> int:
        """Where a run that started at ``start`` lives now."""
        return self._extents.get(start, self._moved_nodes.get(start, start))

    def tree(self, root: TreeRef, tree_id: int) -> TreeRef:
        """Relocate a whole tree; returns its (possibly unchanged) root (empty if ``drop``
        left nothing of it)."""
        if root.empty:
            return root
        reader = BTree(self.src, None, self._clock, tree_id, TreeRef(), writable=False)
        return self._node(reader, root, None, tree_id) or TreeRef()

    def _node(self, reader: BTree, ref: TreeRef, level: int | None, tree_id: int
              ) -> TreeRef | None:
        """The node's new reference, or None if ``drop`` removed every entry below it."""
        key = (ref.page, ref.birth)
        if key in self._nodes:
            return self._nodes[key]
        node = reader.load(ref, level=level)
        keys, vals = list(node.keys), list(node.vals)
        changed = self.should_move(ref.page, 1)
        if node.is_leaf:
            if tree_id == TREE_CATALOG:
                if self.drop is not None:
                    kept = [i for i, k in enumerate(keys) if not self.drop(k)]
                    changed |= len(kept) != len(keys)
                    keys, vals = [keys[i] for i in kept], [vals[i] for i in kept]
                for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
                    vals[i] = self._value(k, v)
                    changed |= vals[i] is not v
        else:
            children = [self._node(reader, child, node.level - 1, tree_id)
                        for child in node.vals]
            changed |= children != node.vals
            kept = [i for i, child in enumerate(children) if child is not None]
            keys, vals = [keys[i] for i in kept], [children[i] for i in kept]
            if keys:
                keys[0] = b""  # child 0 holds everything below keys[1] (btree.py)
        result: TreeRef | None
        if not keys:
            result = None
        elif changed:
            result = self._write(Node(node.level, keys, vals, _size(node.level, keys, vals),
                                      dirty=False), ref, tree_id)
        else:
            result = ref
        self._nodes[key] = result
        if result is not None and result.page != ref.page:
            self._moved_nodes[ref.page] = result.page
        if self.progress is not None:
            self.progress(1)
        return result

    def _write(self, node: Node, ref: TreeRef, tree_id: int) -> TreeRef:
        page = PageNo(self.allocate(1))
        self._forget_cached(page, ref.birth)
        copy = Node(node.level, node.keys, node.vals, node.size, dirty=False, page=page,
                    birth=ref.birth)
        kind = KIND_LEAF if node.is_leaf else KIND_BRANCH
        header = PageHeader(kind, 0, len(node.keys), 0, page, ref.birth, node.level, tree_id)
        self.dst.write_node(header, encode_node(copy))
        if self.dst is self.src:
            self.replaced.append((ref.page, 1))
        return TreeRef(page, ref.birth)

    def _value(self, key: bytes, value: bytes) -> bytes:
        rec = key[8] if len(key) > 8 else -1
        if rec == REC_CHUNK:
            ptr = decode_chunk_ptr(value)
            if ptr.inline_data is None:
                new_page = self._extent(ptr.page, ptr.stored, ptr.checksum, ptr.npages,
                                        ptr.birth)
                if new_page != ptr.page:
                    return encode_chunk_ptr(replace(ptr, page=PageNo(new_page)))
        elif rec == REC_XATTR:
            stored = decode_xattr(value)
            if isinstance(stored, BlobRef):
                new_page = self._extent(stored.page, stored.length, stored.checksum,
                                        stored.npages, stored.birth)
                if new_page != stored.page:
                    return encode_xattr_blob(replace(stored, page=PageNo(new_page)))
        return value

    def _forget_cached(self, page: int, birth: int) -> None:
        self.dst.cache.discard(("n", page, birth))
        self.dst.cache.discard(("c", page, birth))

    def _extent(self, page: int, length: int, checksum: int, npages: int, birth: int) -> int:
        """Copy a run verbatim (sealed bytes stay valid: their AD does not name the page)."""
        if page in self._extents:
            return self._extents[page]
        if self.placement is not None:
            planned = self.placement.get(page)
            if planned is None:
                return page
            new_page = planned
        elif not self.should_move(page, npages):
            return page
        else:
            new_page = self.allocate(npages)
        stored = self.src.read_extent(PageNo(page), length, checksum, kind="extent")
        self._forget_cached(new_page, birth)
        self.dst.write_extent(PageNo(new_page), stored)
        self._extents[page] = new_page
        if self.dst is self.src:
            self.replaced.append((page, npages))
        if self.progress is not None:
            self.progress(npages)
        return new_page

    def blob(self, ref: BlobRef) -> BlobRef:
        """Relocate a stand-alone blob (not named by a tree)."""
        if ref.empty:
            return ref
        return replace(ref, page=PageNo(self._extent(ref.page, ref.length, ref.checksum,
                                                     ref.npages, ref.birth)))
