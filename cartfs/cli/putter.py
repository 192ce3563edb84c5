"""Copy local files and trees into an archive, like ``cp -a``.

Theory of operation
-------------------
Every regular file is written as an *unnamed* inode (``create_unlinked``): its data streams
in 1 MiB pieces (holes of sparse files and all-zero pieces are skipped, so they stay holes),
then its times and extended attributes are set, and only then does ``link(...,
replace=True)`` give it its name — atomically replacing an older file of that name. The
archive commits in groups (by size and time), never per file. If the process dies, the
last commit holds each file either complete or not at all (an unnamed inode is reclaimed at
the next writable open); if it is interrupted (SIGINT/SIGTERM), the signal is honoured
between pieces, the unfinished file is dropped and everything finished is committed.

Directories are created on the way down and get their mode, owner and times on the way up,
after their contents (adding entries changes a directory's mtime). Hard links inside the
source (same device and inode) become hard links in the archive. A failure on one entry
(unreadable file, name clash with a directory) is reported and the copy goes on, as cp does;
a failure of the archive itself (disk full, damage) stops it.

The walk is iterative, so a very deep tree cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from cartfs.cli.common import DeferredInterrupts, Progress, core_reason
from cartfs.cli.localfs import (
    PIECE,
    data_ranges,
    is_zero,
    may_chown,
    open_source,
    pieces,
    read_xattrs,
)
from cartfs.core.archive import Archive
from cartfs.core.catalog import Inode
from cartfs.core.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotFound,
    NotPermitted,
    RangeError,
    TooManyLinks,
)

log = logging.getLogger("cartfs.cli")

# Errors about one entry: report it and go on with the rest.
ENTRY_ERRORS = (AlreadyExists, InvalidArgument, IsADirectory, NameTooLong, NotADirectory,
                NotFound, NotPermitted, RangeError, TooManyLinks)


@dataclass
class _Copy:
    local: bytes
    parent: int
    name: bytes
    dest: bytes  # the archive path, for messages


@dataclass
class _Finish:
    ino: int
    st: os.stat_result
    dest: bytes


@dataclass
class Putter:
    """One ``put``: copies sources into ``archive``; ``errors`` counts reported failures."""

    archive: Archive
    stop: DeferredInterrupts
    progress: Progress
    exclude: list[str] = field(default_factory=list)
    report: Callable[[str], None] = print
    errors: int = 0
    files: int = 0
    _links: dict[tuple[int, int], int] = field(default_factory=dict)
    _owner: bool = field(default_factory=may_chown)
    _self: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.archive.path is not None:  # never copy the archive into itself
            st = os.stat(self.archive.path)
            self._self = (st.st_dev, st.st_ino)

    # ---- public -------------------------------------------------------------------------------

    def copy(self, local: bytes, parent: int, name: bytes, dest: bytes) -> None:
        """Copy ``local`` (not following it if it is a symlink) to ``parent/name``."""
        self._run([_Copy(local, parent, name, dest)])

    def merge(self, local: bytes, directory: Inode, dest: bytes) -> None:
        """Copy the contents of local directory ``local`` into archive ``directory``."""
        try:
            st = os.lstat(local)
        except OSError as exc:
            self._fail(local, exc.strerror or str(exc))
            return
        stack: list[_Copy | _Finish] = [_Finish(directory.ino, st, dest)]
        self._push_children(stack, local, directory.ino, dest)
        self._run(stack)

    # ---- the walk -----------------------------------------------------------------------------

    def _run(self, stack: list[_Copy | _Finish]) -> None:
        while stack:
            self.stop.check()
            item = stack.pop()
            try:
                if isinstance(item, _Finish):
                    self._finish_dir(item)
                else:
                    self._copy_entry(item, stack)
            except OSError as exc:
                where = item.local if isinstance(item, _Copy) else item.dest
                self._fail(where, exc.strerror or str(exc))
            except ENTRY_ERRORS as exc:
                self._fail(item.dest, core_reason(item.dest, exc))

    def _fail(self, where: bytes, reason: str) -> None:
        self.errors += 1
        self.report(f"cartfs: {os.fsdecode(where)}: {reason}")

    def _copy_entry(self, item: _Copy, stack: list[_Copy | _Finish]) -> None:
        st = os.lstat(item.local)
        if (st.st_dev, st.st_ino) == self._self:
            self.report(f"cartfs: {os.fsdecode(item.local)}: skipped (it is the archive)")
            return
        log.info("put %s", os.fsdecode(item.dest))
        if stat.S_ISDIR(st.st_mode):
            ino = self._make_dir(item, st)
            stack.append(_Finish(ino, st, item.dest))
            self._push_children(stack, item.local, ino, item.dest)
        elif stat.S_ISREG(st.st_mode):
            self._put_file(item, st)
        elif stat.S_ISLNK(st.st_mode):
            self._put_symlink(item, st)
        else:
            self._put_special(item, st)

    def _push_children(self, stack: list[_Copy | _Finish], local: bytes, ino: int,
                       dest: bytes) -> None:
        with os.scandir(local) as entries:
            names = sorted(e.name for e in entries)
        for name in reversed(names):
            if self._excluded(name):
                continue
            stack.append(_Copy(os.path.join(local, name), ino, name,
                               dest.rstrip(b"/") + b"/" + name))

    def _excluded(self, name: bytes) -> bool:
        text = os.fsdecode(name)
        return any(fnmatch.fnmatchcase(text, pattern) for pattern in self.exclude)

    # ---- entries ------------------------------------------------------------------------------

    def _ids(self, st: os.stat_result) -> tuple[int | None, int | None]:
        return (st.st_uid, st.st_gid) if self._owner else (None, None)

    def _existing(self, parent: int, name: bytes) -> Inode | None:
        try:
            return self.archive.lookup(parent, name)
        except NotFound:
            return None

    def _make_dir(self, item: _Copy, st: os.stat_result) -> int:
        existing = self._existing(item.parent, item.name)
        if existing is not None:
            if not existing.is_dir:
                raise NotADirectory("cannot overwrite non-directory with directory")
            ino = existing.ino
        else:
            uid, gid = self._ids(st)
            ino = self.archive.mkdir(item.parent, item.name, stat.S_IMODE(st.st_mode),
                                     uid, gid).ino
        self._copy_xattrs(item.local, ino)
        return ino

    def _finish_dir(self, item: _Finish) -> None:
        """A directory's own attributes, once its entries are in place."""
        uid, gid = self._ids(item.st)
        self.archive.setattr(item.ino, mode=stat.S_IMODE(item.st.st_mode), uid=uid, gid=gid,
                             atime_ns=item.st.st_atime_ns, mtime_ns=item.st.st_mtime_ns)

    def _put_file(self, item: _Copy, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            self._clear_way(item)
            self.archive.link(self._links[key], item.parent, item.name, replace=True)
            return
        fd = open_source(item.local)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "changed while being copied")
            uid, gid = self._ids(st)
            ino = self.archive.create_unlinked(stat.S_IMODE(st.st_mode), uid, gid).ino
            try:
                self._clear_way(item)
                size = self._copy_data(fd, ino, st.st_size)
                self._copy_xattrs(item.local, ino)
                self.archive.setattr(ino, size=size, atime_ns=st.st_atime_ns,
                                     mtime_ns=st.st_mtime_ns)
                self.stop.check()
                self.archive.link(ino, item.parent, item.name, replace=True)
            finally:
                self.archive.unpin(ino)  # drops the inode unless link() named it
        finally:
            os.close(fd)
        self.files += 1
        if st.st_nlink > 1:
            self._links[key] = ino

    def _copy_data(self, fd: int, ino: int, size: int) -> int:
        """Stream the data runs of ``fd`` into ``ino``; returns the size actually seen:
        smaller if the file shrank while being read, larger if it grew or its size lied
        (``/proc`` and ``/sys`` files say 0), as cp reads to the end of file too."""
        for start, end in data_ranges(fd, size):
            for offset, length in pieces(start, end):
                got = self._copy_piece(fd, ino, offset, length)
                if got < length:
                    return offset + got
        offset = size
        while (got := self._copy_piece(fd, ino, offset, PIECE)) == PIECE:
            offset += PIECE
        return offset + got

    def _copy_piece(self, fd: int, ino: int, offset: int, length: int) -> int:
        """Copy one piece; returns the bytes read (fewer than asked: the end of the file)."""
        self.stop.check()
        data = os.pread(fd, length, offset)
        if data and not is_zero(data):
            self.archive.write(ino, offset, data)
        self.progress.advance(len(data))
        return len(data)

    def _clear_way(self, item: _Copy) -> None:
        """Refuse to put a non-directory where a directory is (replace=True would not)."""
        existing = self._existing(item.parent, item.name)
        if existing is not None and existing.is_dir:
            raise IsADirectory("cannot overwrite directory with non-directory")

    def _replace_plain(self, item: _Copy) -> None:
        """Make room for a symlink or special file: they cannot be linked in over a name."""
        self._clear_way(item)
        if self._existing(item.parent, item.name) is not None:
            self.archive.unlink(item.parent, item.name)

    def _put_symlink(self, item: _Copy, st: os.stat_result) -> None:
        target = os.readlink(item.local)
        self._replace_plain(item)
        uid, gid = self._ids(st)
        ino = self.archive.symlink(item.parent, item.name, target, uid, gid).ino
        self.archive.setattr(ino, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)

    def _put_special(self, item: _Copy, st: os.stat_result) -> None:
        """FIFOs, sockets and device nodes: recreated by type, mode and device number."""
        self._replace_plain(item)
        uid, gid = self._ids(st)
        inode = self.archive.mknod(item.parent, item.name, st.st_mode, st.st_rdev, uid, gid)
        self._copy_xattrs(item.local, inode.ino)
        if uid is not None and (inode.uid, inode.gid) != (uid, gid):
            self.archive.setattr(inode.ino, uid=uid, gid=gid)
        self.archive.setattr(inode.ino, mode=stat.S_IMODE(st.st_mode),
                             atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)

    def _copy_xattrs(self, local: bytes, ino: int) -> None:
        for name, value in read_xattrs(local):
            self.archive.setxattr(ino, name, value)


def source_bytes(paths: list[bytes], exclude: list[str]) -> int:
    """Bytes of regular files under ``paths`` (each hard-linked file once), for the
    progress bar; unreadable entries are left for the copy itself to report."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = list(paths)
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                with os.scandir(path) as entries:
                    stack.extend(e.path for e in entries if not any(
                        fnmatch.fnmatchcase(os.fsdecode(e.name), p) for p in exclude))
            elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        except OSError:
            continue
    return total
