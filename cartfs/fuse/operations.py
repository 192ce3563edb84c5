"""The pyfuse3 ``Operations`` of a cartfs mount: every kernel request as an ``Archive`` call.

Theory of operation
-------------------
Each handler resolves the kernel's node id to ``(tree, inode)`` (:mod:`.inodes`), makes one
or two calls on the archive and turns the result into pyfuse3's types. Nothing here knows
about pages, chunks or commits; the archive groups writes into transactions by itself and
this layer only asks for a durable commit when the application does (``fsync``/``fsyncdir``).

Errors are translated at exactly one place, :func:`_boundary`: a :class:`CartError` becomes
``FUSEError(exc.errno)``; anything else is a bug, is logged with its traceback and becomes
EIO. pyfuse3 ends its main loop on any other exception, so no handler may let one escape —
the mount must outlive a failing request.

Kernel caches (see reference/fuse-notes.md, and benchmarks/README.md "Mount" for figures):

* Writeback cache: the kernel owns file size and mtime while it caches a file; small writes
  reach us merged into large ones. The kernel computes the offset of ``O_APPEND`` writes
  itself, so ``write`` always writes at the offset given — never "at our end of file".
* ``keep_cache`` on every open: all changes to a file pass through this kernel mount, so its
  cached pages are never stale.
* Long entry/attribute timeouts and cached negative lookups: the daemon is the only writer.
* ``O_TRUNC`` arrives in ``open`` (atomic O_TRUNC) and is honoured there.
* With the writeback cache the kernel also owns mtime/ctime: writes do not touch them
  (``Archive.write(touch=False)``); the kernel sends them with SETATTR on close/fsync.
* It owns the size too: for a cached regular file it never takes ``st_size`` from getattr,
  and it accepts every write below its own limit (``MAX_LFS_FILESIZE``, which FUSE cannot
  lower) before we see it. The archive's largest file size is therefore the same, so no
  write the kernel took can fail at write-back and leave it showing a size we never stored.

Trees: the live tree (node id = archive inode), the ``.snapshots`` directory and one read-only
tree per snapshot (:mod:`.snapdir`; node ids from :mod:`.inodes`). Any change aimed at a
snapshot tree is EROFS; inside ``.snapshots`` only mkdir (take a snapshot) and rmdir (delete
one) work, anything else is EPERM; creating a name ``.snapshots`` in the root is EEXIST.

IAM (``-o principal=``, :mod:`.access`): each handler names the action it needs before it
acts; without the option those calls do nothing.

``fsync``/``fsyncdir`` (two disk syncs) always run in a worker thread, so the trio thread
keeps serving other requests meanwhile. Reads, writes and truncations of 128 KiB or more
do so too with ``-o threads=1``; measured on 2 cores that gained nothing for reads and cost
~20 % on 1 MiB writes (the archive's one lock serialises the calls anyway), so it is off by
default.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from cartfs.core.archive import Archive
from cartfs.core.catalog import ROOT_INO, Inode
from cartfs.core.errors import (
    AlreadyExists,
    CartError,
    CrossDevice,
    NotFound,
    NotPermitted,
    ReadOnly,
)

from .access import CREATE, DELETE, LIST, READ, SNAPSHOT, WRITE, access_for, open_actions
from .handles import Handle, HandleTable
from .inodes import LIVE_TREE, SNAPDIR_NODE, SNAPDIR_TREE, InodeMap, ReadTree
from .kernel import syncfs_then_barrier, write_back
from .options import MountSettings
from .snapdir import CONTROLS, COOKIE, HELD_FACT, SNAPSHOT_TIMEOUT, Controls, SnapshotDir

log = logging.getLogger("cartfs.fuse")

P = ParamSpec("P")
R = TypeVar("R")

READDIR_BATCH = 128
ACL_PREFIX = b"system.posix_acl_"
CAPABILITY = b"security.capability"
PROBED_XATTRS = (b"system.", b"security.")  # ACL/label probes of ls -l: metadata, like stat
THREAD_MIN = 128 * 1024  # smaller reads/writes run on the trio thread (measured)
ADMIN = "cartfs:Admin"  # archive-wide controls (vacuum) under -o principal=
BLOCK_SIZE = 64 * 1024  # st_blksize: the chunk size, so tools read and write in chunk units
BARRIER_TIMEOUT = 60.0  # longest wait for the kernel's write-back to reach us

__all__ = ["CartOperations", "ReadTree"]


def _boundary(method: Callable[P, Coroutine[Any, Any, R]]
              ) -> Callable[P, Coroutine[Any, Any, R]]:
    """The one error boundary: CartError -> its errno, anything unexpected -> logged EIO."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except CartError as exc:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s%r: %s", method.__name__, args[1:], exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc
        except Exception as exc:
            log.exception("unexpected error in %s%r", method.__name__, args[1:])
            raise pyfuse3.FUSEError(errno.EIO) from exc

    return wrapper


@dataclass
class _Barrier:
    """One wait for the kernel's write-back (:func:`.kernel.syncfs_then_barrier`): the
    daemon's own OPENDIR of the root is recognised by the thread id, its RELEASEDIR ends it."""

    done: trio.Event = field(default_factory=trio.Event)
    tid: int | None = None  # thread that opens the root directory
    fh: int | None = None  # the handle that OPENDIR got
    writes: int = 0  # WRITE requests started when the RELEASEDIR came

    def mark(self, tid: int) -> None:
        self.tid = tid


class CartOperations(pyfuse3.Operations):
    """pyfuse3 request handlers over one open :class:`Archive`."""

    def __init__(self, archive: Archive, settings: MountSettings,
                 mountpoint: str | None = None) -> None:
        super().__init__()
        self.archive = archive
        self.settings = settings
        self.enable_writeback_cache = settings.writeback and archive.writable
        self.inodes: InodeMap[ReadTree] = InodeMap(archive, archive.pin, archive.unpin)
        self.handles = HandleTable()
        self.snapdir = SnapshotDir(archive, self.inodes, mountpoint, self.kernel_write_back,
                                   visible=settings.snapdir_visible)
        self.inodes.add_tree(SNAPDIR_TREE, self.snapdir)
        self.controls = Controls(archive)  # setxattr MOUNT cartfs.vacuum (snapdir.py)
        self.iam = access_for(archive, settings.principal)
        self.mountpoint = mountpoint
        self._barrier: _Barrier | None = None
        self._write_back_lock = trio.Lock()  # the commit timer and snapshot mkdir share it
        self._writes_started = 0
        self._writes_running: set[int] = set()  # numbers of WRITEs being handled
        self._codec = settings.compression \
            if settings.compression not in (None, archive.compression) else None
        # Under the writeback cache the kernel owns mtime/ctime and sends its own with a
        # SETATTR after writing pages back; a daemon-made stamp would only be a second,
        # different mtime, committed if a commit falls between the two (and one inode
        # update more per write). Without it, the daemon stamps them (touch=True).
        self._write = functools.partial(archive.write, touch=not self.enable_writeback_cache)

    # ---- helpers ------------------------------------------------------------------------

    async def _io(self, fn: Callable[..., R], *args: Any, nbytes: int = THREAD_MIN) -> R:
        """Run a core call that may block on disk or CPU: in a worker thread if enabled and
        the call is big enough to pay for the hand-off (~50 us)."""
        if self.settings.threads and nbytes >= THREAD_MIN:
            result: R = await trio.to_thread.run_sync(fn, *args)
            return result
        return fn(*args)

    def _tree(self, node: int) -> tuple[int, ReadTree, int]:
        return self.inodes.resolve(node)

    def _live(self, node: int) -> int:
        """The live inode behind ``node``; other trees refuse changes."""
        tree_id, _, ino = self.inodes.resolve(node)
        if tree_id == LIVE_TREE:
            return ino
        if tree_id == SNAPDIR_TREE:
            raise NotPermitted(".snapshots holds snapshots only: mkdir makes, rmdir deletes")
        raise ReadOnly("snapshots are read-only")

    def _new_name(self, parent_node: int, name: bytes) -> int:
        """The live parent for a new entry ``name``, after the checks every creation needs."""
        parent = self._live(parent_node)
        if SnapshotDir.is_name(parent_node, name):
            raise AlreadyExists(".snapshots in the root is the snapshot directory")
        self.iam.check(CREATE, parent_node, name)
        return parent

    def _attrs(self, tree_id: int, inode: Inode) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = self.inodes.node_of(tree_id, inode.ino)
        attrs.generation = 0
        if tree_id > LIVE_TREE:  # a snapshot: never changes
            attrs.entry_timeout = attrs.attr_timeout = SNAPSHOT_TIMEOUT
        else:
            attrs.entry_timeout = self.settings.entry_timeout
            attrs.attr_timeout = self.settings.attr_timeout
        attrs.st_mode = inode.mode
        attrs.st_nlink = inode.nlink
        attrs.st_uid = inode.uid if self.settings.uid is None else self.settings.uid
        attrs.st_gid = inode.gid if self.settings.gid is None else self.settings.gid
        attrs.st_rdev = inode.rdev
        attrs.st_size = inode.size
        attrs.st_blksize = BLOCK_SIZE
        attrs.st_blocks = self._blocks(tree_id, inode)
        attrs.st_atime_ns = inode.atime_ns
        attrs.st_mtime_ns = inode.mtime_ns
        attrs.st_ctime_ns = inode.ctime_ns
        attrs.st_birthtime_ns = inode.btime_ns
        return attrs

    def _blocks(self, tree_id: int, inode: Inode) -> int:
        """st_blocks (512-byte units): what the file's data takes in the archive, so ``du``
        of a sparse or compressed file is honest. The archive scans the chunk map once per
        change (``allocated_bytes``). Snapshot trees without that call report the size."""
        if not inode.is_reg:
            return 0
        tree = self.archive if tree_id == LIVE_TREE else self.inodes.tree(tree_id)
        allocated = getattr(tree, "allocated_bytes", None)
        nbytes = allocated(inode.ino) if allocated is not None else inode.size
        return (nbytes + 511) // 512

    def _entry(self, tree_id: int, inode: Inode, parent_node: int, name: bytes
               ) -> pyfuse3.EntryAttributes:
        """Attributes for a reply that gives the kernel a new reference (lookup, create...)
        to ``name`` in ``parent_node``."""
        attrs = self._attrs(tree_id, inode)
        self.inodes.remember(attrs.st_ino)
        self.iam.named(parent_node, name, attrs.st_ino)
        return attrs

    def _created(self, inode: Inode, parent_node: int, name: bytes
                 ) -> pyfuse3.EntryAttributes:
        if self._codec is not None and inode.is_reg:
            inode = self.archive.set_codec(inode.ino, self._codec)
        return self._entry(LIVE_TREE, inode, parent_node, name)

    # ---- names --------------------------------------------------------------------------

    @_boundary
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if SnapshotDir.is_name(parent_inode, name):  # hidden from readdir, never from lookup
            return self._entry(SNAPDIR_TREE, self.snapdir.getattr(ROOT_INO), parent_inode,
                               name)
        tree_id, tree, parent = self._tree(parent_inode)
        try:
            if tree_id == SNAPDIR_TREE:
                tree_id, inode = self.snapdir.open(name)
            else:
                inode = tree.lookup(parent, name)
        except NotFound:
            if self.settings.negative_timeout <= 0:
                raise
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0  # a cached "no such name": the next lookup needs no request
            negative.entry_timeout = self.settings.negative_timeout
            return negative
        return self._entry(tree_id, inode, parent_inode, name)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            for node, count in inode_list:
                if self.inodes.forget(node, count):
                    self.iam.forgotten(node)
        except Exception:  # no reply is possible: log, and keep the mount up
            log.exception("unexpected error in forget")

    @_boundary
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext
                      ) -> pyfuse3.EntryAttributes:
        tree_id, tree, ino = self._tree(inode)
        return self._attrs(tree_id, tree.getattr(ino))

    @_boundary
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        ino = self._live(inode)
        handle = self.handles.find(fh)
        if handle is None or not handle.writable:
            self.iam.check(WRITE, inode)
        changes: dict[str, int] = {}
        if fields.update_mode:
            changes["mode"] = attr.st_mode
        if fields.update_uid:
            changes["uid"] = attr.st_uid
        if fields.update_gid:
            changes["gid"] = attr.st_gid
        if fields.update_atime:
            changes["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            changes["mtime_ns"] = attr.st_mtime_ns
        if fields.update_ctime:
            changes["ctime_ns"] = attr.st_ctime_ns
        if fields.update_size:
            changes["size"] = attr.st_size
            updated = await self._io(functools.partial(self.archive.setattr, ino, **changes))
        else:
            updated = self.archive.setattr(ino, **changes)
        return self._attrs(LIVE_TREE, updated)

    @_boundary
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        _, tree, ino = self._tree(inode)
        self.iam.check(READ, inode)
        return tree.readlink(ino)

    @_boundary
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._new_name(parent_inode, name)
        return self._created(self.archive.mknod(parent, name, mode, rdev, ctx.uid, ctx.gid),
                             parent_inode, name)

    @_boundary
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode == SNAPDIR_NODE:
            self.iam.check_root(SNAPSHOT)
            tree_id, root = await self.snapdir.create(name)
            return self._entry(tree_id, root, parent_inode, name)
        parent = self._new_name(parent_inode, name)
        return self._created(self.archive.mkdir(parent, name, mode, ctx.uid, ctx.gid),
                             parent_inode, name)

    @_boundary
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._new_name(parent_inode, name)
        return self._created(self.archive.symlink(parent, name, target, ctx.uid, ctx.gid),
                             parent_inode, name)

    @_boundary
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._new_name(new_parent_inode, new_name)
        if self._tree(inode)[0] != LIVE_TREE:
            raise CrossDevice("cannot link a snapshot's file into the live tree")
        self.iam.check(READ, inode)
        self.iam.check(WRITE, inode)
        return self._entry(LIVE_TREE, self.archive.link(inode, parent, new_name),
                           new_parent_inode, new_name)

    @_boundary
    async def unlink(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> None:
        parent = self._live(parent_inode)
        self.iam.check(DELETE, parent_inode, name)
        self.archive.unlink(parent, name)
        self.iam.unnamed(parent_inode, name)

    @_boundary
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        if parent_inode == SNAPDIR_NODE:
            self.iam.check_root(SNAPSHOT)
            await self.snapdir.delete(name)
        else:
            if SnapshotDir.is_name(parent_inode, name):
                raise NotPermitted(".snapshots cannot be removed")
            parent = self._live(parent_inode)
            self.iam.check(DELETE, parent_inode, name)
            self.archive.rmdir(parent, name)
        self.iam.unnamed(parent_inode, name)

    @_boundary
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        for parent, name in ((parent_inode_old, name_old), (parent_inode_new, name_new)):
            if SnapshotDir.is_name(parent, name) or parent == SNAPDIR_NODE:
                raise NotPermitted("snapshots and .snapshots cannot be renamed")
        if self._tree(parent_inode_old)[0] != self._tree(parent_inode_new)[0]:
            raise CrossDevice("cannot move between the live tree and a snapshot")
        old_parent, new_parent = self._live(parent_inode_old), self._live(parent_inode_new)
        exchange = bool(flags & pyfuse3.RENAME_EXCHANGE)
        if self.iam.enabled:
            self.iam.check_rename(self.archive, old_parent, name_old, new_parent, name_new,
                                     exchange)
        self.archive.rename(old_parent, name_old, new_parent, name_new, flags)
        self.iam.moved(parent_inode_old, name_old, parent_inode_new, name_new, exchange)

    # ---- files --------------------------------------------------------------------------

    def _open_handle(self, tree_id: int, ino: int, node: int, *, writable: bool
                     ) -> pyfuse3.FileInfo:
        if tree_id == LIVE_TREE:
            self.archive.pin(ino)
        fh = self.handles.add(Handle(node, tree_id, ino, writable=writable))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True, direct_io=False)

    @_boundary
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext
                   ) -> pyfuse3.FileInfo:
        tree_id, _, ino = self._tree(inode)
        actions = open_actions(flags)
        if WRITE in actions and tree_id != LIVE_TREE:
            raise ReadOnly("snapshots are read-only")
        for action in actions:
            self.iam.check(action, inode)
        if flags & os.O_TRUNC:
            await self._io(self.archive.truncate, ino, 0)
        return self._open_handle(tree_id, ino, inode, writable=WRITE in actions)

    @_boundary
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._new_name(parent_inode, name)
        attrs = self._created(self.archive.create_file(parent, name, mode, ctx.uid, ctx.gid),
                              parent_inode, name)
        return self._open_handle(LIVE_TREE, attrs.st_ino, attrs.st_ino, writable=True), attrs

    @_boundary
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.handles.get(fh)
        tree = self._tree(handle.node)[1]
        return await self._io(tree.read, handle.ino, off, size, nbytes=size)

    @_boundary
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles.get(fh)
        if handle.tree_id != LIVE_TREE:
            raise ReadOnly("snapshots are read-only")
        self._writes_started += 1
        number = self._writes_started
        self._writes_running.add(number)  # -o threads=1: a write may outlast later requests
        try:
            return await self._io(self._write, handle.ino, off, buf, nbytes=len(buf))
        finally:
            self._writes_running.discard(number)

    async def flush(self, fh: int) -> None:
        """close() needs nothing from the daemon: the kernel writes a file's dirty pages
        before it sends FLUSH, and durability comes from fsync or the commit timer.
        ENOSYS tells the kernel so once; it then skips FLUSH, one round trip per close()."""
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @_boundary
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle.tree_id == LIVE_TREE:
            self.archive.unpin(handle.ino, 1)

    @_boundary
    async def fsync(self, fh: int, datasync: bool) -> None:
        if self.handles.get(fh).tree_id == LIVE_TREE and self.archive.writable:
            await trio.to_thread.run_sync(self.archive.sync)

    # ---- directories --------------------------------------------------------------------

    @_boundary
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        barrier = self._barrier
        if barrier is not None and ctx.pid == barrier.tid and inode == ROOT_INO:
            barrier.fh = self.handles.add(Handle(inode, LIVE_TREE, ROOT_INO, is_dir=True))
            return barrier.fh  # the daemon itself (kernel_write_back): no IAM check
        tree_id, tree, ino = self._tree(inode)
        if not tree.getattr(ino).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if tree_id == SNAPDIR_TREE:
            self.iam.check_root(LIST)  # listing snapshots, as GuardedArchive does
        else:
            self.iam.check(LIST, inode)
        return self.handles.add(Handle(inode, tree_id, ino, is_dir=True))

    def _reply(self, token: pyfuse3.ReaddirToken, name: bytes, tree_id: int, inode: Inode,
               cookie: int, parent_node: int | None = None) -> bool:
        """One readdirplus entry; False when the kernel's buffer is full. Entries other
        than "." and ".." give the kernel a reference (``parent_node`` given)."""
        attrs = self._attrs(tree_id, inode)
        if not pyfuse3.readdir_reply(token, name, attrs, cookie):
            return False
        if parent_node is not None:
            self.inodes.remember(attrs.st_ino)
            self.iam.named(parent_node, name, attrs.st_ino)
        return True

    def _parent_of(self, tree_id: int, tree: ReadTree, ino: int) -> tuple[int, Inode]:
        """The tree and inode ".." stands for (across the joints of .snapshots)."""
        if tree_id == SNAPDIR_TREE:
            return LIVE_TREE, self.archive.getattr(ROOT_INO)
        if tree_id != LIVE_TREE and ino == ROOT_INO:
            return SNAPDIR_TREE, self.snapdir.getattr(ROOT_INO)
        return tree_id, tree.lookup(ino, b"..")

    @_boundary
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.handles.get(fh)
        tree_id, tree, ino = self._tree(handle.node)
        pos = start_id
        if pos == 0:
            if not self._reply(token, b".", tree_id, tree.getattr(ino), 1):
                return
            pos = 1
        if pos == 1:
            if not self._reply(token, b"..", *self._parent_of(tree_id, tree, ino), 2):
                return
            pos = 2
        if tree_id == SNAPDIR_TREE:
            for name, snap_tree, root, cookie in self.snapdir.entries(pos):
                if not self._reply(token, name, snap_tree, root, cookie, handle.node):
                    return
            return
        live_root = tree_id == LIVE_TREE and ino == ROOT_INO
        if pos < COOKIE and self._readdir_entries(token, handle.node, tree_id, tree, ino,
                                                  pos, live_root) \
                and live_root and self.snapdir.visible:
            self._reply(token, b".snapshots", SNAPDIR_TREE, self.snapdir.getattr(ROOT_INO),
                        COOKIE, handle.node)

    def _readdir_entries(self, token: pyfuse3.ReaddirToken, node: int, tree_id: int,
                         tree: ReadTree, ino: int, pos: int, live_root: bool) -> bool:
        """The directory's own entries from cookie ``pos``; True when all were given."""
        while True:
            entries = tree.readdir(ino, pos, READDIR_BATCH)
            for entry in entries:
                if live_root and SnapshotDir.is_name(ROOT_INO, entry.name):
                    continue  # shadowed by the snapshot directory
                try:
                    inode = tree.getattr(entry.ino)
                except NotFound:  # removed since the listing was read
                    continue
                if not self._reply(token, entry.name, tree_id, inode, entry.cookie, node):
                    return False
            if len(entries) < READDIR_BATCH:
                return True
            pos = entries[-1].cookie

    @_boundary
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh)
        barrier = self._barrier
        if barrier is not None and fh == barrier.fh:
            barrier.writes = self._writes_started
            barrier.done.set()

    @_boundary
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        if self.handles.get(fh).tree_id == LIVE_TREE and self.archive.writable:
            await trio.to_thread.run_sync(self.archive.sync)

    @_boundary
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = self.archive.statfs()
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = stats.block_size
        data.f_blocks = stats.blocks
        data.f_bfree = stats.blocks_free
        data.f_bavail = stats.blocks_avail
        data.f_files = stats.files
        data.f_ffree = stats.files_free
        data.f_favail = stats.files_free
        data.f_namemax = stats.name_max
        return data

    # ---- extended attributes ------------------------------------------------------------

    def _xattrs_enabled(self) -> None:
        """With ``-o xattr=0`` every xattr call answers ENOSYS once and the kernel stops
        asking — including the security.capability probe it sends before every write(2)."""
        if not self.settings.xattr:
            raise pyfuse3.FUSEError(errno.ENOSYS)

    @_boundary
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        self._xattrs_enabled()
        if inode == ROOT_INO and name in CONTROLS:  # archive-wide work, e.g. cartfs vacuum
            self.iam.check_root(ADMIN)
            await self.controls.set(name)
            return
        ino = self._live(inode)
        if name.startswith(ACL_PREFIX) or name == CAPABILITY:
            # No ACL support: storing the ACL as a plain xattr would silently drop the mode
            # change it stands for (cp -a sets modes this way); EOPNOTSUPP makes tools chmod.
            # File capabilities mean nothing on a nosuid FUSE mount; refusing them lets
            # getxattr answer the kernel's per-write(2) capability probe without a lookup.
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        self.iam.check(WRITE, inode)
        self.archive.setxattr(ino, name, value)

    @_boundary
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        self._xattrs_enabled()
        if name == CAPABILITY:  # asked before every write(2): answer without the core
            raise pyfuse3.FUSEError(errno.ENODATA)
        if inode == ROOT_INO and name in CONTROLS:
            return self.controls.get(name)
        _, tree, ino = self._tree(inode)
        if not name.startswith(PROBED_XATTRS):
            self.iam.check(READ, inode)
        if name == HELD_FACT:  # walks every tree: off the trio thread, the mount serves on
            return await trio.to_thread.run_sync(tree.getxattr, ino, name)
        return tree.getxattr(ino, name)

    @_boundary
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        self._xattrs_enabled()
        _, tree, ino = self._tree(inode)
        self.iam.check(READ, inode)
        return tree.listxattr(ino)

    @_boundary
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._xattrs_enabled()
        ino = self._live(inode)
        self.iam.check(WRITE, inode)
        self.archive.removexattr(ino, name)

    # ---- lifecycle ----------------------------------------------------------------------

    async def kernel_write_back(self) -> None:
        """Have the kernel send the pages it holds dirty for files open for writing, and
        return once this daemon holds them all (for the commit timer; see :mod:`.kernel`):
        ``syncfs`` and a barrier request behind it; if the barrier cannot be used, the
        files' pages are laundered instead. Nothing to do when no file is open for writing
        (close() writes a file's pages back itself). Not airtight: pages the kernel holds
        back for an inode while a setattr (truncate) on it is in flight may arrive after the
        barrier — then they land in the next commit, a slightly wider loss window on a
        crash, never a torn state."""
        async with self._write_back_lock:  # one barrier at a time
            await self._kernel_write_back()

    async def _kernel_write_back(self) -> None:
        nodes = self.handles.writing_nodes()
        if not nodes or self.mountpoint is None:
            return
        barrier = self._barrier = _Barrier()
        try:
            with trio.move_on_after(BARRIER_TIMEOUT):
                # abandon_on_cancel: a loop that stops serving must not wait for the thread
                if not await trio.to_thread.run_sync(syncfs_then_barrier, self.mountpoint,
                                                     barrier.mark, abandon_on_cancel=True):
                    await trio.to_thread.run_sync(write_back, self.mountpoint, nodes,
                                                  abandon_on_cancel=True)
                    return
                await barrier.done.wait()
                while self._writes_running and min(self._writes_running) <= barrier.writes:
                    await trio.sleep(0.001)
                return
            log.warning("the kernel's write-back did not arrive within %g s",
                        BARRIER_TIMEOUT)
        finally:
            self._barrier = None

    def release_all(self) -> None:
        """At unmount: drop every handle and kernel reference, so files unlinked while
        open are deleted before the final commit instead of at the next open."""
        for handle in self.handles.drain():
            if handle.tree_id == LIVE_TREE and not handle.is_dir:
                self.archive.unpin(handle.ino, 1)
        self.inodes.forget_all()
