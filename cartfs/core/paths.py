"""Path helpers for scripts: ``archive.write_file("/docs/a.txt", b"...")`` and friends.

Built only on the inode-level methods, so they follow exactly the same rules: paths inside an
archive are absolute (a relative path is taken from the root), ``..`` follows the directory's
parent, and symbolic links in the middle of a path are followed (at most 40, then ELOOP), as
the kernel would.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .catalog import ROOT_INO, Inode
from .errors import (
    AlreadyExists,
    CartError,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
)

if TYPE_CHECKING:
    from .namespace import DirEntry

MAX_SYMLINK_HOPS = 40


class TooManySymlinks(CartError):
    """A path walks through more than 40 symbolic links."""

    errno = 40  # ELOOP


def split_path(path: str | bytes) -> list[bytes]:
    """Components of an archive path, without empty ones and '.'."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise InvalidArgument("path contains a NUL byte")
    return [part for part in raw.split(b"/") if part and part != b"."]


def parent_and_name(path: str | bytes) -> tuple[list[bytes], bytes]:
    parts = split_path(path)
    if not parts:
        raise InvalidArgument("the root directory has no name")
    return parts[:-1], parts[-1]


class PathHelpers:
    """Mixed into Archive; every method takes archive paths like ``/docs/a.txt``."""

    if TYPE_CHECKING:  # the inode-level API these helpers are built on (Archive's methods)
        def getattr(self, ino: int) -> Inode: ...
        def lookup(self, parent: int, name: str | bytes) -> Inode: ...
        def readlink(self, ino: int) -> bytes: ...
        def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30
                    ) -> list[DirEntry]: ...
        def read(self, ino: int, offset: int, size: int) -> bytes: ...
        def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview
                  ) -> int: ...
        def truncate(self, ino: int, size: int) -> Inode: ...
        def create_file(self, parent: int, name: str | bytes, mode: int = 0o644,
                        uid: int | None = None, gid: int | None = None) -> Inode: ...
        def mkdir(self, parent: int, name: str | bytes, mode: int = 0o755,
                  uid: int | None = None, gid: int | None = None) -> Inode: ...
        def unlink(self, parent: int, name: str | bytes) -> None: ...
        def rmdir(self, parent: int, name: str | bytes) -> None: ...
        def rename(self, old_parent: int, old_name: str | bytes, new_parent: int,
                   new_name: str | bytes, flags: int = 0) -> None: ...
        def symlink(self, parent: int, name: str | bytes, target: str | bytes,
                    uid: int | None = None, gid: int | None = None) -> Inode: ...
        def link(self, ino: int, new_parent: int, new_name: str | bytes) -> Inode: ...

    def _resolve_parts(self, parts: list[bytes], *, follow: bool,
                       hops: int = 0) -> Inode:
        inode = self.getattr(ROOT_INO)
        for i, part in enumerate(parts):
            if not inode.is_dir:
                raise NotADirectory(f"{os.fsdecode(b'/'.join(parts[:i]))}: not a directory")
            child = self.lookup(inode.ino, part)
            last = i == len(parts) - 1
            if child.is_symlink and (follow or not last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise TooManySymlinks("too many levels of symbolic links")
                target = self.readlink(child.ino)
                base = [] if target.startswith(b"/") else parts[:i]  # resolves to `inode`
                child = self._resolve_parts(base + split_path(target) + parts[i + 1:],
                                            follow=follow, hops=hops)
                return child
            inode = child
        return inode

    def realpath(self, path: str | bytes, *, follow: bool = True,
                 missing_ok: bool = False) -> str:
        """The path with every symlink resolved (the last one only if ``follow``) and ``..``
        applied to the real parent — the path an access check must judge, since a symlink
        may point anywhere. ``missing_ok`` allows a missing last component (for creates)."""
        root = self.getattr(ROOT_INO)
        names: list[bytes] = []
        inode = root
        pending = split_path(path)
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == b"..":
                if names:
                    names.pop()
                    inode = self.getattr(inode.parent or ROOT_INO)
                continue
            if not inode.is_dir:
                raise NotADirectory(f"{os.fsdecode(b'/' + b'/'.join(names))}: not a directory")
            try:
                child = self.lookup(inode.ino, part)
            except NotFound:
                if missing_ok and not pending:
                    return os.fsdecode(b"/" + b"/".join([*names, part]))
                raise
            if child.is_symlink and (follow or pending):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise TooManySymlinks("too many levels of symbolic links")
                target = self.readlink(child.ino)
                if target.startswith(b"/"):
                    names, inode = [], root
                pending = split_path(target) + pending
                continue
            names.append(part)
            inode = child
        return os.fsdecode(b"/" + b"/".join(names))

    def resolve(self, path: str | bytes, *, follow: bool = True) -> Inode:
        """The inode a path names (following a final symlink unless follow=False)."""
        return self._resolve_parts(split_path(path), follow=follow)

    def stat(self, path: str | bytes) -> Inode:
        return self.resolve(path)

    def lstat(self, path: str | bytes) -> Inode:
        return self.resolve(path, follow=False)

    def exists(self, path: str | bytes) -> bool:
        try:
            self.resolve(path)
        except (NotFound, NotADirectory):
            return False
        return True

    def _parent_dir(self, path: str | bytes) -> tuple[Inode, bytes]:
        parents, name = parent_and_name(path)
        parent = self._resolve_parts(parents, follow=True)
        if not parent.is_dir:
            raise NotADirectory(f"{os.fsdecode(b'/'.join(parents))}: not a directory")
        return parent, name

    def scandir(self, path: str | bytes = "/") -> list[tuple[str, Inode]]:
        """(name, attributes) of every entry of a directory, in creation order."""
        directory = self.resolve(path)
        if not directory.is_dir:
            raise NotADirectory(f"{os.fsdecode(path)}: not a directory")
        return [(os.fsdecode(e.name), self.getattr(e.ino)) for e in self.readdir(directory.ino)]

    def listdir(self, path: str | bytes = "/") -> list[str]:
        return sorted(name for name, _ in self.scandir(path))

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """Like os.walk (top-down; does not follow symlinked directories). Iterative, so a
        tree thousands of levels deep walks like a flat one."""
        stack = [top]
        while stack:
            path = stack.pop()
            dirs: list[str] = []
            files: list[str] = []
            for name, inode in self.scandir(path):
                (dirs if inode.is_dir else files).append(name)
            dirs.sort()
            files.sort()
            yield path, dirs, files  # the caller may prune dirs, as with os.walk
            stack.extend(path.rstrip("/") + "/" + name for name in reversed(dirs))

    def read_file(self, path: str | bytes) -> bytes:
        inode = self.resolve(path)
        if inode.is_dir:
            raise IsADirectory(f"{os.fsdecode(path)}: is a directory")
        return self.read(inode.ino, 0, inode.size)

    def write_file(self, path: str | bytes, data: bytes, mode: int = 0o644, *,
                   parents: bool = False) -> Inode:
        """Create or replace a file's whole content (keeping the inode if it exists)."""
        if parents:
            parent_parts, _ = parent_and_name(path)
            self.make_dir(b"/" + b"/".join(parent_parts), parents=True, exist_ok=True)
        parent, name = self._parent_dir(path)
        try:
            inode = self.create_file(parent.ino, name, mode)
        except AlreadyExists:
            inode = self.resolve(path)
            if inode.is_dir:
                raise IsADirectory(f"{os.fsdecode(path)}: is a directory") from None
            self.truncate(inode.ino, 0)
        if data:
            self.write(inode.ino, 0, data)
        return self.getattr(inode.ino)

    def make_dir(self, path: str | bytes, mode: int = 0o755, *,
                 parents: bool = False, exist_ok: bool = False) -> Inode:
        """mkdir (``parents=True``: mkdir -p)."""
        parts = split_path(path)
        if not parts:
            if exist_ok or parents:
                return self.getattr(ROOT_INO)
            raise AlreadyExists("/: file exists")
        if parents:
            inode = self.getattr(ROOT_INO)
            for i, part in enumerate(parts):
                try:
                    found = self.lookup(inode.ino, part)
                except NotFound:
                    inode = self.mkdir(inode.ino, part, mode)
                    continue
                if found.is_symlink:  # mkdir -p follows links to directories
                    found = self._resolve_parts(parts[:i + 1], follow=True)
                if not found.is_dir:
                    raise NotADirectory(f"{os.fsdecode(part)}: not a directory")
                inode = found
            return inode
        parent, name = self._parent_dir(path)
        try:
            return self.mkdir(parent.ino, name, mode)
        except AlreadyExists:
            existing = self.resolve(path)
            if exist_ok and existing.is_dir:
                return existing
            raise

    def remove(self, path: str | bytes, *, recursive: bool = False) -> None:
        """rm / rmdir / rm -r (never follows a final symlink)."""
        parent, name = self._parent_dir(path)
        inode = self.lookup(parent.ino, name)
        if not inode.is_dir:
            self.unlink(parent.ino, name)
            return
        if recursive:
            self._remove_tree(inode.ino)
        self.rmdir(parent.ino, name)

    def _remove_tree(self, dir_ino: int) -> None:
        """Empty a directory, depth first, without recursion (any depth)."""
        stack: list[tuple[int, int, bytes]] = [(dir_ino, 0, b"")]  # (dir, parent, name)
        while stack:
            ino, parent, name = stack[-1]
            subdirs = []
            for entry in self.readdir(ino):
                if self.getattr(entry.ino).is_dir:
                    subdirs.append((entry.ino, ino, entry.name))
                else:
                    self.unlink(ino, entry.name)
            if subdirs:
                stack.extend(subdirs)
                continue
            stack.pop()
            if stack:  # the top directory itself is the caller's to remove
                self.rmdir(parent, name)

    def move(self, src: str | bytes, dst: str | bytes, flags: int = 0) -> None:
        """mv: into ``dst`` if it is an existing directory (keeping the name), else to
        ``dst`` (replacing a file there, as rename(2) does)."""
        src_parent, src_name = self._parent_dir(src)
        try:
            target: Inode | None = self.resolve(dst)
        except NotFound:
            target = None
        if target is not None and target.is_dir and split_path(dst) != split_path(src):
            self.rename(src_parent.ino, src_name, target.ino, src_name, flags)
            return
        dst_parent, dst_name = self._parent_dir(dst)
        self.rename(src_parent.ino, src_name, dst_parent.ino, dst_name, flags)

    def make_symlink(self, target: str | bytes, path: str | bytes) -> Inode:
        parent, name = self._parent_dir(path)
        return self.symlink(parent.ino, name, target)

    def make_hardlink(self, existing: str | bytes, path: str | bytes) -> Inode:
        inode = self.resolve(existing, follow=False)
        parent, name = self._parent_dir(path)
        return self.link(inode.ino, parent.ino, name)

    def file_type(self, path: str | bytes) -> str:
        """'dir', 'file', 'symlink', 'fifo', 'socket', 'char' or 'block'."""
        mode = self.lstat(path).mode
        for test, label in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"),
                            (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                            (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "char")):
            if test(mode):
                return label
        return "block"
