"""The archive as one principal sees it: every path-level call checked against IAM first.

``archive.as_principal("alice", context)`` returns a :class:`GuardedArchive`. Each method
names the action it needs (cartfs:Read, Write, Create, Delete, List, Snapshot, Admin) and
checks it on the *real* path — symlinks resolved and ``..`` applied to the real parent — so a
link inside Alice's folder that points into Bob's cannot carry her past a policy. Moving or
removing a directory checks every path beneath it, not just its top. The S3 server and the
FUSE mount go through this same door.
"""

from __future__ import annotations

import functools
import stat as stat_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar, cast

from .catalog import Inode
from .errors import NotFound
from .iam import archive_arn
from .iamstore import IamStore

if TYPE_CHECKING:
    from .archive import Archive
    from .snapshots import SnapshotInfo

READ, WRITE, CREATE, DELETE = "cartfs:Read", "cartfs:Write", "cartfs:Create", "cartfs:Delete"
LIST, SNAPSHOT, ADMIN = "cartfs:List", "cartfs:Snapshot", "cartfs:Admin"
Context = Mapping[str, str | Sequence[str]]
P = ParamSpec("P")
R = TypeVar("R")


def _atomic(method: Callable[Concatenate[GuardedArchive, P], R]
            ) -> Callable[Concatenate[GuardedArchive, P], R]:
    """Resolve, check and act under one hold of the archive's (re-entrant) lock, so no other
    thread can swap a directory for a symlink between the check and the act."""
    @functools.wraps(method)
    def wrapper(self: GuardedArchive, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.archive._lock:
            return method(self, *args, **kwargs)
    return cast("Callable[Concatenate[GuardedArchive, P], R]", wrapper)


class GuardedArchive:
    """Path-level Archive operations on behalf of ``user``; PermissionDenied when refused."""

    def __init__(self, archive: Archive, iam: IamStore, user: str,
                 context: Context | None = None) -> None:
        self.archive = archive
        self.iam = iam
        self.user = user
        self.context = dict(context or {})

    def check(self, action: str, path: str) -> None:
        """Raise PermissionDenied unless ``user`` may do ``action`` on the (real) path."""
        with self.archive._lock:
            self.iam.enforce(self.user, action, archive_arn(path), self.context)

    def _real(self, path: str | bytes, *, follow: bool = True, missing_ok: bool = False) -> str:
        return self.archive.realpath(path, follow=follow, missing_ok=missing_ok)

    # ---- reading ----------------------------------------------------------------------------

    @_atomic
    def stat(self, path: str) -> Inode:
        real = self._real(path)
        self.check(READ, real)
        return self.archive.stat(real)

    @_atomic
    def lstat(self, path: str) -> Inode:
        real = self._real(path, follow=False)
        self.check(READ, real)
        return self.archive.lstat(real)

    @_atomic
    def read_file(self, path: str) -> bytes:
        real = self._real(path)
        self.check(READ, real)
        return self.archive.read_file(real)

    @_atomic
    def read(self, path: str, offset: int, size: int) -> bytes:
        real = self._real(path)
        self.check(READ, real)
        return self.archive.read(self.archive.resolve(real).ino, offset, size)

    @_atomic
    def listdir(self, path: str = "/") -> list[str]:
        real = self._real(path)
        self.check(LIST, real)
        return self.archive.listdir(real)

    @_atomic
    def scandir(self, path: str = "/") -> list[tuple[str, Inode]]:
        real = self._real(path)
        self.check(LIST, real)
        return self.archive.scandir(real)

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """os.walk over what the user may list (unlistable directories are skipped)."""
        real = self._real(top)
        self.check(LIST, real)
        for dirpath, dirs, files in self.archive.walk(real):
            allowed = []
            for name in dirs:
                child = dirpath.rstrip("/") + "/" + name
                if self.iam.decide(self.user, LIST, archive_arn(child), self.context).allowed:
                    allowed.append(name)
            dirs[:] = allowed
            yield dirpath, dirs, files

    @_atomic
    def getxattr(self, path: str, name: str) -> bytes:
        real = self._real(path)
        self.check(READ, real)
        return self.archive.getxattr(self.archive.resolve(real).ino, name)

    @_atomic
    def listxattr(self, path: str) -> list[bytes]:
        real = self._real(path)
        self.check(READ, real)
        return self.archive.listxattr(self.archive.resolve(real).ino)

    # ---- writing ----------------------------------------------------------------------------

    @_atomic
    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> Inode:
        real = self._real(path, missing_ok=True)
        self.check(WRITE if self.archive.exists(real) else CREATE, real)
        return self.archive.write_file(real, data, mode)

    @_atomic
    def write(self, path: str, offset: int, data: bytes) -> int:
        real = self._real(path)
        self.check(WRITE, real)
        return self.archive.write(self.archive.resolve(real).ino, offset, data)

    @_atomic
    def setxattr(self, path: str, name: str, value: bytes, flags: int = 0) -> None:
        real = self._real(path)
        self.check(WRITE, real)
        self.archive.setxattr(self.archive.resolve(real).ino, name, value, flags)

    @_atomic
    def removexattr(self, path: str, name: str) -> None:
        real = self._real(path)
        self.check(WRITE, real)
        self.archive.removexattr(self.archive.resolve(real).ino, name)

    @_atomic
    def chmod(self, path: str, mode: int) -> Inode:
        real = self._real(path)
        self.check(WRITE, real)
        return self.archive.setattr(self.archive.resolve(real).ino, mode=mode)

    @_atomic
    def make_dir(self, path: str, mode: int = 0o755) -> Inode:
        real = self._real(path, missing_ok=True)
        self.check(CREATE, real)
        return self.archive.make_dir(real, mode)

    @_atomic
    def make_symlink(self, target: str, path: str) -> Inode:
        real = self._real(path, follow=False, missing_ok=True)
        self.check(CREATE, real)
        return self.archive.make_symlink(target, real)

    @_atomic
    def make_hardlink(self, existing: str, path: str) -> Inode:
        source = self._real(existing, follow=False)
        real = self._real(path, follow=False, missing_ok=True)
        self.check(READ, source)
        self.check(WRITE, source)
        self.check(CREATE, real)
        return self.archive.make_hardlink(source, real)

    def _subtree(self, real: str) -> list[str]:
        inode = self.archive.lstat(real)
        paths = [real]
        if stat_module.S_ISDIR(inode.mode):
            for dirpath, dirs, files in self.archive.walk(real):
                base = dirpath.rstrip("/")
                paths += [f"{base}/{name}" for name in dirs + files]
        return paths

    @_atomic
    def remove(self, path: str, *, recursive: bool = False) -> None:
        real = self._real(path, follow=False)
        for each in self._subtree(real) if recursive else [real]:
            self.check(DELETE, each)
        self.archive.remove(real, recursive=recursive)

    @_atomic
    def move(self, src: str, dst: str) -> None:
        """mv: into ``dst`` if it is (or links to) a directory, else onto ``dst`` itself —
        a symlink there is replaced, as rename(2) does, never the file it points to."""
        real_src = self._real(src, follow=False)
        real_dst = self._real(dst, follow=False, missing_ok=True)
        try:
            if self.archive.stat(real_dst).is_dir:
                real_dst = self._real(dst).rstrip("/") + "/" + real_src.rsplit("/", 1)[-1]
        except NotFound:
            pass
        for each in self._subtree(real_src):
            self.check(DELETE, each)
            self.check(CREATE, real_dst + each[len(real_src):])
        if self.archive.exists(real_dst):
            self.check(DELETE, real_dst)
        self.archive.move(real_src, real_dst)

    # ---- archive-wide -----------------------------------------------------------------------

    @_atomic
    def create_snapshot(self, name: str) -> SnapshotInfo:
        self.check(SNAPSHOT, "/")
        return self.archive.create_snapshot(name)

    @_atomic
    def delete_snapshot(self, name: str) -> None:
        self.check(SNAPSHOT, "/")
        self.archive.delete_snapshot(name)

    @_atomic
    def list_snapshots(self) -> list[SnapshotInfo]:
        self.check(LIST, "/")
        return self.archive.list_snapshots()

    @_atomic
    def sync(self) -> None:
        self.archive.sync()
