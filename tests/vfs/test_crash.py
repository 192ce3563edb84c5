"""A writer process SIGKILLed mid-transaction, or right after a COMMIT returned: after
reopening, the database is exactly at the last committed transaction and whole.

The writer's archive commits every 20 ms on its own (``commit_interval``), so half-done
transactions really reach the disk — database pages spilled from a tiny page cache, with
their rollback journal (or WAL frames) — and recovery really has work to do: the test
checks that a hot journal (or a WAL) was left behind before it reopens.
"""

from __future__ import annotations

import inspect
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck

from .conftest import PYTHON, Connections, fsck_ok, subprocess_env

WRITER = r"""
import sys, time
import cartfs.vfs
from cartfs.core.archive import OpenOptions

archive, mode = sys.argv[1], sys.argv[2]
conn = cartfs.vfs.connect(archive, "/crash.db", options=OpenOptions(commit_interval=0.02))
conn.execute(f"PRAGMA journal_mode={mode}")
conn.execute("PRAGMA cache_size=8")
conn.execute(SCHEMA)
((txn,),) = conn.execute("SELECT coalesce(max(txn), 0) FROM t").fetchall()
while True:
    txn += 1
    conn.execute("BEGIN")
    first_half(conn, txn)
    print(f"inside {txn}", flush=True)
    for _ in range(HALF):
        conn.execute(INSERT, (txn,))
        time.sleep(0.004)
    conn.execute("COMMIT")
    print(f"committed {txn}", flush=True)
"""

SCHEMA = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, txn INT, ver INT, pad BLOB)"
INSERT = "INSERT INTO t(txn, ver, pad) VALUES (?, 0, zeroblob(3000))"
HALF = 40


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs, wait for it, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def first_half(conn: Any, txn: int) -> None:
    """New rows, then an update spread over every page written so far."""
    for _ in range(HALF):
        conn.execute(INSERT, (txn,))
    conn.execute("UPDATE t SET ver = ? WHERE id % 7 = ?", (txn, txn % 7))


def expected_rows(committed: int) -> list[tuple[int, int, int, int]]:
    """The table after ``committed`` whole transactions, replayed in plain SQLite."""
    mem = sqlite3.connect(":memory:")
    mem.execute(SCHEMA)
    for txn in range(1, committed + 1):
        first_half(mem, txn)
        for _ in range(HALF):
            mem.execute(INSERT, (txn,))
    return mem.execute(ROWS).fetchall()


ROWS = "SELECT id, txn, ver, length(pad) FROM t ORDER BY id"


def kill_writer(archive: Path, mode: str, when: str, target: int) -> int:
    """Run the writer; SIGKILL it at "inside TARGET" (+0.1 s) or at "committed TARGET".
    Returns the last transaction whose COMMIT had returned."""
    script = "\n".join([
        "from typing import Any",
        f"SCHEMA, INSERT, HALF = {SCHEMA!r}, {INSERT!r}, {HALF}",
        inspect.getsource(first_half),
        WRITER,
    ])
    proc = subprocess.Popen([PYTHON, "-c", script, str(archive), mode], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, number = line.split()
            if word == "committed":
                last = int(number)
            if word == when and int(number) == target:
                if when == "inside":
                    time.sleep(0.1)  # well into the slow second half of the transaction
                proc.send_signal(signal.SIGKILL)
                break
        else:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"writer exited early: {err}")
    finally:
        reap(proc)
    assert proc.returncode == -signal.SIGKILL
    return last


def leftovers(archive: Path) -> dict[str, int]:
    with Archive.open(archive, readonly=True) as a:
        return {name: a.stat("/" + name).size for name in a.listdir("/")}


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "wal"])
def test_killed_mid_transaction(archive: Path, conns: Connections, mode: str) -> None:
    last = kill_writer(archive, mode, "inside", 4)
    assert last == 3
    files = leftovers(archive)
    side = "/crash.db-wal" if mode == "wal" else "/crash.db-journal"
    assert files.get(side.lstrip("/"), 0) > 0, f"no hot journal/WAL was left: {files}"
    if mode == "wal":  # a reader can recover a WAL by itself (in shared memory)
        ro = conns.connect(archive, "/crash.db", readonly=True)
        assert ro.execute(ROWS).fetchall() == expected_rows(last)
        ro.close()
    else:  # a hot journal needs a writer: a clear error, not stale or torn data
        with pytest.raises(apsw.ReadOnlyError, match="rolled back first"):
            conns.connect(archive, "/crash.db", readonly=True)
    conn = conns.connect(archive, "/crash.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute(ROWS).fetchall() == expected_rows(last)
    conn.close()
    fsck_ok(archive)


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "wal"])
def test_killed_right_after_commit(archive: Path, conns: Connections, mode: str) -> None:
    """A transaction is durable in the archive once COMMIT returns (synchronous=FULL)."""
    last = kill_writer(archive, mode, "committed", 3)
    assert last == 3
    conn = conns.connect(archive, "/crash.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute(ROWS).fetchall() == expected_rows(3)


@pytest.mark.soak
@pytest.mark.parametrize("round_", range(12))
def test_killed_at_random_moments(tmp_path: Path, conns: Connections, round_: int) -> None:
    """Kill after a random delay, again and again on one archive; every reopen finds the
    last committed transaction, whole."""
    rnd = random.Random(round_)
    mode = rnd.choice(["delete", "truncate", "persist", "wal"])
    archive = tmp_path / f"soak-{round_}.cart"
    Archive.create(archive).close()
    committed = 0
    for _ in range(3):
        target = committed + rnd.randint(1, 3)
        last = kill_writer_after(archive, mode, rnd.uniform(0.0, 0.15), target)
        conn = conns.connect(archive, "/crash.db")
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute(ROWS).fetchall()
        conn.close()
        done = max(t for (_, t, _, _) in rows) if rows else 0
        assert done == max(last, committed), (done, last, committed)
        assert rows == expected_rows(done)
        committed = done
    fsck_ok(archive)


def kill_writer_after(archive: Path, mode: str, delay: float, target: int) -> int:
    """Like kill_writer, but the kill lands ``delay`` seconds after "inside TARGET"."""
    script = "\n".join(["from typing import Any",
                        f"SCHEMA, INSERT, HALF = {SCHEMA!r}, {INSERT!r}, {HALF}",
                        inspect.getsource(first_half), WRITER])
    proc = subprocess.Popen([PYTHON, "-c", script, str(archive), mode], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, number = line.split()
            if word == "committed":
                last = int(number)
            if word == "inside" and int(number) >= target:
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        reap(proc)
    return last


VACUUMER = r"""
import sys, time
import cartfs.vfs
from cartfs.vfs.registry import REGISTRY

conn = cartfs.vfs.connect(sys.argv[1], "/vac.db")
conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
with conn:
    conn.executemany("INSERT INTO t VALUES (?, randomblob(3000))", ((i,) for i in range(2000)))
(entry,) = REGISTRY.open_entries()
db_ino = entry.lookup("/vac.db")

def progress():
    with entry.mutex:
        temp = [n for ino, n in entry.nodes_locked().items() if ino != db_ino]
    if temp and temp[0].size > 2_000_000:
        entry.sync()  # what the commit timer does: the half-written copy reaches the disk
        print("copying", flush=True)
        time.sleep(60)
    return False

conn.set_progress_handler(progress, 100)
conn.execute("VACUUM")
"""


def test_killed_during_vacuum_leaves_no_temp_file(archive: Path, conns: Connections) -> None:
    """VACUUM's transient copy is a nameless archive file: a writer killed while it is
    half-written leaves an orphan that the next writable open reclaims."""
    proc = subprocess.Popen([PYTHON, "-c", VACUUMER, str(archive)], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "copying\n", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        reap(proc)
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
    assert report.ok and report.files == 2  # the database and the orphaned copy
    assert set(leftovers(archive)) == {"vac.db"}
    conn = conns.connect(archive, "/vac.db")  # a writable open reclaims the orphan
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(2000,)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
    assert report.ok and report.files == 1
