"""Bad input gives one clear SQLite error (never a Python traceback from inside SQLite);
read-only, frozen, encrypted and busy archives behave as promised; several archives and
several databases at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import apsw
import pytest

import cartfs.vfs
from cartfs.core.archive import Archive
from cartfs.core.errors import PassphraseRequired
from cartfs.core.keys import KdfParams
from cartfs.vfs.registry import REGISTRY

from .conftest import PYTHON, Connections, archive_files, make_archive, subprocess_env


def raw_uri(archive: Path, db: str = "/x.db", **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"file:{db}?vfs=cartridge&archive={archive}{extra}"


# ---- bad input ------------------------------------------------------------------------------


def test_missing_archive(tmp_path: Path, conns: Connections) -> None:
    missing = tmp_path / "nope.cart"
    with pytest.raises(apsw.CantOpenError, match=r"nope\.cart: no such archive"):
        conns.connect(missing)
    with pytest.raises(apsw.CantOpenError, match=r"nope\.cart: no such archive"):
        conns.uri(raw_uri(missing))
    assert not missing.exists()  # nothing was created


def test_archive_is_a_directory_or_not_an_archive(tmp_path: Path, conns: Connections) -> None:
    with pytest.raises(apsw.CantOpenError, match="not a regular file"):
        conns.connect(tmp_path)
    junk = tmp_path / "junk.cart"
    junk.write_bytes(os.urandom(20_000))
    with pytest.raises(apsw.CantOpenError, match="Cartridge archive"):
        conns.connect(junk)


def test_file_that_is_not_a_database(archive: Path, conns: Connections) -> None:
    with Archive.open(archive) as a:
        a.write_file("/notes.txt", b"just some text, certainly not SQLite\n" * 200)
    with pytest.raises(apsw.NotADBError, match=r"notes\.txt: file is not a database"):
        conns.connect(archive, "/notes.txt")
    raw = conns.uri(raw_uri(archive, "/notes.txt"))  # raw apsw: at the first statement
    with pytest.raises(apsw.NotADBError):
        raw.execute("SELECT * FROM sqlite_master").fetchall()


def test_missing_database_without_create(archive: Path, conns: Connections) -> None:
    with pytest.raises(apsw.CantOpenError, match="no such database"):
        conns.connect(archive, "/absent.db", create=False)
    with pytest.raises(apsw.CantOpenError, match="no such database"):
        conns.connect(archive, "/absent.db", readonly=True)
    with Archive.open(archive, readonly=True) as a:
        assert a.listdir("/") == []


def test_a_missing_directory_is_cant_open_and_a_directory_is_no_database(
        archive: Path, conns: Connections) -> None:
    """As stock SQLite: a database is created in an existing directory, never a directory
    made for it (a typo in a path must not leave new directories behind)."""
    with pytest.raises(apsw.CantOpenError, match="no such file or directory"):
        conns.connect(archive, "/new/dirs/x.db")
    with pytest.raises(apsw.CantOpenError, match="no such database"):
        conns.connect(archive, "/other/y.db", create=False)
    conns.close_all()
    with Archive.open(archive) as a:
        assert not a.exists("/new") and not a.exists("/other")
        a.make_dir("/new/dirs", parents=True)
    conns.connect(archive, "/new/dirs/x.db").execute("CREATE TABLE t(x)")
    with pytest.raises(apsw.CantOpenError, match="not a directory"):
        conns.connect(archive, "/new/dirs/x.db/z.db")
    conns.close_all()
    with Archive.open(archive) as a:
        a.make_dir("/dir")
    with pytest.raises(apsw.CantOpenError, match="is a directory"):
        conns.connect(archive, "/dir")
    conns.connect(archive, "/dir/inside.db").execute("CREATE TABLE t(x)")


def test_uri_without_archive(conns: Connections) -> None:
    with pytest.raises(apsw.CantOpenError, match=r"which archive\? Add \?archive="):
        conns.uri("file:/somewhere/x.db?vfs=cartridge")


def test_plain_path_means_the_one_open_archive(tmp_path: Path, conns: Connections) -> None:
    """ATTACH '/x.db' and VACUUM INTO '/x.db' name files in the one archive open in the
    process; with several open that is ambiguous (refused) unless a default is set."""
    one, two = make_archive(tmp_path / "one.cart"), make_archive(tmp_path / "two.cart")
    a = conns.connect(one, "/a.db")
    a.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    a.execute("ATTACH '/other.db' AS o")
    a.execute("CREATE TABLE o.u(y); INSERT INTO o.u VALUES (2)")
    a.execute("VACUUM INTO '/bak.db'")
    conns.connect(two, "/b.db").execute("SELECT 1").fetchall()   # now two archives are open
    with pytest.raises(apsw.CantOpenError):
        a.execute("ATTACH '/third.db' AS t3")
    with pytest.raises(apsw.CantOpenError, match=r"which archive\? Several are open"):
        conns.uri("file:/third.db?vfs=cartridge")
    with cartfs.vfs.default_archive(two):
        a.execute("ATTACH '/third.db' AS t3")
        a.execute("CREATE TABLE t3.z(x)")
    assert REGISTRY.default_archive is None
    a.execute("DETACH o")
    a.execute("DETACH t3")
    assert a.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    for conn in conns.opened:
        conn.close()
    with Archive.open(one, readonly=True) as arch:
        assert sorted(arch.listdir("/")) == ["a.db", "bak.db", "other.db"]
    with Archive.open(two, readonly=True) as arch:
        assert sorted(arch.listdir("/")) == ["b.db", "third.db"]


def test_archive_busy_in_another_process(archive: Path, conns: Connections) -> None:
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys, time\nfrom cartfs.core.archive import Archive\n"
         "a = Archive.open(sys.argv[1]); print('open', flush=True); time.sleep(60)",
         str(archive)], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        started = time.monotonic()
        with pytest.raises(apsw.BusyError, match="in use by another process"):
            conns.connect(archive, busy_timeout_ms=300)   # waits, then gives up
        assert time.monotonic() - started >= 0.25
        with pytest.raises(apsw.BusyError, match="in use by another process"):
            conns.uri(raw_uri(archive))                   # a raw open cannot wait
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    conns.connect(archive).execute("CREATE TABLE t(x)")  # free again


HOLDER = """
import sys
import cartfs.vfs
conn = cartfs.vfs.connect(sys.argv[1], "/app.db", readonly=sys.argv[2] == "ro")
conn.execute("SELECT count(*) FROM t").fetchall()
print("open", flush=True)
sys.stdin.readline()
conn.close()
print("closed", flush=True)
sys.stdin.readline()
"""


class VfsHolder:
    """Another process with a connection (``ro`` or ``rw``) to /app.db through the VFS."""

    def __init__(self, archive: Path, mode: str) -> None:
        self.proc = subprocess.Popen([PYTHON, "-c", HOLDER, str(archive), mode],
                                     env=subprocess_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.say() == "open\n"

    def say(self, line: str | None = None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def test_two_processes_writer_holds_the_archive(archive: Path, conns: Connections) -> None:
    """While another process has a (writable) connection open, this one cannot open the
    archive at all, not even to read: connect() waits its busy timeout, then BusyError.
    Once the other process closes its connection, a waiting connect() gets in."""
    fill(archive)
    holder = VfsHolder(archive, "rw")
    try:
        for readonly in (False, True):
            started = time.monotonic()
            with pytest.raises(apsw.BusyError, match="in use by another process"):
                conns.connect(archive, "/app.db", readonly=readonly, busy_timeout_ms=300)
            assert time.monotonic() - started >= 0.25
        with pytest.raises(apsw.BusyError, match="in use by another process"):
            conns.uri(raw_uri(archive, "/app.db"))        # a raw open cannot wait
        waiting: list[object] = []
        waiter = threading.Thread(target=lambda: waiting.append(
            conns.connect(archive, "/app.db", busy_timeout_ms=30_000)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()                          # still waiting for the archive
        assert holder.say("close\n") == "closed\n"
        waiter.join(timeout=60)
        assert len(waiting) == 1
        conn = waiting[0]
        assert isinstance(conn, apsw.Connection)
        conn.execute("INSERT INTO t VALUES ('mine now')")
    finally:
        holder.close()


def test_two_processes_readers_share_and_keep_a_writer_out(archive: Path,
                                                            conns: Connections) -> None:
    """Read-only connections in two processes share the archive; a writer cannot get in
    until every reader has closed."""
    fill(archive)
    holder = VfsHolder(archive, "ro")
    try:
        ro = conns.connect(archive, "/app.db", readonly=True, busy_timeout_ms=300)
        assert ro.execute("SELECT x FROM t").fetchall() == [("stored",)]
        ro.close()
        with pytest.raises(apsw.BusyError, match="in use by another process"):
            conns.connect(archive, "/app.db", busy_timeout_ms=300)
    finally:
        holder.close()
    conns.connect(archive, "/app.db").execute("INSERT INTO t VALUES ('writer')")


def test_connect_waits_for_another_process_to_let_go(archive: Path, conns: Connections
                                                     ) -> None:
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys, time\nfrom cartfs.core.archive import Archive\n"
         "a = Archive.open(sys.argv[1]); print('open', flush=True); time.sleep(0.5); "
         "a.close()", str(archive)], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        conns.connect(archive, busy_timeout_ms=20_000).execute("CREATE TABLE t(x)")
    finally:
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


# ---- read-only, frozen, encrypted -----------------------------------------------------------


def fill(archive: Path, db: str = "/app.db") -> None:
    conn = cartfs.vfs.connect(archive, db)
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('stored')")
    conn.close()


def test_read_only_connection_beside_a_writer(archive: Path, conns: Connections) -> None:
    fill(archive)
    ro = conns.uri(raw_uri(archive, "/app.db", mode="ro"), apsw.SQLITE_OPEN_URI
                   | apsw.SQLITE_OPEN_READONLY)
    rw = conns.connect(archive, "/app.db")
    with pytest.raises(apsw.ReadOnlyError):
        ro.execute("INSERT INTO t VALUES ('no')")
    rw.execute("INSERT INTO t VALUES ('yes')")
    assert ro.execute("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_read_only_archive_is_reopened_for_a_writer(archive: Path, conns: Connections
                                                    ) -> None:
    fill(archive)
    ro = conns.connect(archive, "/app.db", readonly=True)
    assert ro.execute("SELECT x FROM t").fetchall() == [("stored",)]
    (entry,) = REGISTRY.open_entries()
    assert not entry.writable
    rw = conns.connect(archive, "/app.db")             # reopens the archive writable
    assert REGISTRY.open_entries()[0].writable
    rw.execute("INSERT INTO t VALUES ('more')")
    assert ro.execute("SELECT count(*) FROM t").fetchall() == [(2,)]
    with pytest.raises(apsw.ReadOnlyError):
        ro.execute("INSERT INTO t VALUES ('no')")      # the connection stays read-only


def test_frozen_archive_opens_read_only(tmp_path: Path, conns: Connections) -> None:
    source = make_archive(tmp_path / "live.cart")
    fill(source)
    frozen = tmp_path / "frozen.cart"
    with Archive.open(source) as a:
        a.freeze(str(frozen))
    conn = conns.connect(frozen, "/app.db")            # asked writable: read-only anyway
    assert conn.readonly("main")
    assert conn.execute("SELECT x FROM t").fetchall() == [("stored",)]
    with pytest.raises(apsw.ReadOnlyError):
        conn.execute("INSERT INTO t VALUES ('no')")
    raw = conns.uri(raw_uri(frozen, "/app.db"))
    assert raw.execute("SELECT x FROM t").fetchall() == [("stored",)]
    with pytest.raises(apsw.CantOpenError, match="read-only"):
        conns.connect(frozen, "/new.db")


def test_encrypted_archive(tmp_path: Path, conns: Connections,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.cart"
    Archive.create(path, passphrase="open sesame", kdf=KdfParams.cheap()).close()
    monkeypatch.delenv("CARTFS_PASSPHRASE", raising=False)
    with pytest.raises(apsw.CantOpenError, match="passphrase") as info:
        conns.connect(path)
    assert isinstance(info.value.__cause__, PassphraseRequired)
    with pytest.raises(apsw.CantOpenError):
        conns.connect(path, passphrase="wrong")
    conn = conns.connect(path, passphrase="open sesame")
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('hidden')")
    conn.close()
    key = tmp_path / "key"
    key.write_text("open sesame\n")
    raw = conns.uri(raw_uri(path, "/test.db", key_file=str(key)))
    assert raw.execute("SELECT x FROM t").fetchall() == [("hidden",)]
    raw.close()
    assert b"hidden" not in path.read_bytes()
    with pytest.raises(apsw.CantOpenError, match="cannot read key file"):
        conns.uri(raw_uri(path, "/test.db", key_file=str(tmp_path / "no-such-key")))
    monkeypatch.setenv("CARTFS_PASSPHRASE", "open sesame")
    assert conns.connect(path).execute("SELECT x FROM t").fetchall() == [("hidden",)]


def test_binary_key_file(tmp_path: Path, conns: Connections) -> None:
    """The same key-file rule as the CLI and the mount: a binary file is all key."""
    secret = b"\x00\xff\n" + bytes(range(40))
    key = tmp_path / "key.bin"
    key.write_bytes(secret)
    path = tmp_path / "bin.cart"
    Archive.create(path, passphrase=secret, kdf=KdfParams.cheap()).close()
    conn = conns.uri(raw_uri(path, "/k.db", key_file=str(key)))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


# ---- URI parameters -------------------------------------------------------------------------


def main_db_lock(archive: Path, db: str = "/app.db") -> tuple[int, object]:
    """(SHARED holders, owner above SHARED) of a database's lock in this process."""
    (entry,) = REGISTRY.open_entries()
    ino = entry.lookup(db)
    assert ino is not None
    with entry.mutex:
        lock = entry.nodes_locked()[ino].lock
    return lock.shared, lock.owner


def test_uri_immutable(archive: Path, conns: Connections) -> None:
    """immutable=1: read-only, no locks, no journal; the archive is opened read-only."""
    fill(archive)
    im = conns.uri(raw_uri(archive, "/app.db", immutable="1"),
                   apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    assert im.readonly("main")
    assert not REGISTRY.open_entries()[0].writable
    with im:
        assert im.execute("SELECT x FROM t").fetchall() == [("stored",)]
        assert main_db_lock(archive) == (0, None)
    with pytest.raises(apsw.ReadOnlyError):
        im.execute("INSERT INTO t VALUES ('no')")
    im.close()
    assert set(archive_files(archive)) == {"/app.db"}


def test_uri_nolock(archive: Path, conns: Connections) -> None:
    """nolock=1: reads and writes work without SQLite asking the VFS for any lock."""
    fill(archive)
    nl = conns.uri(raw_uri(archive, "/app.db", nolock="1"))
    nl.execute("BEGIN IMMEDIATE")
    nl.execute("INSERT INTO t VALUES ('unlocked')")
    assert main_db_lock(archive) == (0, None)             # not even SHARED was taken
    nl.execute("COMMIT")
    assert nl.execute("SELECT count(*) FROM t").fetchall() == [(2,)]
    assert nl.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    nl.close()
    assert set(archive_files(archive)) == {"/app.db"}


# ---- several archives, several databases -----------------------------------------------------


def test_several_archives_and_databases_at_once(tmp_path: Path, conns: Connections) -> None:
    one, two = make_archive(tmp_path / "one.cart"), make_archive(tmp_path / "two.cart")
    dbs = {(arch, db): conns.connect(arch, db) for arch in (one, two)
           for db in ("/app.db", "/other.db")}
    for (arch, db), conn in dbs.items():
        conn.execute("CREATE TABLE t(who)")
        conn.execute("INSERT INTO t VALUES (?)", (f"{arch.name}{db}",))
    for (arch, db), conn in dbs.items():  # the same path in two archives: two databases
        assert conn.execute("SELECT who FROM t").fetchall() == [(f"{arch.name}{db}",)]
    x = conns.connect(one, "/x.db")
    x.execute(f"ATTACH '{cartfs.vfs.uri(two, '/app.db')}' AS other")
    with x:  # one transaction across two archives
        x.execute("CREATE TABLE main.mine(v)")
        x.execute("INSERT INTO other.t VALUES ('via attach')")
    assert dbs[(two, "/app.db")].execute("SELECT count(*) FROM t").fetchall() == [(2,)]
    assert x.execute("SELECT count(*) FROM main.mine").fetchall() == [(0,)]


def test_same_path_by_archive_parameter_is_refused_clearly(tmp_path: Path,
                                                          conns: Connections) -> None:
    one, two = make_archive(tmp_path / "one.cart"), make_archive(tmp_path / "two.cart")
    conns.uri(raw_uri(one, "/app.db")).execute("CREATE TABLE t(x)")
    with pytest.raises(apsw.CantOpenError, match=r"already open from .*one\.cart"):
        conns.uri(raw_uri(two, "/app.db"))
    conns.uri(raw_uri(two, "/other.db")).execute("CREATE TABLE t(x)")
    conns.connect(two, "/app.db").execute("CREATE TABLE t(x)")  # qualified: fine


def test_connections_share_one_archive(archive: Path, conns: Connections) -> None:
    a = conns.connect(archive, "/a.db")
    b = conns.uri(raw_uri(archive, "/b.db"))
    c = conns.connect(archive, "/a.db")
    for conn in (a, b, c):
        conn.execute("SELECT 1").fetchall()
    (entry,) = REGISTRY.open_entries()
    assert entry.refs == 3
    a.close()
    b.close()
    c.close()
    assert REGISTRY.open_entries() == []  # the last close closed the archive
    Archive.open(archive).close()


def test_reopening_for_writing_fails_cleanly_while_another_process_reads(
        archive: Path, conns: Connections) -> None:
    fill(archive)
    reader = subprocess.Popen(
        [PYTHON, "-c", "import sys, time\nfrom cartfs.core.archive import Archive\n"
         "a = Archive.open(sys.argv[1], readonly=True); print('open', flush=True); "
         "time.sleep(60)", str(archive)], env=subprocess_env(), stdout=subprocess.PIPE,
        text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        ro = conns.connect(archive, "/app.db", readonly=True)   # readers share the archive
        with pytest.raises(apsw.BusyError, match="cannot be reopened for writing"):
            conns.connect(archive, "/app.db", busy_timeout_ms=300)
        assert ro.execute("SELECT x FROM t").fetchall() == [("stored",)]
    finally:
        reader.kill()
        reader.wait()
        if reader.stdout is not None:
            reader.stdout.close()
