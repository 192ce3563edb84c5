"""A canonical, comparable picture of an archive's whole tree, built on the public API only.

Crash, power-loss, golden and model tests all ask the same question — "does this archive hold
exactly that tree?" — so they all use :func:`tree_state`: every path with its type, permission
bits, link count, size, content digest, symlink target and extended attributes. Hard links
show up as several paths with the same ``link_group`` (the smallest path naming the inode).
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cartfs.core.archive import Archive

READ_STEP = 1 << 20


@dataclass(frozen=True)
class EntryState:
    """One path of the tree, as a test compares it."""

    type: str  # dir, file, symlink, fifo, socket, char, block
    mode: int  # permission bits only (S_IMODE)
    nlink: int
    size: int
    sha256: str = ""  # regular files
    target: str = ""  # symlinks (hex of the target bytes)
    xattrs: dict[str, str] = field(default_factory=dict)  # hex name -> hex value
    link_group: str = ""  # non-directories: the smallest path naming the same inode


def _type_of(mode: int) -> str:
    for test, label in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"),
                        (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                        (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "char")):
        if test(mode):
            return label
    return "block"


def file_digest(archive: Archive, ino: int, size: int) -> str:
    """SHA-256 of a file's content, read in 1 MiB steps (so large sparse files stay cheap)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        piece = archive.read(ino, offset, min(READ_STEP, size - offset))
        if not piece:
            raise AssertionError(f"inode {ino}: short read at {offset} of {size}")
        digest.update(piece)
        offset += len(piece)
    return digest.hexdigest()


def tree_state(archive: Archive) -> dict[str, EntryState]:
    """Every path below the root (the root itself as "/"), read through the public API."""
    out: dict[str, EntryState] = {}
    paths_of: dict[int, list[str]] = {}
    stack: list[tuple[str, int]] = [("/", archive.root_ino)]
    while stack:
        path, ino = stack.pop()
        inode = archive.getattr(ino)
        kind = _type_of(inode.mode)
        paths_of.setdefault(ino, []).append(path)
        xattrs = {name.hex(): archive.getxattr(ino, name).hex()
                  for name in archive.listxattr(ino)}
        out[path] = EntryState(
            type=kind, mode=stat.S_IMODE(inode.mode), nlink=inode.nlink, size=inode.size,
            sha256=file_digest(archive, ino, inode.size) if kind == "file" else "",
            target=archive.readlink(ino).hex() if kind == "symlink" else "",
            xattrs=xattrs, link_group=str(ino) if kind != "dir" else "",
        )
        if kind == "dir":
            for entry in reversed(archive.readdir(ino)):
                child = entry.name.decode("utf-8", "surrogateescape")
                stack.append((path.rstrip("/") + "/" + child, entry.ino))
    groups = {str(ino): min(paths) for ino, paths in paths_of.items()}
    return {path: replace(entry, link_group=groups[entry.link_group]) if entry.link_group
            else entry for path, entry in out.items()}


def state_digest(state: dict[str, EntryState]) -> str:
    """A short stable digest of a tree state (for crash-test reports over a pipe)."""
    canonical = json.dumps({path: asdict(entry) for path, entry in sorted(state.items())},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def diff_states(expected: dict[str, EntryState], actual: dict[str, EntryState],
                limit: int = 10) -> list[str]:
    """Human-readable differences, for assertion messages."""
    lines: list[str] = []
    for path in sorted(set(expected) | set(actual)):
        want, got = expected.get(path), actual.get(path)
        if want != got:
            lines.append(f"{path}: expected {want}, found {got}")
        if len(lines) >= limit:
            lines.append("...")
            break
    return lines
