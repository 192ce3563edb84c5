"""The POSIX namespace over one catalog tree: inodes, directories, links, rename, xattrs.

This is where file-system semantics live (what a conformance suite such as pjdfstest checks):
link counts (a directory has 2 + one per subdirectory), ctime on every metadata change, mtime
and ctime of a directory whose entries change, set-group-ID directories passing their group on,
rename's replace / NOREPLACE / EXCHANGE rules and its refusal to move a directory into itself.

It knows nothing of transactions or open files: the archive decides when an inode whose link
count reached zero is deleted (now, or at its last close).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from .btree import BTree
from .catalog import (
    FIRST_INDEX,
    NAME_MAX,
    ROOT_INO,
    XATTR_NAME_MAX,
    XATTR_VALUE_MAX,
    Inode,
    all_records,
    decode_dirent,
    decode_index,
    decode_inode,
    decode_xattr,
    dirent_key,
    dirent_range,
    encode_dirent,
    encode_index,
    encode_inode,
    index_key,
    index_of_key,
    index_range,
    inode_key,
    xattr_key,
    xattr_range,
)
from .errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoAttribute,
    NotADirectory,
    NotFound,
    NotPermitted,
    RangeError,
    TooManyLinks,
)
from .filedata import ChunkStore
from .xattrs import XattrStore

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2
LINK_MAX = 65000
PATH_MAX = 4096
MAX_FILE_SIZE = (1 << 63) - 1
"""Linux's MAX_LFS_FILESIZE, the limit the kernel checks for a FUSE mount: a mount's writeback
cache takes every write below it, so a lower limit here would lose such writes at write-back."""


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One readdir result; ``cookie`` resumes the listing just after this entry."""

    name: bytes
    ino: int
    cookie: int


def check_name(name: bytes) -> None:
    if not name or b"/" in name or b"\0" in name:
        raise InvalidArgument(f"invalid file name {name!r}")
    if len(name) > NAME_MAX:
        raise NameTooLong(f"file name longer than {NAME_MAX} bytes")


class Namespace:
    """Namespace operations on one catalog tree; the caller holds the archive lock."""

    def __init__(self, tree: BTree, chunks: ChunkStore, xattrs: XattrStore,
                 new_ino: Callable[[], int] | None = None) -> None:
        self.tree = tree
        self.chunks = chunks
        self.xattrs = xattrs
        self._new_ino = new_ino
        self._cache: dict[int, Inode] = {}
        self._dirty: set[int] = set()  # inodes changed since the last flush
        self.version = 0  # bumped by every change

    # ---- inodes -----------------------------------------------------------------------------

    def get(self, ino: int) -> Inode:
        inode = self._cache.get(ino)
        if inode is None:
            value = self.tree.get(inode_key(ino))
            if value is None:
                raise NotFound(f"inode {ino} does not exist")
            inode = decode_inode(ino, value)
            if len(self._cache) > 65536:
                self.flush()
                self._cache.clear()
            self._cache[ino] = inode
        return inode

    def exists(self, ino: int) -> bool:
        try:
            self.get(ino)
        except NotFound:
            return False
        return True

    def put(self, inode: Inode) -> Inode:
        """Record an inode change. It is kept decoded and written into the tree once, at
        the next flush (every commit flushes first): a file written 10,000 times in a
        transaction re-encodes its inode once, not 10,000 times."""
        if not self.tree.writable:
            raise NotPermitted("read-only tree")
        self.version += 1
        self._cache[inode.ino] = inode
        self._dirty.add(inode.ino)
        return inode

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def flush(self) -> None:
        """Write changed inodes into the tree (before a commit or a raw tree scan)."""
        for ino in sorted(self._dirty):
            self.tree.put(inode_key(ino), encode_inode(self._cache[ino]))
        self._dirty.clear()

    def forget_cache(self) -> None:
        self.flush()
        self._cache.clear()

    def _dir(self, ino: int) -> Inode:
        inode = self.get(ino)
        if not inode.is_dir:
            raise NotADirectory(f"inode {ino} is not a directory")
        return inode

    # ---- lookup -----------------------------------------------------------------------------

    def child(self, parent: int, name: bytes) -> tuple[int, int] | None:
        """(child ino, readdir index) of ``name`` in directory ``parent``, or None."""
        value = self.tree.get(dirent_key(parent, name))
        return None if value is None else decode_dirent(value)

    def lookup(self, parent: int, name: bytes) -> Inode:
        pdir = self._dir(parent)
        if name == b".":
            return pdir
        if name == b"..":
            return self.get(pdir.parent or ROOT_INO)
        check_name(name)
        found = self.child(parent, name)
        if found is None:
            raise NotFound(f"{name.decode(errors='replace')}: no such file or directory")
        return self.get(found[0])

    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]:
        """Entries in creation order with index > ``after`` (indexes never change, so a
        listing resumes correctly while entries are added or removed)."""
        self._dir(ino)
        start, end = index_range(ino, max(after, FIRST_INDEX - 1))
        out: list[DirEntry] = []
        for key, value in self.tree.items(start, end):
            child, name = decode_index(value)
            out.append(DirEntry(name, child, index_of_key(key)))
            if len(out) >= limit:
                break
        return out

    def is_empty_dir(self, ino: int) -> bool:
        start, end = dirent_range(ino)
        return self.tree.first_in(start, end) is None

    # ---- creating ---------------------------------------------------------------------------

    def _touch_dir(self, pdir: Inode, now: int, **changes: int) -> Inode:
        return self.put(pdir.with_(mtime_ns=now, ctime_ns=now, **changes))

    def _add_entry(self, pdir: Inode, name: bytes, child: int, now: int,
                   nlink_delta: int = 0) -> Inode:
        index = pdir.next_index
        self.tree.put(dirent_key(pdir.ino, name), encode_dirent(child, index))
        self.tree.put(index_key(pdir.ino, index), encode_index(child, name))
        return self._touch_dir(pdir, now, next_index=index + 1,
                               nlink=pdir.nlink + nlink_delta)

    def _remove_entry(self, pdir: Inode, name: bytes, index: int, now: int,
                      nlink_delta: int = 0) -> Inode:
        self.tree.delete(dirent_key(pdir.ino, name))
        self.tree.delete(index_key(pdir.ino, index))
        return self._touch_dir(pdir, now, nlink=pdir.nlink + nlink_delta)

    def make(self, parent: int, name: bytes, mode: int, uid: int, gid: int,
             rdev: int = 0) -> Inode:
        """Create a directory, file, symlink, FIFO, socket or device node."""
        if name in (b".", b".."):
            raise AlreadyExists(f"{name.decode()}: file exists")
        check_name(name)
        pdir = self._dir(parent)
        if self.child(parent, name) is not None:
            raise AlreadyExists(f"{name.decode(errors='replace')}: file exists")
        if self._new_ino is None:
            raise NotPermitted("read-only tree")
        is_dir = stat.S_ISDIR(mode)
        if pdir.mode & stat.S_ISGID:
            gid = pdir.gid
            if is_dir:
                mode |= stat.S_ISGID
        now = time.time_ns()
        inode = Inode(
            ino=self._new_ino(), mode=mode, uid=uid, gid=gid, nlink=2 if is_dir else 1,
            atime_ns=now, mtime_ns=now, ctime_ns=now, btime_ns=now, rdev=rdev,
            parent=parent if is_dir else 0,
        )
        self.put(inode)
        self._add_entry(pdir, name, inode.ino, now, nlink_delta=1 if is_dir else 0)
        return inode

    def make_unlinked(self, mode: int, uid: int, gid: int) -> Inode:
        """A regular file with no name (nlink 0); the archive tracks it as an orphan."""
        if self._new_ino is None:
            raise NotPermitted("read-only tree")
        now = time.time_ns()
        return self.put(Inode(ino=self._new_ino(), mode=mode, uid=uid, gid=gid, nlink=0,
                              atime_ns=now, mtime_ns=now, ctime_ns=now, btime_ns=now))

    def symlink(self, parent: int, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        if not target:
            raise NotFound("empty symlink target")
        if len(target) >= PATH_MAX or b"\0" in target:
            raise NameTooLong("symlink target too long") if b"\0" not in target \
                else InvalidArgument("symlink target contains NUL")
        inode = self.make(parent, name, stat.S_IFLNK | 0o777, uid, gid)
        self.chunks.write(inode.ino, 0, target)
        return self.put(inode.with_(size=len(target)))

    def readlink(self, ino: int) -> bytes:
        inode = self.get(ino)
        if not inode.is_symlink:
            raise InvalidArgument("not a symbolic link")
        return self.chunks.read(ino, inode.size, 0, inode.size)

    def check_link(self, ino: int, parent: int, name: bytes) -> Inode:
        """Everything that would make link() fail on the inode or the new parent."""
        check_name(name)
        inode = self.get(ino)
        if inode.is_dir:
            raise NotPermitted("hard links to directories are not allowed")
        if inode.nlink >= LINK_MAX:
            raise TooManyLinks("too many links")
        self._dir(parent)
        return inode

    def link(self, ino: int, parent: int, name: bytes) -> Inode:
        inode = self.check_link(ino, parent, name)
        pdir = self._dir(parent)
        if self.child(parent, name) is not None:
            raise AlreadyExists(f"{name.decode(errors='replace')}: file exists")
        now = time.time_ns()
        inode = self.put(inode.with_(nlink=inode.nlink + 1, ctime_ns=now))
        self._add_entry(pdir, name, ino, now)
        return inode

    # ---- removing ---------------------------------------------------------------------------

    def unlink(self, parent: int, name: bytes) -> Inode:
        """Remove a non-directory name; return the inode with its new link count."""
        if name in (b".", b".."):
            raise IsADirectory("cannot unlink a directory")
        check_name(name)
        pdir = self._dir(parent)
        found = self.child(parent, name)
        if found is None:
            raise NotFound(f"{name.decode(errors='replace')}: no such file or directory")
        inode = self.get(found[0])
        if inode.is_dir:
            raise IsADirectory(f"{name.decode(errors='replace')}: is a directory")
        now = time.time_ns()
        self._remove_entry(pdir, name, found[1], now)
        return self.put(inode.with_(nlink=inode.nlink - 1, ctime_ns=now))

    def rmdir(self, parent: int, name: bytes) -> Inode:
        if name == b".":
            raise InvalidArgument("cannot remove '.'")
        if name == b"..":
            raise DirectoryNotEmpty("cannot remove '..'")
        check_name(name)
        pdir = self._dir(parent)
        found = self.child(parent, name)
        if found is None:
            raise NotFound(f"{name.decode(errors='replace')}: no such file or directory")
        inode = self.get(found[0])
        if not inode.is_dir:
            raise NotADirectory(f"{name.decode(errors='replace')}: not a directory")
        if not self.is_empty_dir(inode.ino):
            raise DirectoryNotEmpty(f"{name.decode(errors='replace')}: directory not empty")
        now = time.time_ns()
        self._remove_entry(pdir, name, found[1], now, nlink_delta=-1)
        return self.put(inode.with_(nlink=0, ctime_ns=now))

    def delete_inode(self, ino: int) -> None:
        """Remove every record of an inode that no name and no open handle needs."""
        self.chunks.drop_chunks(ino)
        self.xattrs.drop_all(ino)
        start, end = all_records(ino)
        self._dirty.discard(ino)
        self._cache.pop(ino, None)
        for key in [k for k, _ in self.tree.items(start, end)]:
            self.tree.delete(key)

    # ---- rename -----------------------------------------------------------------------------

    def _is_ancestor(self, ancestor: int, ino: int) -> bool:
        """Does walking up from directory ``ino`` reach ``ancestor``?"""
        seen = 0
        while True:
            if ino == ancestor:
                return True
            if ino == ROOT_INO or seen > 1 << 16:
                return False
            ino = self.get(ino).parent or ROOT_INO
            seen += 1

    def rename(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes,
               flags: int = 0) -> Inode | None:
        """POSIX rename(2) plus Linux renameat2 flags. Returns the inode that lost its last
        name by being replaced (for the archive to delete), or None."""
        for name in (old_name, new_name):
            if name in (b".", b".."):
                raise InvalidArgument("cannot rename '.' or '..'")
            check_name(name)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (
                RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise InvalidArgument("invalid rename flags")
        src_dir, dst_dir = self._dir(old_parent), self._dir(new_parent)
        src = self.child(old_parent, old_name)
        if src is None:
            raise NotFound(f"{old_name.decode(errors='replace')}: no such file or directory")
        dst = self.child(new_parent, new_name)
        src_inode = self.get(src[0])
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise NotFound(f"{new_name.decode(errors='replace')}: no such file")
            self._exchange(src_dir, old_name, src, dst_dir, new_name, dst)
            return None
        if dst is not None and flags & RENAME_NOREPLACE:
            raise AlreadyExists(f"{new_name.decode(errors='replace')}: file exists")
        if dst is not None and dst[0] == src[0]:
            return None  # both names are links to the same inode: POSIX says do nothing
        if src_inode.is_dir and self._is_ancestor(src_inode.ino, new_parent):
            raise InvalidArgument("cannot move a directory into itself")
        replaced = None
        if dst is not None:
            replaced = self._check_replace(src_inode, self.get(dst[0]), new_name)
        return self._move(src_dir, old_name, src, dst_dir, new_name, dst, src_inode, replaced)

    def _check_replace(self, src: Inode, victim: Inode, name: bytes) -> Inode:
        label = name.decode(errors="replace")
        if src.is_dir and not victim.is_dir:
            raise NotADirectory(f"{label}: not a directory")
        if victim.is_dir and not src.is_dir:
            raise IsADirectory(f"{label}: is a directory")
        if victim.is_dir and not self.is_empty_dir(victim.ino):
            raise DirectoryNotEmpty(f"{label}: directory not empty")
        return victim

    def _move(self, src_dir: Inode, old_name: bytes, src: tuple[int, int], dst_dir: Inode,
              new_name: bytes, dst: tuple[int, int] | None, inode: Inode,
              victim: Inode | None) -> Inode | None:
        now = time.time_ns()
        moving_dir = inode.is_dir
        cross = src_dir.ino != dst_dir.ino
        src_dir = self._remove_entry(src_dir, old_name, src[1], now,
                                     nlink_delta=-1 if moving_dir and cross else 0)
        if not cross:
            dst_dir = src_dir
        if victim is not None and dst is not None:
            dst_dir = self._remove_entry(dst_dir, new_name, dst[1], now,
                                         nlink_delta=-1 if victim.is_dir else 0)
            victim = self.put(victim.with_(
                nlink=0 if victim.is_dir else victim.nlink - 1, ctime_ns=now))
        self._add_entry(dst_dir, new_name, inode.ino, now,
                        nlink_delta=1 if moving_dir and cross else 0)
        self.put(self.get(inode.ino).with_(
            ctime_ns=now, parent=dst_dir.ino if moving_dir else 0))
        return victim

    def _exchange(self, src_dir: Inode, old_name: bytes, src: tuple[int, int], dst_dir: Inode,
                  new_name: bytes, dst: tuple[int, int]) -> None:
        a, b = self.get(src[0]), self.get(dst[0])
        if src_dir.ino != dst_dir.ino:
            if a.is_dir and self._is_ancestor(a.ino, dst_dir.ino):
                raise InvalidArgument("cannot move a directory into itself")
            if b.is_dir and self._is_ancestor(b.ino, src_dir.ino):
                raise InvalidArgument("cannot move a directory into itself")
        now = time.time_ns()
        self.tree.put(dirent_key(src_dir.ino, old_name), encode_dirent(b.ino, src[1]))
        self.tree.put(index_key(src_dir.ino, src[1]), encode_index(b.ino, old_name))
        self.tree.put(dirent_key(dst_dir.ino, new_name), encode_dirent(a.ino, dst[1]))
        self.tree.put(index_key(dst_dir.ino, dst[1]), encode_index(a.ino, new_name))
        if src_dir.ino != dst_dir.ino:
            delta = int(a.is_dir) - int(b.is_dir)
            self._touch_dir(self.get(src_dir.ino), now, nlink=src_dir.nlink - delta)
            self._touch_dir(self.get(dst_dir.ino), now, nlink=dst_dir.nlink + delta)
        else:
            self._touch_dir(self.get(src_dir.ino), now)
        self.put(self.get(a.ino).with_(ctime_ns=now, parent=dst_dir.ino if a.is_dir else 0))
        self.put(self.get(b.ino).with_(ctime_ns=now, parent=src_dir.ino if b.is_dir else 0))

    # ---- attributes -------------------------------------------------------------------------

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Inode:
        """chmod / chown / utimens (size changes go through the archive's truncate)."""
        inode = self.get(ino)
        now = time.time_ns()
        changes: dict[int | str, int] = {}
        if mode is not None:
            changes["mode"] = stat.S_IFMT(inode.mode) | stat.S_IMODE(mode)
        if uid is not None or gid is not None:
            new_mode = int(changes.get("mode", inode.mode))
            if not inode.is_dir:
                new_mode &= ~stat.S_ISUID
                if new_mode & stat.S_IXGRP:
                    new_mode &= ~stat.S_ISGID
            changes["mode"] = new_mode
            if uid is not None:
                changes["uid"] = uid
            if gid is not None:
                changes["gid"] = gid
        if atime_ns is not None:
            changes["atime_ns"] = atime_ns
        if mtime_ns is not None:
            changes["mtime_ns"] = mtime_ns
        changes["ctime_ns"] = ctime_ns if ctime_ns is not None else now
        return self.put(inode.with_(**{str(k): v for k, v in changes.items()}))

    # ---- extended attributes ------------------------------------------------------------------

    def getxattr(self, ino: int, name: bytes) -> bytes:
        self.get(ino)
        value = self.tree.get(xattr_key(ino, name))
        if value is None:
            raise NoAttribute(f"no attribute {name.decode(errors='replace')}")
        return self.xattrs.value(ino, name, decode_xattr(value))

    def listxattr(self, ino: int) -> list[bytes]:
        self.get(ino)
        start, end = xattr_range(ino)
        return [bytes(k[9:]) for k, _ in self.tree.items(start, end)]

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        if not name or len(name) > XATTR_NAME_MAX or b"\0" in name:
            raise RangeError("invalid attribute name") if name and b"\0" not in name \
                else InvalidArgument("invalid attribute name")
        if len(value) > XATTR_VALUE_MAX:
            raise RangeError(f"attribute value larger than {XATTR_VALUE_MAX} bytes")
        inode = self.get(ino)
        exists = self.tree.get(xattr_key(ino, name)) is not None
        if flags & XATTR_CREATE and exists:
            raise AlreadyExists("attribute exists")
        if flags & XATTR_REPLACE and not exists:
            raise NoAttribute("no such attribute")
        self.xattrs.store(ino, name, value)
        self.put(inode.with_(ctime_ns=time.time_ns()))

    def removexattr(self, ino: int, name: bytes) -> None:
        inode = self.get(ino)
        if not self.xattrs.remove(ino, name):
            raise NoAttribute(f"no attribute {name.decode(errors='replace')}")
        self.put(inode.with_(ctime_ns=time.time_ns()))
