"""IAM on a mount: with ``-o principal=NAME`` every request is checked for that principal.

Theory of operation
-------------------
The decision itself is the archive's (``archive.as_principal(NAME).check``: the same engine,
policies and generation-checked decision cache the S3 server uses); this module only finds
the *path* a request is about and the *action* it needs. FUSE names files by node id, so the
path is rebuilt from what the kernel told us: every reply that gives the kernel a name
(lookup, create, mkdir, mknod, symlink, link, readdirplus) records ``node -> (parent node,
name)``; rename moves the record, forget drops it. Directories have one parent, so their
paths are exact; a hard-linked file has the path it was last looked up (or linked) by. The
kernel resolves symlinks and ``..`` itself before asking us, so every path is a real one.
A node whose path cannot be rebuilt is refused (fail closed).

Actions (AWS-style, on ``arn:cartfs:::PATH``):

=========================================  ===============================================
request                                     action
=========================================  ===============================================
lookup, getattr, statfs, forget, release    none: like a directory's search (x) bit,
                                            knowing a name lets you stat it
opendir (ls, readdir)                       List on the directory
open for reading, readlink, getxattr,       Read on the file
listxattr
open for writing or with O_TRUNC,           Write on the file (an open file keeps the access
setattr (chmod, chown, utimes, truncate),   it was opened with, as in POSIX: read/write/
setxattr, removexattr                       ftruncate on a handle are not checked again)
create, mkdir, mknod, symlink               Create on the new path
link                                        Read and Write on the file, Create on the new path
unlink, rmdir                               Delete on the path
rename                                      Delete on every old path of the moved subtree,
                                            Create on every new one, and Delete on a
                                            replaced target (both ways for RENAME_EXCHANGE)
mkdir/rmdir in ``.snapshots``               Snapshot on ``/``
listing ``.snapshots``                      List on ``/``
reading inside ``.snapshots/NAME/``         as above, on the path inside the snapshot
=========================================  ===============================================

Refusals are EACCES and are logged at info. Without the option (:class:`NoAccess`) no path is
tracked and no check runs: nothing changes. Kernel caches do not weaken a policy change:
open, opendir, create and every namespace change always reach the daemon; only stat results
are cached (and those need no permission).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from cartfs.core.archive import Archive
from cartfs.core.catalog import ROOT_INO
from cartfs.core.errors import NotFound, PermissionDenied

from .inodes import SNAPDIR_NODE

log = logging.getLogger("cartfs.fuse")

READ, WRITE, CREATE, DELETE = "cartfs:Read", "cartfs:Write", "cartfs:Create", "cartfs:Delete"
LIST, SNAPSHOT = "cartfs:List", "cartfs:Snapshot"
MAX_DEPTH = 4096  # deeper than any path the kernel can hand us (PATH_MAX / 2)


class NoAccess:
    """No principal: every check passes and nothing is tracked."""

    enabled = False

    def named(self, parent: int, name: bytes, node: int) -> None:
        """The kernel now knows ``node`` as ``name`` in ``parent``."""

    def unnamed(self, parent: int, name: bytes) -> None:
        """``name`` in ``parent`` was removed."""

    def moved(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes,
              exchange: bool) -> None:
        """A rename succeeded."""

    def forgotten(self, node: int) -> None:
        """The kernel holds no reference to ``node`` any more."""

    def check(self, action: str, node: int, name: bytes | None = None) -> None:
        """Refuse (PermissionDenied) unless ``action`` is allowed on the node's path (or on
        ``name`` inside it)."""

    def check_root(self, action: str) -> None:
        """Archive-wide actions (snapshots) are checked on ``/``."""

    def check_rename(self, archive: Archive, old_parent: int, old_name: bytes,
                     new_parent: int, new_name: bytes, exchange: bool) -> None:
        """Delete/Create on both sides of a rename, subtrees included."""


MOUNT_CONTEXT = {"aws:SecureTransport": "true", "cartfs:Transport": "fuse"}


class PolicyAccess(NoAccess):
    """Checks every request for one principal against the archive's policies."""

    enabled = True

    def __init__(self, archive: Archive, principal: str) -> None:
        # What only the mount knows about its requests: they come through the kernel, never
        # over a network (no aws:SourceIp); the time keys are added by the archive's store.
        self.guard = archive.as_principal(principal, MOUNT_CONTEXT)
        self.principal = principal
        self._names: dict[int, tuple[int, bytes]] = {}
        self._children: dict[tuple[int, bytes], int] = {}

    # ---- paths ------------------------------------------------------------------------------

    def named(self, parent: int, name: bytes, node: int) -> None:
        if name in (b".", b".."):
            return
        old = self._names.get(node)
        if old is not None and self._children.get(old) == node:
            del self._children[old]
        self._names[node] = (parent, name)
        self._children[(parent, name)] = node

    def unnamed(self, parent: int, name: bytes) -> None:
        self._children.pop((parent, name), None)  # an open file keeps its last path

    def moved(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes,
              exchange: bool) -> None:
        node = self._children.pop((old_parent, old_name), None)
        other = self._children.pop((new_parent, new_name), None)
        if exchange and other is not None:
            self.named(old_parent, old_name, other)
        if node is not None:
            self.named(new_parent, new_name, node)

    def forgotten(self, node: int) -> None:
        key = self._names.pop(node, None)
        if key is not None and self._children.get(key) == node:
            del self._children[key]

    def path(self, node: int) -> str:
        """The node's path: in the live tree, or inside its snapshot for snapshot trees."""
        names: list[bytes] = []
        while node != ROOT_INO:
            record = self._names.get(node)
            if record is None or len(names) > MAX_DEPTH:
                raise PermissionDenied(f"{self.principal}: path of node {node} unknown")
            node, name = record
            if node == SNAPDIR_NODE:  # a snapshot's root: paths inside it start here
                break
            names.append(name)
        return "/" + "/".join(os.fsdecode(n) for n in reversed(names))

    # ---- checks -----------------------------------------------------------------------------

    def _check_path(self, action: str, path: str) -> None:
        try:
            self.guard.check(action, path)
        except PermissionDenied:
            log.info("IAM: %s denied %s on %s", self.principal, action, path)
            raise

    def check(self, action: str, node: int, name: bytes | None = None) -> None:
        path = self.path(node)
        if name is not None:
            path = path.rstrip("/") + "/" + os.fsdecode(name)
        self._check_path(action, path)

    def check_root(self, action: str) -> None:
        self._check_path(action, "/")

    def check_rename(self, archive: Archive, old_parent: int, old_name: bytes,
                     new_parent: int, new_name: bytes, exchange: bool) -> None:
        old = self.path(old_parent).rstrip("/") + "/" + os.fsdecode(old_name)
        new = self.path(new_parent).rstrip("/") + "/" + os.fsdecode(new_name)
        moving = archive.lookup(old_parent, old_name).ino
        self._check_move(archive, moving, old, new)
        try:
            target = archive.lookup(new_parent, new_name).ino
        except NotFound:  # no target: nothing is replaced
            return
        if exchange:
            self._check_move(archive, target, new, old)
        else:
            self._check_path(DELETE, new)

    def _check_move(self, archive: Archive, ino: int, old: str, new: str) -> None:
        for rel in ["", *_subtree(archive, ino)]:
            self._check_path(DELETE, old + rel)
            self._check_path(CREATE, new + rel)


def _subtree(archive: Archive, ino: int) -> Iterator[str]:
    """'/a', '/a/b', ... for everything below directory ``ino`` (nothing for a file)."""
    if not archive.getattr(ino).is_dir:
        return
    stack = [(ino, "")]
    while stack:
        directory, prefix = stack.pop()
        for entry in archive.readdir(directory):
            rel = f"{prefix}/{os.fsdecode(entry.name)}"
            yield rel
            if archive.getattr(entry.ino).is_dir:
                stack.append((entry.ino, rel))


def access_for(archive: Archive, principal: str | None) -> NoAccess:
    """The checker for a mount: :class:`NoAccess` without a principal."""
    if principal is None:
        return NoAccess()
    log.info("IAM: every request is checked for principal %s", principal)
    return PolicyAccess(archive, principal)


def open_actions(flags: int) -> list[str]:
    """The actions an open(2) with ``flags`` needs."""
    mode = flags & os.O_ACCMODE
    actions = [READ] if mode in (os.O_RDONLY, os.O_RDWR) else []
    if mode in (os.O_WRONLY, os.O_RDWR) or flags & os.O_TRUNC:
        actions.append(WRITE)
    return actions
