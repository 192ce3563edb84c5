"""The background commit timer: pending changes reach the disk within the commit interval.

An archive commits on its own when a change arrives after ``commit_interval`` seconds
(default 5), and SQLite's ``xSync`` commits at once; but a connection running with
``synchronous=OFF`` (or WAL with ``synchronous=NORMAL``) may write and then go quiet, and its
last writes — in the archive's dirty buffers or in the VFS's pending write run — would wait
for the next change or the close. One daemon thread per process, running only while a
writable archive is open, gives them the same bound the FUSE mount has: every tick it hands
over pending runs older than the interval and calls :meth:`Archive.commit_if_due`. A commit
in the middle of an SQLite transaction is harmless: it persists a prefix of the writes,
which SQLite's journal (or WAL) already has to survive (see :mod:`cartfs.vfs.registry`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("cartfs.vfs")

MAX_TICK = 0.5


class Committer(threading.Thread):
    """The timer thread; it ends when no writable archive is open."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(name="cartfs-vfs-committer", daemon=True)
        self.registry = registry

    def run(self) -> None:
        while True:
            entries = self.registry.writable_entries(self)
            if not entries:
                return
            tick = min(MAX_TICK, *(e.archive.options.commit_interval / 2 for e in entries))
            time.sleep(max(tick, 0.005))
            for entry in entries:
                try:
                    entry.commit_if_due()
                except Exception:  # a failed commit is reported again by the next xSync
                    log.exception("cartridge VFS: background commit of %s failed",
                                  entry.path)
