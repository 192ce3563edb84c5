"""Which pages a catalog tree reaches: its nodes, its chunk extents, its xattr blobs.

Snapshot deletion, restore and "bytes held only by this snapshot" all reduce to marking: collect
the pages reachable from a set of roots, then look at what is left. Trees that share history
share subtrees (copy-on-write), so a walk stops at any node page already marked — marking every
snapshot of an archive costs about as much as marking one.
"""

from __future__ import annotations

from collections.abc import Iterator

from .btree import TREE_CATALOG, BTree, Node, TxnClock
from .catalog import REC_CHUNK, REC_XATTR, decode_xattr
from .format import BlobRef, TreeRef, decode_chunk_ptr
from .pager import Pager

Run = tuple[int, int, int]  # (first page, number of pages, birth txid)


def catalog_tree(pager: Pager, clock: TxnClock, root: TreeRef) -> BTree:
    """A read-only view of a committed catalog root."""
    return BTree(pager, None, clock, TREE_CATALOG, root, writable=False)


def runs_of(tree: BTree, seen_nodes: set[int], *, nodes: bool = True) -> Iterator[Run]:
    """Every page run the tree reaches, skipping subtrees whose node is in ``seen_nodes``
    (which this adds to)."""

    def descend(ref: TreeRef) -> bool:
        if ref.page in seen_nodes:
            return False
        seen_nodes.add(ref.page)
        return True

    for visit in tree.walk(descend):
        if nodes:
            yield visit.ref.page, 1, visit.ref.birth
        if visit.node.is_leaf:
            yield from leaf_runs(visit.node)


def leaf_runs(node: Node) -> Iterator[Run]:
    """The extents (chunks, xattr blobs) a catalog leaf points at."""
    for key, value in zip(node.keys, node.vals, strict=True):
        rec = key[8] if len(key) > 8 else -1
        if rec == REC_CHUNK:
            ptr = decode_chunk_ptr(value)
            if ptr.inline_data is None:
                yield ptr.page, ptr.npages, ptr.birth
        elif rec == REC_XATTR:
            stored = decode_xattr(value)
            if isinstance(stored, BlobRef):
                yield stored.page, stored.npages, stored.birth


def extents_of(tree: BTree, seen_nodes: set[int]) -> Iterator[tuple[int, int]]:
    """(first page, pages) of every extent (chunk or xattr blob) the tree reaches."""
    for start, n, _birth in runs_of(tree, seen_nodes, nodes=False):
        yield start, n


def reachable_starts(pager: Pager, clock: TxnClock, roots: list[TreeRef]) -> set[int]:
    """First pages of every run reachable from any of ``roots``."""
    seen_nodes: set[int] = set()
    starts: set[int] = set()
    for root in roots:
        if not root.empty:
            starts.update(start for start, _, _ in runs_of(catalog_tree(pager, clock, root),
                                                           seen_nodes))
    return starts
