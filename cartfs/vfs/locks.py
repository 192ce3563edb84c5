"""SQLite's five lock levels for one database file, shared by every handle in the process.

Theory of operation
-------------------
SQLite asks its VFS for the locks of ``os_unix.c`` (see https://sqlite.org/lockingv3.html):

* NONE -> SHARED: any number of readers, refused while someone holds PENDING or EXCLUSIVE
  (so a writer waiting to commit is not starved by new readers);
* SHARED -> RESERVED: one writer intends to write; readers may continue;
* -> EXCLUSIVE: the writer first takes PENDING (new readers are refused from now on), then
  EXCLUSIVE once it is the last SHARED holder. If other readers remain it *keeps* PENDING
  and gets SQLITE_BUSY, and SQLite's busy handler retries;
* unlock to SHARED drops RESERVED/PENDING/EXCLUSIVE, unlock to NONE drops everything.

As in ``os_unix.c``, at most one handle may be above SHARED at a time: a second handle asking
for RESERVED or EXCLUSIVE while another holds RESERVED gets SQLITE_BUSY, never a wait (SQLite's
busy handler does the waiting, outside any of our locks). :meth:`DbLock.reserved` answers
``xCheckReservedLock``: is any handle of this process above SHARED?

Across processes nothing more is needed: an archive opened for writing holds an exclusive
``flock`` on the ``.cart`` file, so while one process can write a database no other process
can even open the archive; several processes may share an archive only read-only, and
read-only connections never go above SHARED. One :class:`DbLock` per database file per
process therefore gives SQLite's full locking contract.

The state is a few integers behind one short mutex; nothing blocks while holding it.
"""

from __future__ import annotations

import threading

NONE = 0
SHARED = 1
RESERVED = 2
PENDING = 3
EXCLUSIVE = 4

LEVEL_NAMES = ("NONE", "SHARED", "RESERVED", "PENDING", "EXCLUSIVE")


class LockHandle:
    """The lock level one open database handle holds (what SQLite calls eFileLock)."""

    __slots__ = ("level",)

    def __init__(self) -> None:
        self.level = NONE


class DbLock:
    """The lock table of one database file: how many SHARED holders, and which handle (if
    any) is above SHARED and at which level."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.shared = 0
        self.owner: LockHandle | None = None
        self.owner_level = NONE

    def acquire(self, handle: LockHandle, level: int) -> bool:
        """Raise ``handle`` to ``level``; False means SQLITE_BUSY (the handle keeps what it
        had, plus PENDING when it was asking for EXCLUSIVE)."""
        if handle.level >= level:
            return True
        if level not in (SHARED, RESERVED, EXCLUSIVE):
            raise ValueError(f"SQLite never asks for lock level {level}")
        if level > SHARED and handle.level < SHARED:
            raise ValueError(f"{LEVEL_NAMES[level]} requested without a SHARED lock")
        with self._mutex:
            owner = self.owner
            if owner is not None and owner is not handle and (
                    level > SHARED or self.owner_level >= PENDING):
                return False
            if level == SHARED:
                self.shared += 1
                handle.level = SHARED
                return True
            if level == RESERVED:
                self._set_owner(handle, RESERVED)
                return True
            self._set_owner(handle, PENDING)
            if self.shared > 1:
                return False
            self._set_owner(handle, EXCLUSIVE)
            return True

    def _set_owner(self, handle: LockHandle, level: int) -> None:
        self.owner = handle
        self.owner_level = level
        handle.level = level

    def release(self, handle: LockHandle, level: int) -> None:
        """Lower ``handle`` to SHARED or NONE (asking for a higher level is a no-op)."""
        with self._mutex:
            if handle.level > SHARED and level <= SHARED:
                if self.owner is handle:
                    self.owner = None
                    self.owner_level = NONE
                handle.level = SHARED
            if level == NONE and handle.level == SHARED:
                self.shared -= 1
                handle.level = NONE

    def reserved(self) -> bool:
        """Does any handle hold RESERVED, PENDING or EXCLUSIVE?"""
        return self.owner is not None
