"""Asking the kernel about our own mount: flush its dirty pages, drop what it caches.

Both directions are delicate inside the daemon, because the kernel's side of these calls
sends requests that only this daemon can answer:

* ``syncfs`` makes the kernel write back the pages it caches (writeback cache) — as WRITE
  and SETATTR requests to us. It must run in a worker thread *without the GIL* while the trio
  loop keeps serving; ``pyfuse3.syncfs`` holds the GIL and would deadlock, so this calls
  libc's ``syncfs`` through ctypes, which releases it.
* Invalidations may wait for locks the request being handled still holds (the parent
  directory of an rmdir), so they never run on the trio thread and never delay a reply:
  ``invalidate_entry_async`` queues them for pyfuse3's notify thread, and inode
  invalidations run in a worker thread started after the reply.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Sequence

import pyfuse3
import trio

log = logging.getLogger("cartfs.fuse")


def syncfs(path: str) -> None:
    """syncfs(2) on the file system at ``path``, releasing the GIL (pyfuse3.syncfs holds
    it, which deadlocks a daemon that must serve the write-back it causes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("syncfs %s: %s", path, exc.strerror)
        return
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            log.warning("syncfs %s: %s", path, os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


def write_back(mountpoint: str, writing: Sequence[int]) -> None:
    """Make the kernel hand us every dirty page of the mount, and wait until it has.

    ``syncfs`` alone is not enough: it starts the write-back (and sends the kernel-owned
    mtimes, synchronously), but Linux does not wait for a FUSE server to *answer* that
    write-back (6.x: sync skips waiting on FUSE mappings, so a hung server cannot hang
    sync), so WRITE requests may still be queued when it returns. Invalidating an inode's
    pages does wait: each dirty page is laundered (written, reply awaited) and each page
    under write-back waited for. Only files open for writing can have dirty pages, so only
    those (``writing``) are invalidated; their clean pages are read again when next needed.
    Must run in a worker thread while the trio loop serves the requests this causes."""
    syncfs(mountpoint)
    _invalidate_inodes(writing)


def _invalidate_inodes(nodes: Sequence[int]) -> None:
    for node in nodes:
        try:
            pyfuse3.invalidate_inode(node)
        except OSError as exc:  # ENOENT: the kernel had already dropped it
            if exc.errno != errno.ENOENT:
                log.warning("cannot invalidate node %d: %s", node, exc.strerror)


async def _invalidate_later(nodes: Sequence[int]) -> None:
    try:
        await trio.to_thread.run_sync(_invalidate_inodes, nodes)
    except Exception:  # a system task must not raise: that would end the mount
        log.exception("invalidating %d nodes failed", len(nodes))


def forget_in_kernel(parent: int, name: bytes, nodes: Sequence[int]) -> None:
    """The entry ``name`` of ``parent`` and the nodes below it are gone: make the kernel
    drop its cached entry, attributes and pages of them (call from a request handler)."""
    pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)
    if nodes:
        trio.lowlevel.spawn_system_task(_invalidate_later, list(nodes))
