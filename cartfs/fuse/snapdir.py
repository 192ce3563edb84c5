"""``MOUNT/.snapshots``: every snapshot as a read-only tree, and mkdir/rmdir to make and
delete them — the way ZFS offers ``.zfs/snapshot``.

Theory of operation
-------------------
``.snapshots`` is not in the archive: it is a one-inode pseudo tree (tree id
``SNAPDIR_TREE``, the fixed node id ``SNAPDIR_NODE``) that :class:`SnapshotDir` answers for.
Looking it up in the root always works; listing the root shows it only with
``-o snapdir=visible`` (ZFS's ``snapdir=hidden`` is the default, so ``find``, ``du``,
``rsync`` and backups of the mount do not walk every snapshot). A real entry of that name in
the root is shadowed and never listed, and creating one is refused with EEXIST — the name
exists, as ``stat`` shows.

Each snapshot is a tree of its own: its tree id is the snapshot's id (never reused, so a
snapshot deleted and made again under the same name gets new node ids), its reader a
:class:`~cartfs.core.views.SnapshotView` registered in the inode map on first lookup. The
view re-checks on every call that its snapshot still exists, so a stale node can never read
pages that have been reused. Snapshot trees never change, so the kernel may cache their
entries and attributes for long (``SNAPSHOT_TIMEOUT``) and keep their pages.

``mkdir .snapshots/NAME`` takes a snapshot. With the writeback cache, data that
applications have written may still be dirty in the kernel and not yet sent to us; the
handler therefore first has the kernel write back, from a worker thread while the trio loop
goes on serving the WRITE requests that causes (:meth:`.CartOperations.kernel_write_back`,
as the commit timer does: ``syncfs``, then a barrier request the kernel queues behind the
written-back pages, since syncfs alone does not wait for a FUSE daemon), and only then
commits and pins. Captured: everything whose ``write(2)``,
``truncate`` or metadata call returned before the ``mkdir`` began, and pages dirtied through
shared mappings before it. Writes racing with the ``mkdir`` may or may not be in it. Cost:
one syncfs; the kernel keeps its cached pages.

Facts about a snapshot are extended attributes of ``.snapshots/NAME``, for ``cartfs snapshot
list`` on a mounted archive and for ``getfattr -n cartfs.held``: ``cartfs.id``,
``cartfs.txid``, ``cartfs.created`` (ns since the epoch) and ``cartfs.held`` (bytes only this
snapshot holds: what deleting it frees), as decimal text. They are not listed (``cp -a`` and
``rsync -X`` of a snapshot must not copy them) and shadow real attributes of those names on
a snapshot's root. ``cartfs.held`` takes one walk of every tree's metadata for all the
snapshots at once; the figures are kept until the next commit or snapshot change, so listing
N snapshots costs one walk, not N.

``rmdir .snapshots/NAME`` deletes the snapshot (pages only it held become free at once; the
kernel removes the entry itself), drops its tree — its nodes answer ESTALE from then on —
and asks the kernel to forget what it still caches of them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable

import trio

from cartfs.core.archive import Archive
from cartfs.core.catalog import ROOT_INO, Inode
from cartfs.core.errors import (
    ArchiveBusy,
    InvalidArgument,
    IsADirectory,
    NoAttribute,
    NotFound,
    ReadOnly,
)
from cartfs.core.namespace import DirEntry

from .inodes import SNAPDIR_NODE, InodeMap, ReadTree
from .kernel import forget_in_kernel

log = logging.getLogger("cartfs.fuse")

NAME = b".snapshots"
"""The pseudo directory's name in the root of the mount."""

COOKIE = (1 << 63) - 1
"""readdir position of ``.snapshots`` in a visible root listing: after every real entry."""

SNAPSHOT_TIMEOUT = 86400.0
"""Entry and attribute timeout for snapshot trees: they never change."""

RESERVED_NAMES = frozenset({"@live"})
"""Names ``cartfs snapshot diff`` gives a meaning (the live tree): refused here too."""


VACUUM = b"cartfs.vacuum"
CONTROLS = frozenset({VACUUM})
"""Extended attributes of the mount root that ask the daemon for archive-wide work."""


class Controls:
    """Archive-wide requests to a mounted archive, which the daemon holds open, so that
    ``cartfs vacuum ARCHIVE`` works while it is mounted: ``setxattr MOUNT cartfs.vacuum``
    compacts the archive — in a worker thread, in steps between which the mount keeps
    serving (``Archive.vacuum(online=True)``) — and returns when it is done (or failed:
    the errno says why); ``getxattr MOUNT cartfs.vacuum`` then tells what the last one did,
    as JSON (pages_before, pages_after, moved_pages). Not listed by listxattr. The kernel
    lets only those who may write to the root directory set it."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.last_vacuum: dict[str, int] | None = None
        self._vacuuming = False

    async def set(self, name: bytes) -> None:
        if name != VACUUM:
            raise NoAttribute("no such control")
        if not self.archive.writable:
            raise ReadOnly("the archive is mounted read-only")
        if self._vacuuming:
            raise ArchiveBusy("a vacuum is already running")
        self._vacuuming = True
        try:
            log.info("vacuum of %s started", self.archive.path)
            result = await trio.to_thread.run_sync(
                functools.partial(self.archive.vacuum, online=True))
        finally:
            self._vacuuming = False
        self.last_vacuum = {"pages_before": result.pages_before,
                            "pages_after": result.pages_after,
                            "moved_pages": result.moved_pages}
        log.info("vacuum of %s: %s", self.archive.path, self.last_vacuum)

    def get(self, name: bytes) -> bytes:
        if name != VACUUM or self.last_vacuum is None:
            raise NoAttribute("no such attribute")
        return json.dumps(self.last_vacuum).encode()


HELD_FACT = b"cartfs.held"  # bytes only this snapshot holds: a walk of every tree
FACTS = (b"cartfs.id", b"cartfs.txid", b"cartfs.created", HELD_FACT)
"""Extended attributes of ``.snapshots/NAME`` (its root) that describe the snapshot."""


class SnapshotTree:
    """One snapshot's tree in the mount: its ``SnapshotView`` (``archive.snapshot(NAME)``;
    every call checks that the snapshot still exists), and the snapshot's FACTS as
    attributes of its root."""

    def __init__(self, view: ReadTree, name: str, snapshot_id: int,
                 snapdir: SnapshotDir) -> None:
        self.view = view
        self.name = name
        self.snapshot_id = snapshot_id
        self.snapdir = snapdir

    def lookup(self, parent: int, name: str | bytes) -> Inode:
        return self.view.lookup(parent, name)

    def getattr(self, ino: int) -> Inode:
        return self.view.getattr(ino)

    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]:
        return self.view.readdir(ino, after, limit)

    def read(self, ino: int, offset: int, size: int) -> bytes:
        return self.view.read(ino, offset, size)

    def readlink(self, ino: int) -> bytes:
        return self.view.readlink(ino)

    def getxattr(self, ino: int, name: str | bytes) -> bytes:
        raw = os.fsencode(name)
        if ino == ROOT_INO and raw in FACTS:
            return self.snapdir.fact(self.name, self.snapshot_id, raw)
        return self.view.getxattr(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        return self.view.listxattr(ino)


class SnapshotDir:
    """The ``.snapshots`` directory of one mount: its own attributes (the ReadTree methods,
    for inode ``ROOT_INO`` of the pseudo tree) and the snapshots below it."""

    def __init__(self, archive: Archive, inodes: InodeMap[ReadTree],
                 mountpoint: str | None, write_back: Callable[[], Awaitable[None]], *,
                 visible: bool) -> None:
        self.archive = archive
        self.inodes = inodes
        self.write_back = write_back  # have the kernel send what it holds dirty, and wait
        self.mountpoint = mountpoint
        self.visible = visible
        self._changed_ns: int | None = None  # mtime/ctime: the last mkdir/rmdir
        # bytes held only by each snapshot (by id), and the (txid, snapshot ids) they are for
        self._held: tuple[tuple[int, tuple[int, ...]], dict[int, int]] | None = None

    @staticmethod
    def is_name(parent_node: int, name: bytes) -> bool:
        """Whether ``name`` in ``parent_node`` is the ``.snapshots`` entry of the root."""
        return parent_node == ROOT_INO and name == NAME

    # ---- the directory itself (ReadTree) --------------------------------------------------

    def getattr(self, ino: int) -> Inode:
        """Mode 0755 owned like the root, so its owner may mkdir/rmdir snapshots through the
        kernel's permission check; nlink 2 + one per snapshot (each is a subdirectory)."""
        root = self.archive.getattr(ROOT_INO)
        snapshots = self.archive.list_snapshots()
        if self._changed_ns is None:
            created = [s.created_ns for s in snapshots]
            self._changed_ns = max(created, default=root.btime_ns or root.ctime_ns)
        return Inode(ino=ROOT_INO, mode=stat.S_IFDIR | 0o755, uid=root.uid, gid=root.gid,
                     nlink=2 + len(snapshots), atime_ns=self._changed_ns, mtime_ns=self._changed_ns,
                     ctime_ns=self._changed_ns, btime_ns=root.btime_ns)

    def lookup(self, parent: int, name: str | bytes) -> Inode:
        raise NotFound("snapshots are looked up with SnapshotDir.open")

    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]:
        return []  # listed with SnapshotDir.entries: its entries belong to other trees

    def read(self, ino: int, offset: int, size: int) -> bytes:
        raise IsADirectory(".snapshots is a directory")

    def readlink(self, ino: int) -> bytes:
        raise InvalidArgument(".snapshots is not a symbolic link")

    def getxattr(self, ino: int, name: str | bytes) -> bytes:
        raise NoAttribute("no such attribute")

    def listxattr(self, ino: int) -> list[bytes]:
        return []

    # ---- the snapshots in it --------------------------------------------------------------

    def fact(self, snapshot: str, snapshot_id: int, name: bytes) -> bytes:
        """The value of one of FACTS for snapshot ``snapshot`` (if it is still the one with
        id ``snapshot_id``)."""
        info = self.archive.snapshot(snapshot).info
        if info.id != snapshot_id:
            raise NotFound(f"snapshot {snapshot!r} no longer exists")
        if name == b"cartfs.id":
            value = info.id
        elif name == b"cartfs.txid":
            value = info.txid
        elif name == b"cartfs.created":
            value = info.created_ns
        else:
            value = self._held_bytes(info.id)
        return str(value).encode()

    def _held_bytes(self, snapshot_id: int) -> int:
        """Bytes only this snapshot holds, from figures computed for all snapshots at once
        and kept while the committed state and the set of snapshots stay the same."""
        ids = tuple(s.id for s in self.archive.list_snapshots())
        if self._held is None or self._held[0] != (self.archive.superblock.txid, ids):
            infos = self.archive.list_snapshots(usage=True)  # commits pending changes first
            held = {s.id: s.exclusive_bytes or 0 for s in infos}
            self._held = ((self.archive.superblock.txid, tuple(s.id for s in infos)), held)
        held_now = self._held[1]
        if snapshot_id not in held_now:
            raise NotFound("snapshot no longer exists")
        return held_now[snapshot_id]

    def open(self, name: bytes) -> tuple[int, Inode]:
        """(tree id, root inode) of snapshot ``name``, registering its tree on first use."""
        view = self.archive.snapshot(os.fsdecode(name))
        tree_id = view.info.id
        if self.inodes.tree(tree_id) is None:
            self.inodes.add_tree(tree_id, SnapshotTree(view, view.name, tree_id, self))
        tree = self.inodes.tree(tree_id)
        assert tree is not None
        return tree_id, tree.getattr(ROOT_INO)

    def entries(self, after: int) -> list[tuple[bytes, int, Inode, int]]:
        """(name, tree id, root inode, cookie) of each snapshot past readdir cookie
        ``after``. The cookie is the snapshot id + 2 (ids start at 1; 1 and 2 are "." and
        ".."), so a listing resumes correctly while snapshots come and go."""
        out = []
        for info in sorted(self.archive.list_snapshots(), key=lambda s: s.id):
            if info.id + 2 <= after:
                continue
            name = os.fsencode(info.name)
            try:
                tree_id, root = self.open(name)
            except NotFound:  # deleted meanwhile
                continue
            out.append((name, tree_id, root, info.id + 2))
        return out

    async def create(self, name: bytes) -> tuple[int, Inode]:
        """``mkdir .snapshots/NAME``: flush the kernel's dirty pages, then snapshot."""
        text = os.fsdecode(name)
        if text in RESERVED_NAMES:
            raise InvalidArgument(f"{text!r} is reserved (it means the live tree)")
        if self.mountpoint is not None and self.archive.writable:
            await self.write_back()
        await trio.to_thread.run_sync(self.archive.create_snapshot, text)
        self._changed_ns = time.time_ns()
        return self.open(name)

    async def delete(self, name: bytes) -> None:
        """``rmdir .snapshots/NAME``: delete it, drop its tree, clear the kernel's caches."""
        info = self.archive.snapshot(os.fsdecode(name)).info
        await trio.to_thread.run_sync(self.archive.delete_snapshot, info.name)
        self._changed_ns = time.time_ns()
        nodes = self.inodes.drop_tree(info.id)
        forget_in_kernel(SNAPDIR_NODE, name, nodes)
