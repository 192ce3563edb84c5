"""The local-disk side of ``put`` and ``get``: sparse-aware reads, extended attributes,
temporary names for atomic replacement, and ownership rules.

Names are handled as bytes throughout, so a file called ``b"caf\\xe9"`` (not UTF-8) makes
the round trip unchanged.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
from collections.abc import Iterator

log = logging.getLogger("cartfs.cli")

PIECE = 1 << 20  # bytes per read/write: big enough to be fast, small enough for any RAM
_ZERO = bytes(PIECE)
_counter = itertools.count()


def is_zero(data: bytes) -> bool:
    """Whether a piece is all zero bytes (written as a hole instead)."""
    return data == _ZERO[:len(data)] if len(data) <= PIECE else not any(data)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) runs of a file that hold data (SEEK_DATA/SEEK_HOLE), so holes of a
    sparse file are neither read nor stored; the whole file where the filesystem cannot
    tell."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole is left
            yield pos, size
            return
        if start >= size:
            return
        try:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError:
            end = size
        yield start, end
        pos = end


def pieces(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(offset, length) steps of at most PIECE bytes covering [start, end)."""
    for offset in range(start, end, PIECE):
        yield offset, min(PIECE, end - offset)


def open_source(path: bytes) -> int:
    """Open a file to copy without following a symlink swapped in since it was listed,
    and without touching its access time where the kernel allows (our file, or root)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        return os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        return os.open(path, flags)


def read_xattrs(path: bytes) -> list[tuple[str, bytes]]:
    """Every extended attribute we may read (user.* always; others as root)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
            return []
        raise
    found = []
    for name in names:
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise
            log.info("%s: cannot read attribute %s: %s", os.fsdecode(path), name,
                     exc.strerror)
    return found


def temp_name(final: bytes) -> bytes:
    """A name beside ``final`` to build the new entry under before renaming it over."""
    folder = os.path.dirname(final)
    return os.path.join(folder, f".cartfs-part-{os.getpid()}-{next(_counter)}".encode())


def may_chown() -> bool:
    """Only root can give files away; others keep their own uid/gid (as cp -a does)."""
    return os.geteuid() == 0


def remove_quietly(path: bytes) -> None:
    """Clean up a temporary file; failing to is worth a warning, not the command."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("%s: could not remove partial file: %s", os.fsdecode(path), exc.strerror)
