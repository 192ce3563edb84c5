"""The file objects apsw calls: SQLite's ``sqlite3_io_methods`` over a node.

* :class:`FileHandle` — journals, WAL files, super-journals and temp files (in the archive
  or in memory; :class:`TempFileHandle` for nameless ones in the archive). A plain object,
  not an :class:`apsw.VFSFile` subclass: apsw answers ``SQLITE_FCNTL_VFSNAME`` for VFSFile
  instances by calling their base file, which such a file would not have.
* :class:`ShadowedMainDbFile` — a main database. An :class:`apsw.VFSFile` opened through the
  unix VFS on a shadow host file, so that apsw forwards SQLite's shared-memory methods and
  WAL mode works (see :mod:`cartfs.vfs.shm`); every byte still goes to the archive.
  (:class:`MainDbHandle` when no shadow can be made: everything but WAL.)

What the VFS promises SQLite, and why it is true (``xDeviceCharacteristics``):

* ``SQLITE_IOCAP_ATOMIC`` — a crash never leaves part of one ``xWrite``: the archive commits
  whole transactions (copy-on-write, then the superblock), and a write is never split across
  two commits.
* ``SQLITE_IOCAP_SAFE_APPEND`` — a file's new size and its appended bytes are in the same
  commit, so a crash never leaves a file grown over garbage.
* ``SQLITE_IOCAP_SEQUENTIAL`` — a commit persists all earlier writes, in order, so a durable
  write implies every earlier one is durable (see :mod:`cartfs.vfs.registry`).
* ``SQLITE_IOCAP_POWERSAFE_OVERWRITE`` — a crash during a write leaves the old or the new
  chunk, never damage to bytes that were not written.
* ``SQLITE_IOCAP_SUBPAGE_READ`` — reads of any size at any offset are fine (SQLite 3.48+
  then reads overflow pages of large BLOBs directly).

Not claimed: ``IMMUTABLE`` (SQLite would then ignore a hot journal), and
``UNDELETABLE_WHEN_OPEN``. ``xSectorSize`` is the archive page size, 4096; with
POWERSAFE_OVERWRITE SQLite does not depend on it.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import apsw

from .errors import sqlite_error, to_sqlite
from .locks import NONE, RESERVED, SHARED, LockHandle
from .nodes import FileNode, Node
from .registry import ArchiveEntry

CAPABILITIES = (apsw.SQLITE_IOCAP_ATOMIC | apsw.SQLITE_IOCAP_SAFE_APPEND
                | apsw.SQLITE_IOCAP_SEQUENTIAL | apsw.SQLITE_IOCAP_POWERSAFE_OVERWRITE
                | getattr(apsw, "SQLITE_IOCAP_SUBPAGE_READ", 0))
SECTOR_SIZE = 4096
SHM_VFS = "unix"  # the VFS whose shared memory the WAL index uses (see cartfs.vfs.shm)
_BUSY = "cartridge: database is locked by another connection"


class FileHandle:
    """One open file (see the module docstring). ``on_close`` releases what the open
    acquired (node, archive reference, pins); it runs exactly once."""

    def __init__(self, node: Node, label: str, entry: ArchiveEntry | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.node = node
        self.label = label
        self.entry = entry
        self.lock_handle = LockHandle()
        self._on_close = on_close

    # ---- data -----------------------------------------------------------------------------

    def xRead(self, amount: int, offset: int) -> bytes:
        """Short at end of file: apsw zero-fills and returns SQLITE_IOERR_SHORT_READ."""
        try:
            return self.node.read(offset, amount)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_READ, self.label) from exc

    def xWrite(self, data: bytes, offset: int) -> None:
        try:
            self.node.write(offset, data)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_WRITE, self.label) from exc

    def xTruncate(self, newsize: int) -> None:
        try:
            self.node.truncate(newsize)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_TRUNCATE, self.label) from exc

    def xFileSize(self) -> int:
        return self.node.size

    def xSync(self, flags: int) -> None:
        """Commit the archive transaction (everything written so far becomes durable)."""
        if self.entry is None:
            return
        try:
            self.entry.sync()
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_FSYNC, self.label) from exc

    # ---- locks ----------------------------------------------------------------------------

    def xLock(self, level: int) -> None:
        try:
            granted = self.node.lock.acquire(self.lock_handle, level)
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_LOCK, self.label) from exc
        if not granted:
            raise sqlite_error(apsw.SQLITE_BUSY, _BUSY)

    def xUnlock(self, level: int) -> None:
        self.node.lock.release(self.lock_handle, level)

    def xCheckReservedLock(self) -> bool:
        return self.node.lock.reserved()

    # ---- properties -------------------------------------------------------------------

    def xSectorSize(self) -> int:
        return SECTOR_SIZE

    def xDeviceCharacteristics(self) -> int:
        return CAPABILITIES

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op == apsw.SQLITE_FCNTL_LOCKSTATE and ptr:
            ctypes.c_int.from_address(ptr).value = self.lock_handle.level
            return True
        return False

    # ---- closing ------------------------------------------------------------------------

    def xClose(self) -> None:
        """Idempotent: releases the lock, the node and the archive reference once."""
        on_close, self._on_close = self._on_close, None
        if on_close is None:
            return
        self.node.lock.release(self.lock_handle, NONE)
        try:
            on_close()
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_CLOSE, self.label) from exc


class TempFileHandle(FileHandle):
    """A delete-on-close file in the archive (a nameless inode): its bytes never need to
    survive a crash, so ``xSync`` commits nothing."""

    def xSync(self, flags: int) -> None:
        return


class MainDbHandle(FileHandle):
    """What a main database adds: the deferred sync of rollback-journal transactions, paid
    at SQLITE_FCNTL_COMMIT_PHASETWO or when the write lock is dropped (see
    :mod:`cartfs.vfs.registry`).

    Used directly only when no shared memory could be set up (no private runtime directory):
    then ``PRAGMA journal_mode=WAL`` is refused with a clear error instead of SQLite's silent
    fallback to the rollback journal.
    """

    has_shm = False

    entry: ArchiveEntry
    node: FileNode

    def xSync(self, flags: int) -> None:
        try:
            self.entry.sync_main_db()
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_FSYNC, self.label) from exc

    def xLock(self, level: int) -> None:
        _current.entry = self.entry
        super().xLock(level)

    def xUnlock(self, level: int) -> None:
        was_writing = self.lock_handle.level >= RESERVED
        self.node.lock.release(self.lock_handle, level)
        if was_writing and level <= SHARED and self.entry.owed:
            self._pay()

    def _pay(self) -> None:
        try:
            self.entry.pay_owed()
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_FSYNC, self.label) from exc

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op == apsw.SQLITE_FCNTL_COMMIT_PHASETWO:
            if self.entry.owed:
                self._pay()
            return True
        if op == apsw.SQLITE_FCNTL_HAS_MOVED and ptr:
            ctypes.c_int.from_address(ptr).value = 0
            return True
        if op in (apsw.SQLITE_FCNTL_SIZE_HINT, apsw.SQLITE_FCNTL_CHUNK_SIZE):
            return True  # the archive allocates its own space
        if op == apsw.SQLITE_FCNTL_PRAGMA and ptr and not self.has_shm:
            self._refuse_wal(apsw.VFSFcntlPragma(ptr))
        return FileHandle.xFileControl(self, op, ptr)

    @staticmethod
    def _refuse_wal(pragma: apsw.VFSFcntlPragma) -> None:
        if pragma.name.lower() != "journal_mode" or (pragma.value or "").lower() != "wal":
            return
        message = ("WAL is not available here: the cartridge VFS found no private runtime "
                   "directory for the WAL index ($XDG_RUNTIME_DIR or the temp directory); "
                   "use another journal mode, or WAL through the FUSE mount")
        pragma.result = message
        raise sqlite_error(apsw.SQLITE_ERROR, message)


_current = threading.local()


def current_entry() -> ArchiveEntry | None:
    """The archive of the main database this thread locked last: the best guess for a name
    no binding explains (a super-journal named in a hot journal written by a dead process)."""
    entry: ArchiveEntry | None = getattr(_current, "entry", None)
    return entry


class ShadowedMainDbFile(MainDbHandle, apsw.VFSFile):
    """A main database whose shared-memory methods come from the unix VFS on a shadow file
    (WAL support; see :mod:`cartfs.vfs.shm`)."""

    has_shm = True

    def __init__(self, shadow: str, node: FileNode, label: str, entry: ArchiveEntry,
                 on_close: Callable[[], None]) -> None:
        flags = [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READWRITE
                 | apsw.SQLITE_OPEN_CREATE, 0]
        # "unix" by name: its shared memory is what we borrow, whatever the default VFS is
        apsw.VFSFile.__init__(self, SHM_VFS, shadow, flags)
        MainDbHandle.__init__(self, node, label, entry, on_close)

    def xFileControl(self, op: int, ptr: int) -> bool:
        if MainDbHandle.xFileControl(self, op, ptr):
            return True
        if op in _PASS_TO_SHADOW:
            return apsw.VFSFile.xFileControl(self, op, ptr)
        return False

    def xClose(self) -> None:
        try:
            MainDbHandle.xClose(self)
        finally:
            apsw.VFSFile.xClose(self)


# File controls the shadow's unix file answers for the shared memory it provides.
_PASS_TO_SHADOW = frozenset({
    apsw.SQLITE_FCNTL_PERSIST_WAL,
    apsw.SQLITE_FCNTL_LOCK_TIMEOUT,
    apsw.SQLITE_FCNTL_BUSYHANDLER,
})
