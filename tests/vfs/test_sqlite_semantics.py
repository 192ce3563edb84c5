"""SQLite's own semantics through the cartridge VFS: big and many transactions, VACUUM,
ATTACH, large BLOBs, every journal mode, rollback — each ending with integrity_check."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import apsw
import pytest

import cartfs.vfs
import cartfs.vfs.vfs
from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams
from cartfs.vfs.nodes import MemoryNode
from cartfs.vfs.registry import REGISTRY

from .conftest import Connections, archive_files, fsck_ok


def integrity(conn: apsw.Connection, schema: str = "main") -> None:
    assert conn.execute(f"PRAGMA {schema}.integrity_check").fetchall() == [("ok",)]


def test_hundred_thousand_rows_in_one_transaction(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/data.db")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?,?,?)",
                         ((i, i * 7, f"row {i:06d}") for i in range(100_000)))
    assert conn.execute("SELECT count(*), sum(a) FROM t").fetchall() == \
        [(100_000, 7 * sum(range(100_000)))]
    integrity(conn)
    conn.close()
    again = conns.connect(archive, "/data.db", readonly=True)
    assert again.execute("SELECT b FROM t WHERE id=54321").fetchall() == [("row 054321",)]
    again.close()
    fsck_ok(archive)


@pytest.mark.parametrize("sync", ["OFF", "NORMAL"])
def test_thousand_single_row_transactions(archive: Path, conns: Connections,
                                          sync: str) -> None:
    count = 1000 if sync == "OFF" else 200  # each NORMAL commit is two real fsyncs
    conn = conns.connect(archive, "/many.db")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(count):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"v{i}",))
    assert conn.execute("SELECT count(*), count(DISTINCT v) FROM t").fetchall() == \
        [(count, count)]
    integrity(conn)
    conn.close()
    assert set(archive_files(archive)) == {"/many.db"}  # every journal was deleted


@pytest.mark.soak
def test_thousand_durable_transactions(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/many.db")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(1000):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"v{i}",))
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(1000,)]
    integrity(conn)


def test_vacuum_shrinks_and_keeps_data(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/vac.db")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, randomblob(500))",
                         ((i,) for i in range(20_000)))
    conn.execute("DELETE FROM t WHERE id % 4 != 0")
    before = archive_size(conn)
    conn.execute("VACUUM")
    after = archive_size(conn)
    assert after < before * 0.4
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(5000,)]
    integrity(conn)
    conn.close()
    assert set(archive_files(archive)) == {"/vac.db"}  # VACUUM's temp files left nothing


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every temp file the VFS holds in memory (rather than in an archive), as made."""
    made: list[object] = []

    class CountedMemoryNode(MemoryNode):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(cartfs.vfs.vfs, "MemoryNode", CountedMemoryNode)
    return made


def test_vacuum_copy_goes_through_the_archive(archive: Path, conns: Connections,
                                               in_memory: list[object]) -> None:
    """VACUUM's transient copy of the database is a nameless archive file, not memory: seen
    growing to the database's size while VACUUM runs, and gone (no orphan) afterwards."""
    conn = conns.connect(archive, "/vac.db")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, randomblob(4000))",
                         ((i,) for i in range(3000)))
    conn.execute("DELETE FROM t WHERE id % 10 = 0")
    conn.execute("PRAGMA cache_size=-1000")
    (entry,) = REGISTRY.open_entries()
    biggest = [0]

    def watch() -> bool:
        with entry.mutex:
            nodes = entry.nodes_locked()
        for ino, node in nodes.items():
            if entry.archive.getattr(ino).nlink == 0:
                biggest[0] = max(biggest[0], node.size)
        return False

    conn.set_progress_handler(watch, 100)
    conn.execute("VACUUM")
    conn.set_progress_handler(None)
    assert biggest[0] >= archive_size(conn) * 0.8
    assert in_memory == []
    assert entry.archive.statistics().open_inodes == 1  # only /vac.db is still open
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(2700,)]
    integrity(conn)
    conn.close()
    assert set(archive_files(archive)) == {"/vac.db"}
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
    assert report.ok and report.files == 1  # no orphan left behind


def archive_size(conn: apsw.Connection) -> int:
    ((page_count,),) = conn.execute("PRAGMA page_count").fetchall()
    ((page_size,),) = conn.execute("PRAGMA page_size").fetchall()
    assert isinstance(page_count, int) and isinstance(page_size, int)
    return page_count * page_size


def test_attach_second_database_in_same_archive(archive: Path, conns: Connections) -> None:
    main = conns.connect(archive, "/a.db")
    other_uri = cartfs.vfs.uri(archive, "/b.db")
    main.execute(f"ATTACH '{other_uri}' AS b")
    main.execute("CREATE TABLE main.t(x); CREATE TABLE b.u(y)")
    with main:  # one transaction over two databases: a super-journal
        main.execute("INSERT INTO main.t VALUES (1)")
        main.execute("INSERT INTO b.u VALUES (2)")
    with pytest.raises(apsw.ConstraintError), main:
        main.execute("INSERT INTO main.t VALUES (3)")
        main.execute("INSERT INTO b.u VALUES (4)")
        raise apsw.ConstraintError("abort both")
    assert main.execute("SELECT x FROM main.t").fetchall() == [(1,)]
    assert main.execute("SELECT y FROM b.u").fetchall() == [(2,)]
    integrity(main, "main")
    integrity(main, "b")
    main.close()
    assert set(archive_files(archive)) == {"/a.db", "/b.db"}


def test_attach_by_archive_parameter(archive: Path, conns: Connections) -> None:
    main = conns.connect(archive, "/a.db")
    main.execute(f"ATTACH 'file:/c.db?archive={archive}' AS c")
    main.execute("CREATE TABLE c.t(x); INSERT INTO c.t VALUES ('hello')")
    main.execute("DETACH c")
    other = conns.connect(archive, "/c.db")
    assert other.execute("SELECT x FROM t").fetchall() == [("hello",)]


def test_fifty_megabyte_blob(archive: Path, conns: Connections) -> None:
    blob = os.urandom(1 << 20) * 50  # 50 MiB (a repeated random MiB: compressible a bit)
    digest = hashlib.sha256(blob).hexdigest()
    conn = conns.connect(archive, "/blob.db")
    conn.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB)")
    with conn:
        conn.execute("INSERT INTO b VALUES (1, ?)", (blob,))
    conn.close()
    conn = conns.connect(archive, "/blob.db")
    ((back,),) = conn.execute("SELECT data FROM b WHERE id=1").fetchall()
    assert isinstance(back, bytes)
    assert len(back) == len(blob) and hashlib.sha256(back).hexdigest() == digest
    with conn.blob_open("main", "b", "data", 1, False) as handle:  # incremental blob I/O
        handle.seek(30 << 20)
        assert handle.read(1000) == blob[30 << 20:(30 << 20) + 1000]
    integrity(conn)


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "memory", "off", "wal"])
def test_journal_modes(archive: Path, conns: Connections, mode: str) -> None:
    conn = conns.connect(archive, "/j.db")
    assert conn.execute(f"PRAGMA journal_mode={mode}").fetchall() == [(mode,)]
    conn.execute("CREATE TABLE t(x)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(500)))
    if mode != "off":  # journal_mode=OFF has no rollback, by definition
        conn.execute("BEGIN")
        conn.execute("DELETE FROM t")
        conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(500,)]
    reader = conns.connect(archive, "/j.db")
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(500,)]
    integrity(conn)
    reader.close()
    conn.close()
    files = archive_files(archive)
    expected = {"delete": {"/j.db"}, "truncate": {"/j.db", "/j.db-journal"},
                "persist": {"/j.db", "/j.db-journal"}, "memory": {"/j.db"},
                "off": {"/j.db"}, "wal": {"/j.db"}}[mode]
    assert set(files) == expected
    if mode == "truncate":
        assert files["/j.db-journal"] == 0
    again = conns.connect(archive, "/j.db", readonly=True)
    assert again.execute("SELECT count(*) FROM t").fetchall() == [(500,)]


def test_wal_readers_see_snapshots(archive: Path, conns: Connections) -> None:
    writer = conns.connect(archive, "/w.db")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    reader = conns.connect(archive, "/w.db")
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    writer.execute("INSERT INTO t VALUES (2)")  # a writer does not wait for WAL readers
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(2,)]
    assert writer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)[0] == 0
    integrity(reader)


def test_wal_database_opens_read_only_after_close(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/w.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('kept')")
    conn.close()
    ro = conns.connect(archive, "/w.db", readonly=True)
    assert ro.execute("SELECT x FROM t").fetchall() == [("kept",)]
    assert ro.execute("PRAGMA journal_mode").fetchall() == [("wal",)]


def test_temp_tables_and_big_sorts_leave_nothing(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/s.db")
    conn.execute("PRAGMA cache_size=20")   # small caches: the sorter and temp db spill
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("CREATE TEMP TABLE tt(x)")
    conn.execute("CREATE TABLE t(x)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?)",
                         ((os.urandom(64).hex(),) for _ in range(20_000)))
        conn.execute("INSERT INTO tt SELECT x FROM t")
    rows = conn.execute("SELECT x FROM t ORDER BY x").fetchall()
    assert rows == sorted(rows)
    assert conn.execute("SELECT count(*) FROM tt").fetchall() == [(20_000,)]
    conn.close()
    assert set(archive_files(archive)) == {"/s.db"}


def test_page_granular_writes(archive: Path, conns: Connections) -> None:
    """Changing one row of a 16 MB database writes a few chunks, not the database."""
    conn = conns.connect(archive, "/big.db")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, randomblob(1000))",
                         ((i,) for i in range(16_000)))
    size = archive_size(conn)
    assert size > 16_000_000
    (entry,) = REGISTRY.open_entries()
    before = entry.archive.statistics().pager.bytes_written
    conn.execute("UPDATE t SET pad = randomblob(1000) WHERE id = 8000")
    written = entry.archive.statistics().pager.bytes_written - before
    assert 0 < written < 1_000_000, written   # a few 64 KiB chunks plus metadata


def test_rollback_restores_pages(archive: Path, conns: Connections) -> None:
    conn = conns.connect(archive, "/r.db")
    conn.execute("PRAGMA cache_size=5")  # force page spills into the file mid-transaction
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, zeroblob(2000))", ((i,) for i in range(300)))
    conn.execute("BEGIN")
    conn.execute("UPDATE t SET v = randomblob(2000)")
    conn.execute("DELETE FROM t WHERE id > 100")
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*), sum(length(v)), max(v) FROM t").fetchall() == \
        [(300, 600_000, bytes(2000))]
    integrity(conn)


def test_quiet_connection_is_committed_by_the_timer(archive: Path, conns: Connections) -> None:
    """synchronous=OFF never calls xSync; the background timer still commits within the
    commit interval (the pending write run included)."""
    conn = conns.connect(archive, "/quiet.db", options=OpenOptions(commit_interval=0.1))
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    (entry,) = REGISTRY.open_entries()
    txid = entry.archive.superblock.txid
    deadline = time.monotonic() + 10
    while entry.archive.superblock.txid == txid or entry.pending is not None:
        assert time.monotonic() < deadline, "nothing committed the quiet connection"
        time.sleep(0.02)
    assert entry.archive.statistics().dirty_bytes == 0


def test_wal_without_shared_memory_is_refused_clearly(archive: Path, conns: Connections,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """If no wal-index can be set up, WAL must not silently stay a rollback journal."""
    monkeypatch.setattr("cartfs.vfs.vfs.shadow_path", lambda *args: None)
    conn = conns.connect(archive, "/nowal.db")
    with pytest.raises(apsw.SQLError, match="WAL is not available"):
        conn.execute("PRAGMA journal_mode=WAL")
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
    assert conn.execute("PRAGMA journal_mode=truncate").fetchall() == [("truncate",)]
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")


def test_wal_reader_opened_first_follows_a_later_writer(archive: Path,
                                                         conns: Connections) -> None:
    """A read-only connection opens a WAL database that has no -wal file yet (so the archive
    is open read-only); then a writer in the same process reopens the archive writable and
    writes WAL frames. The reader must read those frames from the same archive file."""
    conn = conns.connect(archive, "/w.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.close()                                   # checkpointed; the -wal file is gone
    assert "/w.db-wal" not in archive_files(archive)
    ro = conns.connect(archive, "/w.db", readonly=True)
    assert ro.execute("SELECT v FROM t").fetchall() == [("a",)]
    rw = conns.connect(archive, "/w.db")           # upgrades the archive to writable
    rw.execute("INSERT INTO t VALUES (2, 'b')")
    rw.execute("CREATE TABLE u(x); INSERT INTO u VALUES (randomblob(100)), (randomblob(100))")
    assert ro.execute("SELECT v FROM t ORDER BY id").fetchall() == [("a",), ("b",)]
    assert ro.execute("SELECT count(*) FROM u").fetchall() == [(2,)]
    integrity(ro)
    rw.execute("INSERT INTO t VALUES (3, 'c')")
    rw.close()
    assert ro.execute("SELECT count(*) FROM t").fetchall() == [(3,)]
    integrity(ro)
    ro.close()
    again = conns.connect(archive, "/w.db", readonly=True)
    assert again.execute("SELECT count(*) FROM t").fetchall() == [(3,)]
    again.close()
    fsck_ok(archive)


def test_wal_shared_memory_comes_from_unix_not_the_default_vfs(archive: Path,
                                                                conns: Connections) -> None:
    """The shadow file is opened through "unix" by name, even when another VFS is default."""
    seen: list[str] = []

    class Probe(apsw.VFS):
        def __init__(self) -> None:
            super().__init__("cartfs-test-default", "unix", makedefault=True)

        def xOpen(self, name: str | apsw.URIFilename | None,  # type: ignore[override]
                  flags: list[int]) -> apsw.VFSFile:
            seen.append(name.filename() if isinstance(name, apsw.URIFilename) else str(name))
            return super().xOpen(name, flags)

    probe = Probe()
    try:
        conn = conns.connect(archive, "/w.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        assert conn.vfsname("main").endswith("/unix")
        conn.close()
    finally:
        probe.unregister()
    assert apsw.vfs_names()[0] == "unix"
    assert seen == []


def test_temp_files_never_carry_rows_into_a_plain_archive_while_an_encrypted_one_is_open(
        tmp_path: Path, conns: Connections, in_memory: list[object]) -> None:
    """Which archive a temp file goes to is a guess ("locked last"): with an encrypted
    archive open, a plain one takes no temp files (they could hold the encrypted one's rows
    in plain text); the encrypted one still takes its own."""
    secret = tmp_path / "secret.cart"
    Archive.create(secret, passphrase="pw", kdf=KdfParams.cheap()).close()
    plain = tmp_path / "plain.cart"
    Archive.create(plain).close()
    enc = conns.connect(secret, "/s.db", passphrase="pw")
    pub = conns.connect(plain, "/p.db")
    for conn in (enc, pub):
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
        with conn:
            conn.executemany("INSERT INTO t VALUES (?, randomblob(4000))",
                             ((i,) for i in range(1500)))
        conn.execute("PRAGMA cache_size=-500")  # VACUUM's copy spills to a temp file
    pub.execute("VACUUM")
    assert in_memory, "the plain archive took a temp file while an encrypted one is open"
    in_memory.clear()
    enc.execute("VACUUM")
    assert in_memory == []  # the encrypted archive's own temp files stay in it
    enc.close()
    pub.execute("VACUUM")  # no encrypted archive open any more: the plain one takes them
    assert in_memory == []
