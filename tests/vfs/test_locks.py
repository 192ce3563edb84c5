"""SQLite's five lock levels: the lock table itself, then the same rules seen through real
connections (SQLITE_BUSY, never a Python exception, never two writers)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import apsw
import pytest

import cartfs.vfs
from cartfs.vfs.locks import EXCLUSIVE, NONE, PENDING, RESERVED, SHARED, DbLock, LockHandle

from .conftest import Connections


def handles(n: int) -> list[LockHandle]:
    return [LockHandle() for _ in range(n)]


def test_many_readers_share() -> None:
    lock = DbLock()
    a, b, c = handles(3)
    assert all(lock.acquire(h, SHARED) for h in (a, b, c))
    assert lock.shared == 3 and not lock.reserved()


def test_one_reserved_at_a_time_and_readers_continue() -> None:
    lock = DbLock()
    a, b, c = handles(3)
    for h in (a, b):
        assert lock.acquire(h, SHARED)
    assert lock.acquire(a, RESERVED)
    assert lock.reserved()
    assert not lock.acquire(b, RESERVED)           # second writer: busy
    assert not lock.acquire(b, EXCLUSIVE)          # nor straight to exclusive
    assert lock.acquire(c, SHARED)                 # new readers still welcome
    assert (a.level, b.level, c.level) == (RESERVED, SHARED, SHARED)


def test_pending_keeps_new_readers_out_until_exclusive() -> None:
    lock = DbLock()
    writer, reader, late = handles(3)
    lock.acquire(writer, SHARED)
    lock.acquire(reader, SHARED)
    lock.acquire(writer, RESERVED)
    assert not lock.acquire(writer, EXCLUSIVE)     # a reader is still there
    assert writer.level == PENDING
    assert not lock.acquire(late, SHARED)          # PENDING: no new readers
    lock.release(reader, NONE)
    assert lock.acquire(writer, EXCLUSIVE)
    assert writer.level == EXCLUSIVE
    assert not lock.acquire(late, SHARED)
    lock.release(writer, SHARED)                   # commit done, back to SHARED
    assert lock.acquire(late, SHARED)
    assert not lock.reserved()


def test_shared_to_exclusive_directly_for_hot_journal() -> None:
    lock = DbLock()
    a = LockHandle()
    assert lock.acquire(a, SHARED)
    assert lock.acquire(a, EXCLUSIVE)
    lock.release(a, NONE)
    assert (a.level, lock.shared, lock.owner) == (NONE, 0, None)


def test_release_is_idempotent_and_levels_never_go_up_by_release() -> None:
    lock = DbLock()
    a = LockHandle()
    lock.release(a, NONE)
    lock.acquire(a, SHARED)
    lock.release(a, SHARED)
    assert a.level == SHARED and lock.shared == 1
    lock.release(a, NONE)
    lock.release(a, NONE)
    assert lock.shared == 0


def test_impossible_requests_are_refused() -> None:
    lock = DbLock()
    a = LockHandle()
    with pytest.raises(ValueError):
        lock.acquire(a, PENDING)                   # SQLite never asks for PENDING
    with pytest.raises(ValueError):
        lock.acquire(a, RESERVED)                  # RESERVED needs SHARED first


# ---- through SQLite -----------------------------------------------------------------------


def lockstate(conn: apsw.Connection) -> int:
    """SQLITE_FCNTL_LOCKSTATE of the main database: the level our VFS holds."""
    level = ctypes.c_int(-1)
    conn.file_control("main", apsw.SQLITE_FCNTL_LOCKSTATE, ctypes.addressof(level))
    return level.value


def test_sqlite_levels_and_busy(archive: Path, conns: Connections) -> None:
    a = conns.connect(archive, busy_timeout_ms=0)
    b = conns.connect(archive, busy_timeout_ms=0)
    a.execute("CREATE TABLE t(x)")
    assert lockstate(a) == NONE
    a.execute("BEGIN IMMEDIATE")
    assert lockstate(a) == RESERVED
    with pytest.raises(apsw.BusyError):
        b.execute("BEGIN IMMEDIATE")               # a second writer waits its turn
    b.execute("BEGIN")
    assert b.execute("SELECT count(*) FROM t").fetchall() == [(0,)]   # readers continue
    assert lockstate(b) == SHARED
    a.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(apsw.BusyError):
        a.execute("COMMIT")                        # b still reads: a waits at PENDING
    assert lockstate(a) == PENDING
    b.execute("COMMIT")
    a.execute("COMMIT")
    assert lockstate(a) == NONE
    assert b.execute("SELECT count(*) FROM t").fetchall() == [(1,)]


def test_exclusive_transaction_blocks_readers(archive: Path, conns: Connections) -> None:
    a = conns.connect(archive, busy_timeout_ms=0)
    b = conns.connect(archive, busy_timeout_ms=0)
    a.execute("CREATE TABLE t(x)")
    a.execute("BEGIN EXCLUSIVE")
    assert lockstate(a) == EXCLUSIVE
    with pytest.raises(apsw.BusyError):
        b.execute("SELECT * FROM t").fetchall()
    a.execute("COMMIT")
    assert b.execute("SELECT * FROM t").fetchall() == []


def test_locking_mode_exclusive_keeps_the_lock(archive: Path, conns: Connections) -> None:
    a = conns.connect(archive, busy_timeout_ms=0)
    b = conns.connect(archive, busy_timeout_ms=0)
    a.execute("PRAGMA locking_mode=EXCLUSIVE")
    a.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    assert lockstate(a) == EXCLUSIVE
    with pytest.raises(apsw.BusyError):
        b.execute("SELECT * FROM t").fetchall()
    a.execute("PRAGMA locking_mode=NORMAL")
    a.execute("SELECT * FROM t").fetchall()        # the next access drops it
    assert b.execute("SELECT * FROM t").fetchall() == [(1,)]


def test_check_reserved_lock_sees_other_writer(archive: Path, conns: Connections) -> None:
    a = conns.connect(archive)
    a.execute("CREATE TABLE t(x)")
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO t VALUES (1)")
    assert cartfs.vfs.register().xAccess(a.filename + "-journal", apsw.SQLITE_ACCESS_EXISTS)
    b = conns.connect(archive)
    # b finds a journal; xCheckReservedLock says a live writer owns it: not hot, not rolled
    # back, and b sees the last committed state
    b.execute("BEGIN")
    assert b.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    b.execute("COMMIT")
    a.execute("ROLLBACK")
