"""Several connections in several threads on one database: SQLITE_BUSY and the busy
handler sort them out; no row is lost or written twice, and the file stays whole."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import pytest

import cartfs.vfs

from .conftest import Connections, fsck_ok

ROWS_PER_WRITER = 150


def run_threads(targets: list[threading.Thread]) -> None:
    for t in targets:
        t.start()
    for t in targets:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_two_writers_in_two_threads(archive: Path, conns: Connections, mode: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers with busy_timeout. The first transaction is a forced collision: writer 0
    holds a write transaction until writer 1, asking for one, is seen waiting in SQLite's
    busy handler (which sleeps through the VFS's xSleep); then both race freely."""
    setup = conns.connect(archive, "/shared.db")
    setup.execute(f"PRAGMA journal_mode={mode}")
    setup.execute("PRAGMA synchronous=OFF")
    setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, writer INTEGER, n INTEGER, "
                  "UNIQUE(writer, n))")
    errors: list[BaseException] = []
    holding = threading.Event()   # writer 0 is inside its first write transaction
    waiting = threading.Event()   # writer 1 is in the busy handler, waiting for it
    threads: list[threading.Thread] = []
    vfs = cartfs.vfs.register()
    real_sleep = vfs.xSleep

    def sleep(microseconds: int) -> int:  # busy_timeout's waits come through here
        if len(threads) == 2 and threading.current_thread() is threads[1]:
            waiting.set()
        return real_sleep(microseconds)

    monkeypatch.setattr(vfs, "xSleep", sleep)

    def writer(k: int) -> None:
        conn = cartfs.vfs.connect(archive, "/shared.db", busy_timeout_ms=60_000)
        try:
            conn.execute("PRAGMA synchronous=OFF")
            if k == 1:
                assert holding.wait(timeout=30)
            for n in range(ROWS_PER_WRITER):
                # a read-modify-write racing the other thread: IMMEDIATE takes the write
                # lock first (a deferred one could only fail with BUSY: SQLite's deadlock rule)
                conn.execute("BEGIN IMMEDIATE")
                ((count,),) = conn.execute("SELECT count(*) FROM t WHERE writer=?",
                                           (k,)).fetchall()
                conn.execute("INSERT INTO t(writer, n) VALUES (?, ?)", (k, count))
                if k == 0 and n == 0:
                    holding.set()
                    assert waiting.wait(timeout=30), "writer 1 never waited for the lock"
                conn.execute("COMMIT")
                assert count == n
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            holding.set()
        finally:
            conn.close()

    threads.extend(threading.Thread(target=writer, args=(k,)) for k in range(2))
    run_threads(threads)
    assert not errors, errors
    assert waiting.is_set()
    rows = setup.execute("SELECT writer, count(*), count(DISTINCT n), min(n), max(n) "
                         "FROM t GROUP BY writer ORDER BY writer").fetchall()
    assert rows == [(k, ROWS_PER_WRITER, ROWS_PER_WRITER, 0, ROWS_PER_WRITER - 1)
                    for k in range(2)]
    assert setup.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    setup.close()
    fsck_ok(archive)


def test_without_busy_timeout_a_writer_gets_busy(archive: Path) -> None:
    a = cartfs.vfs.connect(archive, "/b.db", busy_timeout_ms=0)
    b = cartfs.vfs.connect(archive, "/b.db", busy_timeout_ms=0)
    try:
        a.execute("CREATE TABLE t(x)")
        a.execute("BEGIN IMMEDIATE")
        outcome: list[object] = []

        def other() -> None:
            try:
                b.execute("INSERT INTO t VALUES (1)")
                outcome.append("inserted")
            except apsw.BusyError as exc:
                outcome.append(exc)

        run_threads([threading.Thread(target=other)])
        assert isinstance(outcome[0], apsw.BusyError)
        a.execute("COMMIT")
        b.execute("INSERT INTO t VALUES (2)")
    finally:
        b.close()
        a.close()


def test_readers_and_a_writer(archive: Path, conns: Connections) -> None:
    """Readers in threads always see a whole committed transaction (pairs of rows)."""
    setup = conns.connect(archive, "/rw.db")
    setup.execute("PRAGMA synchronous=OFF")
    setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pair INTEGER)")
    stop = threading.Event()
    problems: list[object] = []

    def reader() -> None:
        conn = cartfs.vfs.connect(archive, "/rw.db", busy_timeout_ms=60_000)
        try:
            while not stop.is_set():
                ((n,),) = conn.execute("SELECT count(*) FROM t").fetchall()
                if not isinstance(n, int) or n % 2:
                    problems.append(f"saw half a transaction: {n} rows")
        except BaseException as exc:
            problems.append(exc)
        finally:
            conn.close()

    def writer() -> None:
        conn = cartfs.vfs.connect(archive, "/rw.db", busy_timeout_ms=60_000)
        try:
            conn.execute("PRAGMA synchronous=OFF")
            for i in range(200):
                with conn:
                    conn.execute("INSERT INTO t(pair) VALUES (?)", (i,))
                    conn.execute("INSERT INTO t(pair) VALUES (?)", (i,))
        except BaseException as exc:
            problems.append(exc)
        finally:
            stop.set()
            conn.close()

    run_threads([threading.Thread(target=reader) for _ in range(2)]
                + [threading.Thread(target=writer)])
    assert not problems, problems
    assert setup.execute("SELECT count(*) FROM t").fetchall() == [(400,)]
    setup.close()
