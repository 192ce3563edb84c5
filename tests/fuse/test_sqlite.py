"""Stock sqlite3 (the CLI, not our library) on a database inside the mount: rollback journal
and WAL, a big transaction, many small ones, two writers at once, integrity checks before
and after a remount."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Mounts, fsck_ok

pytestmark = pytest.mark.skipif(shutil.which("sqlite3") is None,
                                reason="the sqlite3 command-line tool is not installed")


def sql(db: Path, script: str, timeout: float = 120) -> str:
    proc = subprocess.run(["sqlite3", "-bail", str(db)], input=script, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


BIG_TXN = """
BEGIN;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, value REAL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000)
INSERT INTO t(name, value) SELECT printf('row-%06d', i), i * 0.5 FROM c;
COMMIT;
"""


def _small_txns(count: int, table: str = "s") -> str:
    body = "".join(f"INSERT INTO {table}(v) VALUES ('txn {i}');\n" for i in range(count))
    return f"PRAGMA busy_timeout = 10000;\n{body}"


# Each rollback-journal transaction (synchronous=FULL, SQLite's default) costs two fsyncs,
# i.e. two durable archive commits; the host disk decides the time. Measured here: the whole
# DELETE-mode test with 1,000 transactions in ~4.3 s, so both modes run the full 1,000.
SMALL = {"delete": 1000, "wal": 1000}


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_journal_modes(mounts: Mounts, journal: str) -> None:
    _journal_modes(mounts, journal, SMALL[journal])


def _journal_modes(mounts: Mounts, journal: str, small: int) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    db = mnt / "test.db"
    assert sql(db, f"PRAGMA journal_mode = {journal};") == journal
    sql(db, BIG_TXN)
    sql(db, "CREATE TABLE s(id INTEGER PRIMARY KEY, v TEXT);")
    sql(db, f"PRAGMA journal_mode = {journal};\n" + _small_txns(small))
    assert sql(db, "SELECT count(*), sum(value) FROM t;") == "100000|2500025000.0"
    assert sql(db, "SELECT count(*) FROM s;") == str(small)
    assert sql(db, "PRAGMA integrity_check;") == "ok"
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    db = mnt / "test.db"
    assert sql(db, "PRAGMA integrity_check;") == "ok"
    assert sql(db, "SELECT count(*) FROM t; SELECT count(*) FROM s;") == f"100000\n{small}"
    mounts.unmount()


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_two_writers(mounts: Mounts, journal: str) -> None:
    """Two sqlite3 processes inserting at once, serialised by SQLite's own locks."""
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    db = mnt / "shared.db"
    sql(db, f"PRAGMA journal_mode = {journal};\n"
            "CREATE TABLE s(id INTEGER PRIMARY KEY, v TEXT);")
    each = SMALL[journal] // 4
    script = mounts.tmp / "writer.sql"
    script.write_text(_small_txns(each))
    procs = []
    for _ in range(2):
        with open(script) as stdin:  # both start before either finishes
            procs.append(subprocess.Popen(["sqlite3", "-bail", str(db)], stdin=stdin,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert sql(db, "SELECT count(*) FROM s;") == str(2 * each)
    assert sql(db, "PRAGMA integrity_check;") == "ok"
    mounts.unmount()
    mnt = mounts.mount(archive)
    assert sql(mnt / "shared.db", "PRAGMA integrity_check; SELECT count(*) FROM s;") \
        == f"ok\n{2 * each}"
    mounts.unmount()
