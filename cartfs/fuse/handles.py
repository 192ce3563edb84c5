"""Open file and directory handles of the mount.

A handle remembers which tree and inode an ``open``/``opendir`` referred to, so ``read``,
``write``, ``readdir``, ``fsync`` and ``release`` — which the kernel sends with the handle
only — find their inode without another lookup. Handle numbers are never reused while the
mount is up (a stale number from a buggy caller gives EBADF, not someone else's file).
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass

import pyfuse3

from .inodes import LIVE_TREE


@dataclass(frozen=True, slots=True)
class Handle:
    """One open file or directory."""

    node: int  # kernel node id
    tree_id: int
    ino: int  # inode number inside the tree
    is_dir: bool = False
    append: bool = False
    writable: bool = False  # opened for writing: ftruncate/futimens on it need no new check


class HandleTable:
    """fh -> :class:`Handle`; unknown numbers raise ``FUSEError(EBADF)``."""

    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._numbers = itertools.count(1)

    def add(self, handle: Handle) -> int:
        fh = next(self._numbers)
        self._handles[fh] = handle
        return fh

    def get(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None

    def find(self, fh: int | None) -> Handle | None:
        """The handle ``fh`` names, or None (setattr's optional handle)."""
        return None if fh is None else self._handles.get(fh)

    def pop(self, fh: int) -> Handle:
        handle = self.get(fh)
        del self._handles[fh]
        return handle

    def writing_nodes(self) -> list[int]:
        """Node ids of live files open for writing: the only ones the kernel can hold dirty
        pages of (close() writes a file's pages back and waits before it returns)."""
        return sorted({h.node for h in self._handles.values()
                       if h.writable and h.tree_id == LIVE_TREE})

    def __len__(self) -> int:
        return len(self._handles)

    def drain(self) -> list[Handle]:
        """Every handle still open (at unmount), removing them."""
        handles = list(self._handles.values())
        self._handles.clear()
        return handles
