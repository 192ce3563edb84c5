"""Read-only views of snapshots, and the diff between two trees.

A :class:`SnapshotView` offers the read half of the Archive API (lookup, getattr, readdir,
read, readlink, xattrs, and the path helpers) over a snapshot's pinned root, sharing the
archive's page cache. Every call first checks, under the archive lock, that the snapshot still
exists: a deleted snapshot's pages may be reused, so a stale view fails cleanly with NotFound
instead of reading someone else's data. Writes raise ReadOnly (EROFS).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from .catalog import ROOT_INO, Inode, encode_inode
from .errors import NotFound, ReadOnly
from .filedata import ChunkStore
from .namespace import DirEntry, Namespace
from .paths import PathHelpers
from .reach import catalog_tree
from .snapshots import SnapshotInfo, get_snapshot
from .xattrs import XattrStore

if TYPE_CHECKING:
    from .archive import Archive

Name = str | bytes
T = TypeVar("T")


class SnapshotView(PathHelpers):
    """A snapshot as a read-only tree; obtain one with ``archive.snapshot(name)``."""

    root_ino = ROOT_INO

    def __init__(self, archive: Archive, info: SnapshotInfo) -> None:
        self.archive = archive
        self._bind(info)

    def _bind(self, info: SnapshotInfo) -> None:
        """Read the tree at ``info.root`` (again, after a vacuum moved it)."""
        self.info = info
        archive, sb = self.archive, self.archive.superblock
        tree = catalog_tree(archive._pager, archive._clock, info.root)
        chunks = ChunkStore(archive._pager, tree, None, archive._clock, sb.chunk_size,
                            sb.codec, sb.codec_level)
        self._ns = Namespace(tree, chunks, XattrStore(archive._pager, tree, None,
                                                      archive._clock))

    @property
    def name(self) -> str:
        return self.info.name

    def _run(self, call: Callable[[], T]) -> T:
        with self.archive._lock:
            if self.archive.closed:
                raise NotFound("archive is closed")
            current = get_snapshot(self.archive, self.info.name)
            if current.id != self.info.id:
                raise NotFound(f"snapshot {self.info.name!r} no longer exists")
            if current.root != self.info.root:  # vacuum moved it; the old pages may be reused
                self._bind(current)
            return call()

    def lookup(self, parent: int, name: Name) -> Inode:
        return self._run(lambda: self._ns.lookup(parent, os.fsencode(name)))

    def getattr(self, ino: int) -> Inode:
        return self._run(lambda: self._ns.get(ino))

    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]:
        return self._run(lambda: self._ns.readdir(ino, after, limit))

    def read(self, ino: int, offset: int, size: int) -> bytes:
        def call() -> bytes:
            inode = self._ns.get(ino)
            return self._ns.chunks.read(ino, inode.size, offset, size)
        return self._run(call)

    def readlink(self, ino: int) -> bytes:
        return self._run(lambda: self._ns.readlink(ino))

    def getxattr(self, ino: int, name: Name) -> bytes:
        return self._run(lambda: self._ns.getxattr(ino, os.fsencode(name)))

    def listxattr(self, ino: int) -> list[bytes]:
        return self._run(lambda: self._ns.listxattr(ino))

    def _refuse(self, *args: object, **kwargs: object) -> Inode:
        raise ReadOnly(f"snapshot {self.info.name!r} is read-only")

    write = truncate = create_file = mkdir = _refuse  # type: ignore[assignment]
    unlink = rmdir = rename = symlink = link = _refuse  # type: ignore[assignment]


class ReadTree(Protocol):
    """What diff needs from a tree: the live Archive and a SnapshotView both qualify."""

    def getattr(self, ino: int) -> Inode: ...

    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]: ...


@dataclass(frozen=True)
class Change:
    """One path that differs: 'added', 'removed' or 'changed' (content or metadata)."""

    kind: str
    path: str


def _same(a: Inode, b: Inode) -> bool:
    """The same inode with equal records except access time (every write or metadata
    change moves ctime). An entry whose inode number differs was replaced (removed and made
    again, or renamed over), so it is never the same, whatever its attributes."""
    return a.ino == b.ino and \
        encode_inode(a.with_(atime_ns=0)) == encode_inode(b.with_(atime_ns=0))


def diff_trees(old: ReadTree, new: ReadTree) -> list[Change]:
    """Paths added, removed and changed going from ``old`` to ``new``, in path order. The
    root directory itself is reported as ``/`` when its own attributes changed."""
    changes: list[Change] = []
    if not _same(old.getattr(ROOT_INO), new.getattr(ROOT_INO)):
        changes.append(Change("changed", "/"))
    _diff_dir(old, new, ROOT_INO, ROOT_INO, "", changes)
    return changes


def _entries(tree: ReadTree, ino: int) -> dict[bytes, int]:
    return {e.name: e.ino for e in tree.readdir(ino)}


def _diff_dir(old: ReadTree, new: ReadTree, old_ino: int, new_ino: int, prefix: str,
              changes: list[Change]) -> None:
    """Entries are matched by name. One of the same type on both sides is "changed" when
    its inode or its attributes differ (a directory removed and made again, like a file
    replaced by another, is one changed path; its entries are then compared by name); a
    type change is "removed" then "added", each with everything below it."""
    before, after = _entries(old, old_ino), _entries(new, new_ino)
    for name in sorted(before.keys() | after.keys()):
        path = f"{prefix}/{os.fsdecode(name)}"
        if name not in after:
            _report_all(old, before[name], path, "removed", changes)
        elif name not in before:
            _report_all(new, after[name], path, "added", changes)
        else:
            a, b = old.getattr(before[name]), new.getattr(after[name])
            if a.is_dir != b.is_dir:
                _report_all(old, a.ino, path, "removed", changes)
                _report_all(new, b.ino, path, "added", changes)
                continue
            if not _same(a, b):
                changes.append(Change("changed", path))
            if a.is_dir:
                _diff_dir(old, new, a.ino, b.ino, path, changes)


def _report_all(tree: ReadTree, ino: int, path: str, kind: str,
                changes: list[Change]) -> None:
    changes.append(Change(kind, path))
    inode = tree.getattr(ino)
    if inode.is_dir:
        for entry in sorted(tree.readdir(ino), key=lambda e: e.name):
            _report_all(tree, entry.ino, f"{path}/{os.fsdecode(entry.name)}", kind, changes)
