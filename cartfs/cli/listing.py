"""How archive entries are shown: ``ls -l`` lines and recursive listings.

Shared by ``cartfs ls`` and ``cartfs demo`` so both print exactly what ``ls -l`` would print
for the same tree: mode string, link count, owner, group, size (bytes, or human with -h),
modification time (time of day within six months, else the year), name, ``-> target``.
"""

from __future__ import annotations

import grp
import math
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from cartfs.core.archive import Archive
from cartfs.core.catalog import Inode

SIX_MONTHS_NS = 182 * 24 * 3600 * 10**9


@cache
def user_name(uid: int) -> str:
    """The local name of ``uid`` (its number when this machine has no such user)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@cache
def group_name(gid: int) -> str:
    """The local name of ``gid`` (its number when this machine has no such group)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def format_mtime(mtime_ns: int, now_ns: int | None = None) -> str:
    """``Nov 25 03:55`` for recent times, ``Nov 25  2024`` for old or future ones."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    local = time.localtime(mtime_ns // 10**9)
    recent = now_ns - SIX_MONTHS_NS < mtime_ns <= now_ns + 3600 * 10**9
    tail = time.strftime("%H:%M", local) if recent else f" {local.tm_year}"
    return f"{time.strftime('%b', local)} {local.tm_mday:2d} {tail}"


def short_size(nbytes: int) -> str:
    """``ls -h`` style, one column wide: 980, 1.5K, 12M, 3.0G (rounded up, as ls does)."""
    if nbytes < 1024:
        return str(nbytes)
    value = float(nbytes)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            tenths = math.ceil(value * 10) / 10
            return f"{tenths:.1f}{unit}" if tenths < 10 else f"{math.ceil(value)}{unit}"
    raise AssertionError("unreachable")


def format_size(inode: Inode, human: bool) -> str:
    """The size column: bytes, ``ls -h`` style, or major, minor for a device."""
    if stat.S_ISCHR(inode.mode) or stat.S_ISBLK(inode.mode):
        return f"{os.major(inode.rdev)}, {os.minor(inode.rdev)}"
    return short_size(inode.size) if human else str(inode.size)


@dataclass(frozen=True)
class Row:
    """One entry to show: its display name and attributes (and link target)."""

    name: str
    inode: Inode
    target: str | None = None


def row_for(archive: Archive, name: str, inode: Inode) -> Row:
    """A row, reading the link target of a symlink (shown as ``-> target``)."""
    target = os.fsdecode(archive.readlink(inode.ino)) if inode.is_symlink else None
    return Row(name, inode, target)


def long_lines(rows: list[Row], *, human: bool = False) -> list[str]:
    """``ls -l`` lines for ``rows``, columns aligned across them."""
    if not rows:
        return []
    cells = [(stat.filemode(r.inode.mode), str(r.inode.nlink), user_name(r.inode.uid),
              group_name(r.inode.gid), format_size(r.inode, human),
              format_mtime(r.inode.mtime_ns)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    lines = []
    for row, c in zip(rows, cells, strict=True):
        arrow = f" -> {row.target}" if row.target is not None else ""
        lines.append(f"{c[0]} {c[1]:>{widths[1]}} {c[2]:<{widths[2]}} {c[3]:<{widths[3]}} "
                     f"{c[4]:>{widths[4]}} {c[5]} {row.name}{arrow}")
    return lines


def short_lines(rows: list[Row]) -> list[str]:
    """Plain ``ls``: one name a line (as ls prints into a pipe)."""
    return [row.name for row in rows]


def directory_rows(archive: Archive, path: str) -> list[Row]:
    """The entries of the directory at ``path`` sorted by name (as ls sorts them)."""
    return sorted((row_for(archive, name, inode) for name, inode in archive.scandir(path)),
                  key=lambda r: os.fsencode(r.name))


def join(parent: str, name: str) -> str:
    """An archive path below ``parent`` (``/`` + ``a`` is ``/a``, not ``//a``)."""
    return parent.rstrip("/") + "/" + name


def listing(archive: Archive, path: str, *, long: bool, recursive: bool,
            human: bool = False) -> Iterator[str]:
    """Lines of ``ls [-l] [-R] path`` for one directory, without reading the whole tree
    first: a recursive listing of a huge archive starts printing at once."""
    render: Callable[[list[Row]], list[str]] = (
        (lambda rows: long_lines(rows, human=human)) if long else short_lines)
    pending = [path]
    first = True
    while pending:
        current = pending.pop()
        rows = directory_rows(archive, current)
        if recursive:
            if not first:
                yield ""
            yield f"{current}:"
        first = False
        yield from render(rows)
        if recursive:
            subdirs = [join(current, r.name) for r in rows if r.inode.is_dir]
            pending.extend(reversed(subdirs))
