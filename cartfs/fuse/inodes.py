"""FUSE inode numbers and the kernel's lookup counts.

Theory of operation
-------------------
The kernel names every file by a 64-bit *node id* and holds a *lookup count* on it: each
successful lookup, create, mknod, mkdir, symlink, link and readdirplus entry adds one, and
``forget(ino, n)`` takes ``n`` away. While the count is above zero the kernel may still send
requests for the node — even after its last name is gone (``unlink`` of an open file) — so
the archive inode is *pinned* on the first reference and unpinned when the count drops to
zero. That one rule makes unlink-while-open work and lets a deleted file's data go at the
right moment.

Node ids: the live tree's inode numbers are used as they are (archive inode 1 is the root,
as FUSE expects), which costs nothing on the hot path. Other trees (read-only snapshot views,
whose inode numbers collide with the live ones) get ids from a separate table in the top half
of the 64-bit space, which archive inode numbers — allocated upwards from 2 — never reach.
``FOREIGN_BASE`` itself is the ``.snapshots`` directory (a stable inode number); the table
hands out ids above it. :meth:`InodeMap.resolve` turns any node id back into
``(tree, inode)``.

A table entry lives while the kernel holds references to it and goes at ``forget``; node ids
are never reused, so a stale id can never reach another file. Ids handed out in replies that
give the kernel no reference (a readdir's "..", an entry that did not fit the buffer) stay
until their tree is dropped: at most one per inode of that snapshot. Dropping a tree (a deleted
snapshot) removes its entries at once: later requests for them answer ESTALE.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from cartfs.core.catalog import ROOT_INO, Inode
from cartfs.core.errors import CartError
from cartfs.core.namespace import DirEntry

FOREIGN_BASE = 1 << 63
"""Start of the node ids of everything that is not an inode of the live tree."""

SNAPDIR_NODE = FOREIGN_BASE
"""The ``.snapshots`` directory: one fixed node id, so its inode number never changes."""

LIVE_TREE = 0
"""Tree id of the archive's live, writable tree; snapshot trees use their snapshot id (> 0)."""

SNAPDIR_TREE = -1
"""Tree id of the ``.snapshots`` directory (a one-inode pseudo tree, node SNAPDIR_NODE)."""


class ReadTree(Protocol):
    """What a mounted tree offers for reading: the live Archive, a snapshot view, and the
    ``.snapshots`` directory all have these methods."""

    def lookup(self, parent: int, name: str | bytes) -> Inode: ...
    def getattr(self, ino: int) -> Inode: ...
    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]: ...
    def read(self, ino: int, offset: int, size: int) -> bytes: ...
    def readlink(self, ino: int) -> bytes: ...
    def getxattr(self, ino: int, name: str | bytes) -> bytes: ...
    def listxattr(self, ino: int) -> list[bytes]: ...

T = TypeVar("T")


class StaleNode(CartError):
    """A node id whose tree is gone (a deleted snapshot) or that the kernel forgot."""

    errno = errno.ESTALE


@dataclass
class _Foreign:
    """The two-way table for inodes of non-live trees."""

    by_node: dict[int, tuple[int, int]] = field(default_factory=dict)
    by_key: dict[tuple[int, int], int] = field(default_factory=dict)
    next_node: int = SNAPDIR_NODE + 1


class InodeMap(Generic[T]):
    """Node id <-> (tree, inode) mapping plus lookup counts, pinning live inodes.

    ``pin``/``unpin`` are the live tree's callbacks (``Archive.pin``/``Archive.unpin``);
    foreign trees are read-only, so their inodes need no pinning — their table entries are
    dropped when the kernel forgets them.
    """

    def __init__(self, live: T, pin: Callable[[int], None],
                 unpin: Callable[[int, int], None]) -> None:
        self._trees: dict[int, T] = {LIVE_TREE: live}
        self._pin = pin
        self._unpin = unpin
        self._counts: dict[int, int] = {}
        self._foreign = _Foreign()

    # ---- trees --------------------------------------------------------------------------

    def add_tree(self, tree_id: int, tree: T) -> None:
        """Register a read-only tree (a snapshot view, or ``.snapshots``) under ``tree_id``."""
        if tree_id == LIVE_TREE:
            raise ValueError("tree id 0 is the live tree")
        self._trees[tree_id] = tree

    def tree(self, tree_id: int) -> T | None:
        return self._trees.get(tree_id)

    def drop_tree(self, tree_id: int) -> list[int]:
        """Forget a tree that no longer exists; returns the node ids it had (which now
        answer ESTALE) so the caller can invalidate the kernel's caches of them."""
        self._trees.pop(tree_id, None)
        nodes = [node for node, (tid, _) in self._foreign.by_node.items() if tid == tree_id]
        for node in nodes:
            key = self._foreign.by_node.pop(node)
            self._foreign.by_key.pop(key, None)
        return nodes

    def resolve(self, node: int) -> tuple[int, T, int]:
        """(tree id, tree, inode number inside that tree) of a kernel node id."""
        if node < FOREIGN_BASE:
            return LIVE_TREE, self._trees[LIVE_TREE], node
        if node == SNAPDIR_NODE:
            return SNAPDIR_TREE, self._trees[SNAPDIR_TREE], ROOT_INO
        try:
            tree_id, ino = self._foreign.by_node[node]
            return tree_id, self._trees[tree_id], ino
        except KeyError:
            raise StaleNode(f"node {node} is gone (a deleted snapshot?)") from None

    def node_of(self, tree_id: int, ino: int) -> int:
        """The kernel node id for ``ino`` of ``tree_id`` (allocated on first use)."""
        if tree_id == LIVE_TREE:
            return ino
        if tree_id == SNAPDIR_TREE:
            return SNAPDIR_NODE
        key = (tree_id, ino)
        node = self._foreign.by_key.get(key)
        if node is None:
            node = self._foreign.next_node
            self._foreign.next_node += 1
            self._foreign.by_key[key] = node
            self._foreign.by_node[node] = key
        return node

    # ---- lookup counts ------------------------------------------------------------------

    def remember(self, node: int, count: int = 1) -> None:
        """The kernel gained ``count`` references to ``node``."""
        before = self._counts.get(node, 0)
        self._counts[node] = before + count
        if before == 0 and node < FOREIGN_BASE:
            self._pin(node)

    def forget(self, node: int, count: int) -> bool:
        """The kernel dropped ``count`` references; at zero the inode may be deleted.
        Returns True when the kernel holds no reference any more."""
        left = self._counts.get(node, 0) - count
        if left > 0:
            self._counts[node] = left
            return False
        self._counts.pop(node, None)
        if node < FOREIGN_BASE:
            self._unpin(node, 1)
        else:
            key = self._foreign.by_node.pop(node, None)
            if key is not None:
                self._foreign.by_key.pop(key, None)
        return True

    def lookup_count(self, node: int) -> int:
        return self._counts.get(node, 0)

    def forget_all(self) -> None:
        """At unmount the kernel drops everything without telling us: release every pin,
        so files unlinked while open are deleted before the final commit."""
        for node in list(self._counts):
            self.forget(node, self._counts[node])
