"""Copy files and trees out of an archive onto the local disk, like ``cp -a``.

Each regular file, symlink or special file is built under a temporary name beside its
destination and renamed over it, so an existing file is replaced atomically and an
interrupted ``get`` never leaves a half-written file under the real name. File data streams
in 1 MiB pieces; all-zero pieces become holes (the result is sparse where the source was).
Directories are created on the way down and get their mode, owner and times on the way up,
after their contents. Archive inodes with several names become hard links again. Owners are
restored only when running as root (as cp -a does).

A failure on one entry is reported and the copy goes on; the command then exits 1.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from cartfs.cli.common import Progress, core_reason
from cartfs.cli.localfs import (
    PIECE,
    is_zero,
    may_chown,
    remove_quietly,
    temp_name,
)
from cartfs.core.archive import Archive
from cartfs.core.catalog import Inode
from cartfs.core.errors import CartError

log = logging.getLogger("cartfs.cli")


@dataclass
class _Copy:
    ino: int
    src: bytes  # archive path, for messages
    local: bytes


@dataclass
class _Finish:
    inode: Inode
    src: bytes
    local: bytes


@dataclass
class Getter:
    """One ``get``: copies archive entries to local paths; ``errors`` counts failures."""

    archive: Archive
    progress: Progress
    report: Callable[[str], None] = print
    errors: int = 0
    files: int = 0
    _links: dict[int, bytes] = field(default_factory=dict)
    _owner: bool = field(default_factory=may_chown)

    def copy(self, ino: int, src: bytes, local: bytes) -> None:
        """Copy archive inode ``ino`` (named ``src``) to ``local``."""
        self._run([_Copy(ino, src, local)])

    def _run(self, stack: list[_Copy | _Finish]) -> None:
        while stack:
            item = stack.pop()
            try:
                if isinstance(item, _Finish):
                    self._set_attrs(item.local, item.inode)
                else:
                    self._copy_entry(item, stack)
            except OSError as exc:
                self._fail(os.fsdecode(item.local), exc.strerror or str(exc))
            except CartError as exc:  # damage reads as an error for that file, never as data
                self._fail(os.fsdecode(item.src), core_reason(item.src, exc))

    def _fail(self, where: str, reason: str) -> None:
        self.errors += 1
        self.report(f"cartfs: {where}: {reason}")

    def _copy_entry(self, item: _Copy, stack: list[_Copy | _Finish]) -> None:
        inode = self.archive.getattr(item.ino)
        log.info("get %s", os.fsdecode(item.src))
        try:
            existing: os.stat_result | None = os.lstat(item.local)
        except FileNotFoundError:
            existing = None
        if inode.is_dir:
            if existing is None:
                os.mkdir(item.local, 0o700)  # its real mode once it is filled
            elif not stat.S_ISDIR(existing.st_mode):
                raise OSError(errno.EEXIST, "cannot overwrite non-directory with directory")
            self._copy_xattrs(item.local, inode.ino, item.local)
            stack.append(_Finish(inode, item.src, item.local))
            for entry in reversed(sorted(self.archive.readdir(inode.ino),
                                         key=lambda e: e.name)):
                stack.append(_Copy(entry.ino, item.src.rstrip(b"/") + b"/" + entry.name,
                                   os.path.join(item.local, entry.name)))
            return
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OSError(errno.EISDIR, "cannot overwrite directory with non-directory")
        self._replace(item.local, inode)

    def _replace(self, local: bytes, inode: Inode) -> None:
        """Build the entry under a temporary name, then rename it over ``local``."""
        tmp = temp_name(local)
        try:
            if inode.nlink > 1 and inode.ino in self._links:
                os.link(self._links[inode.ino], tmp)
            else:
                self._build(tmp, inode, local)
            os.replace(tmp, local)
        finally:
            if os.path.lexists(tmp):
                remove_quietly(tmp)
        if inode.nlink > 1:
            self._links.setdefault(inode.ino, local)

    def _build(self, tmp: bytes, inode: Inode, shown: bytes) -> None:
        if inode.is_reg:
            self._write_file(tmp, inode, shown)
            self.files += 1
            return
        if inode.is_symlink:
            os.symlink(self.archive.readlink(inode.ino), tmp)
        elif stat.S_ISFIFO(inode.mode):
            os.mkfifo(tmp, 0o600)
        else:
            os.mknod(tmp, stat.S_IFMT(inode.mode) | 0o600, inode.rdev)
        self._copy_xattrs(tmp, inode.ino, shown)
        self._set_attrs(tmp, inode)

    def _write_file(self, tmp: bytes, inode: Inode, shown: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            for offset in range(0, inode.size, PIECE):
                data = self.archive.read(inode.ino, offset, PIECE)
                if not is_zero(data):
                    os.pwrite(fd, data, offset)
                self.progress.advance(len(data))
            os.ftruncate(fd, inode.size)
        finally:
            os.close(fd)
        self._copy_xattrs(tmp, inode.ino, shown)
        self._set_attrs(tmp, inode)

    def _set_attrs(self, local: bytes, inode: Inode) -> None:
        """Owner (as root), then mode (chown clears set-user-ID), then times."""
        if self._owner:
            os.chown(local, inode.uid, inode.gid, follow_symlinks=False)
        if not inode.is_symlink:
            os.chmod(local, stat.S_IMODE(inode.mode))
        os.utime(local, ns=(inode.atime_ns, inode.mtime_ns), follow_symlinks=False)

    def _copy_xattrs(self, local: bytes, ino: int, shown: bytes) -> None:
        for name in self.archive.listxattr(ino):
            value = self.archive.getxattr(ino, name)
            try:
                os.setxattr(local, name, value, follow_symlinks=False)
            except OSError as exc:
                self._fail(os.fsdecode(shown), f"cannot set attribute {os.fsdecode(name)}: "
                           f"{exc.strerror}")


def archive_bytes(archive: Archive, roots: list[int]) -> int:
    """Bytes of regular files below ``roots`` (each inode once), for the progress bar."""
    total = 0
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        ino = stack.pop()
        if ino in seen:
            continue
        seen.add(ino)
        inode = archive.getattr(ino)
        if inode.is_dir:
            stack.extend(e.ino for e in archive.readdir(ino))
        elif inode.is_reg:
            total += inode.size
    return total

