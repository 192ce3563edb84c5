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

Waiting for a write-back to arrive: ``syncfs`` returns once the kernel has *queued* the
WRITE requests for every dirty page, not once we have answered them (measured on 6.18: ~10
MiB of a 30 MiB write-back still arrived after it returned). Two ways to wait:
:func:`write_back` invalidates the files' pages, which launders and waits page by page —
exact, but it drops their clean cached pages, and on a file someone keeps writing it chases
the writer until they stop (a 4 GiB ``dd`` spent 21 s in one call, 40 % slower overall).
:func:`syncfs_then_barrier` instead opens and closes the mount's root directory right after
``syncfs``: the kernel queues that RELEASEDIR in the same first-in-first-out queue of
background requests as the WRITEs before it, so once the daemon has answered it, it has
read every WRITE that ``syncfs`` queued (the caller recognises its own OPENDIR by the thread
id it passes to ``mark``). Cost: one syncfs and two small requests.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence

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


def syncfs_then_barrier(mountpoint: str, mark: Callable[[int], None]) -> bool:
    """``syncfs``, then queue a request behind the write-back it started: call ``mark``
    with this thread's id (the pid of the OPENDIR the daemon will see), then open and close
    the mount's root directory. False if that directory cannot be opened (no barrier comes).
    Must run in a worker thread while the trio loop serves the requests this causes."""
    syncfs(mountpoint)
    mark(threading.get_native_id())
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("cannot open %s to wait for the write-back: %s", mountpoint,
                    exc.strerror)
        return False
    os.close(fd)  # RELEASEDIR: a background request, queued after the WRITEs
    return True


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
