"""The VFS contract method by method, through apsw's C layer where it matters: short reads
zero-fill and report SQLITE_IOERR_SHORT_READ, sizes and truncation, delete-on-close, xAccess,
xDelete (SQLITE_IOERR_DELETE_NOENT), xFullPathname, exclusive creation, device properties."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw
import pytest

import cartfs.vfs
from cartfs.core.archive import Archive
from cartfs.vfs.file import CAPABILITIES
from cartfs.vfs.registry import REGISTRY

from .conftest import archive_files, fsck_ok

RW_CREATE = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
JOURNAL = apsw.SQLITE_OPEN_MAIN_JOURNAL
T = TypeVar("T")


def open_file(name: str | None, flags: int) -> apsw.VFSFile:
    """A file opened through the cartridge VFS by SQLite's C entry point (apsw forwards
    VFSFile calls to it), so the results pass the same C code SQLite sees."""
    return apsw.VFSFile(cartfs.vfs.VFS_NAME, name, [flags, 0])


def test_read_write_size_truncate_and_short_reads(archive: Path) -> None:
    f = open_file(f"{archive}/j.bin", JOURNAL | RW_CREATE)
    try:
        assert f.xFileSize() == 0
        f.xWrite(b"hello world", 0)
        f.xWrite(b"!", 100_000)               # past the end: a hole of zeros
        assert f.xFileSize() == 100_001
        assert f.xRead(11, 0) == b"hello world"
        assert f.xRead(4, 50_000) == bytes(4)
        # 20 bytes asked at 99_990, 11 exist: apsw saw SQLITE_IOERR_SHORT_READ (not an error)
        # and gives back what was there (it strips the zero fill it was handed)
        assert f.xRead(20, 99_990) == bytes(10) + b"!"
        assert f.xRead(10, 200_000) == b""
        f.xTruncate(5)
        assert f.xFileSize() == 5 and f.xRead(5, 0) == b"hello"
        f.xTruncate(70_000)                    # growing truncate: zeros
        assert f.xFileSize() == 70_000 and f.xRead(6, 0) == b"hello\0"
        f.xSync(apsw.SQLITE_SYNC_NORMAL)
        assert f.xSectorSize() == 4096
        assert f.xDeviceCharacteristics() == CAPABILITIES
    finally:
        f.xClose()
    assert archive_files(archive) == {"/j.bin": 70_000}


def test_python_level_short_read_returns_what_exists(archive: Path) -> None:
    vfs = cartfs.vfs.register()
    flags = [JOURNAL | RW_CREATE, 0]
    handle = vfs.xOpen(f"{archive}/s.bin", flags)
    try:
        handle.xWrite(b"abc", 0)
        assert handle.xRead(10, 0) == b"abc"   # apsw zero-fills the other 7 bytes
        assert handle.xRead(10, 3) == b""
    finally:
        handle.xClose()


def test_capabilities_are_the_documented_ones() -> None:
    documented = (apsw.SQLITE_IOCAP_ATOMIC | apsw.SQLITE_IOCAP_SAFE_APPEND
                  | apsw.SQLITE_IOCAP_SEQUENTIAL | apsw.SQLITE_IOCAP_POWERSAFE_OVERWRITE
                  | getattr(apsw, "SQLITE_IOCAP_SUBPAGE_READ", 0))
    assert documented == CAPABILITIES
    assert not CAPABILITIES & apsw.SQLITE_IOCAP_IMMUTABLE


def test_delete_on_close_leaves_nothing(archive: Path) -> None:
    f = open_file(f"{archive}/tmp-journal", JOURNAL | RW_CREATE
                  | apsw.SQLITE_OPEN_DELETEONCLOSE)
    f.xWrite(b"x" * 200_000, 0)
    assert f.xRead(3, 199_997) == b"xxx"
    assert not cartfs.vfs.register().xAccess(f"{archive}/tmp-journal", 0)  # nameless
    f.xClose()
    assert archive_files(archive) == {}
    fsck_ok(archive)


TEMP_DB = apsw.SQLITE_OPEN_TEMP_DB | RW_CREATE | apsw.SQLITE_OPEN_DELETEONCLOSE


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a fresh thread: one that has locked no database yet."""
    out: list[T] = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join(timeout=60)
    return out[0]


def test_temp_files_without_a_name_go_to_the_archive(archive: Path) -> None:
    """A nameless temp file lives in the archive of the database this thread locked last, as
    an unnamed inode that its close drops."""
    conn = cartfs.vfs.connect(archive, "/main.db")
    try:
        conn.execute("CREATE TABLE t(x)")  # this thread has locked /main.db
        (entry,) = REGISTRY.open_entries()
        refs, before = entry.refs, set(entry.nodes_locked())
        f = open_file(None, TEMP_DB)
        assert entry.refs == refs + 1
        (ino,) = set(entry.nodes_locked()) - before
        assert entry.archive.getattr(ino).nlink == 0  # no name, ever
        f.xWrite(b"temp" * 100_000, 4096)
        assert f.xFileSize() == 404_096 and f.xRead(4, 4096) == b"temp"
        assert entry.archive.getattr(ino).size > 0  # the bytes went to the archive
        f.xClose()
        assert entry.refs == refs and set(entry.nodes_locked()) == before
        assert not entry.archive._ns.exists(ino)  # dropped at close
    finally:
        conn.close()
    assert set(archive_files(archive)) == {"/main.db"}
    fsck_ok(archive)


def test_temp_files_fall_back_to_memory(tmp_path: Path, archive: Path) -> None:
    """No database locked by this thread, or its archive open read-only: memory."""
    def use_temp() -> bytes:
        f = open_file(None, TEMP_DB)
        try:
            f.xWrite(b"temp", 4096)
            assert f.xFileSize() == 4100
            return bytes(f.xRead(4, 4096))
        finally:
            f.xClose()

    assert in_thread(use_temp) == b"temp"
    conn = cartfs.vfs.connect(archive, "/main.db")
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    frozen = tmp_path / "frozen.cart"
    with Archive.open(archive) as a:
        a.freeze(str(frozen))
    ro = cartfs.vfs.connect(frozen, "/main.db")
    try:
        ro.execute("SELECT * FROM t").fetchall()
        (entry,) = REGISTRY.open_entries()
        refs = entry.refs
        assert use_temp() == b"temp"
        assert entry.refs == refs  # nothing taken from the read-only archive
    finally:
        ro.close()


def test_access_delete_and_exclusive_create(archive: Path) -> None:
    vfs = cartfs.vfs.register()
    name = f"{archive}/a-journal"
    assert not vfs.xAccess(name, apsw.SQLITE_ACCESS_EXISTS)
    f = open_file(name, JOURNAL | RW_CREATE)
    f.xWrite(b"data", 0)
    assert vfs.xAccess(name, apsw.SQLITE_ACCESS_EXISTS)
    assert vfs.xAccess(name, apsw.SQLITE_ACCESS_READWRITE)
    with pytest.raises(apsw.CantOpenError, match="already exists"):
        open_file(name, JOURNAL | RW_CREATE | apsw.SQLITE_OPEN_EXCLUSIVE)
    f.xClose()
    vfs.xDelete(name, True)
    assert not vfs.xAccess(name, apsw.SQLITE_ACCESS_EXISTS)
    with pytest.raises(apsw.IOError) as info:
        vfs.xDelete(name, False)
    assert getattr(info.value, "extendedresult", None) == apsw.SQLITE_IOERR_DELETE_NOENT
    with pytest.raises(apsw.CantOpenError, match="no such file"):
        open_file(name, JOURNAL | apsw.SQLITE_OPEN_READWRITE)


def test_unlinked_while_open_keeps_bytes(archive: Path) -> None:
    vfs = cartfs.vfs.register()
    name = f"{archive}/gone-journal"
    f = open_file(name, JOURNAL | RW_CREATE)
    f.xWrite(b"still here", 0)
    vfs.xDelete(name, False)
    assert f.xRead(10, 0) == b"still here"
    f.xClose()
    assert archive_files(archive) == {}
    fsck_ok(archive)


def test_read_only_archive_access(tmp_path: Path, archive: Path) -> None:
    with Archive.open(archive) as a:
        a.write_file("/j", b"x")
        a.freeze(str(tmp_path / "frozen.cart"))
    vfs = cartfs.vfs.register()
    name = f"{tmp_path}/frozen.cart/j"
    assert vfs.xAccess(name, apsw.SQLITE_ACCESS_EXISTS)
    assert not vfs.xAccess(name, apsw.SQLITE_ACCESS_READWRITE)


@pytest.mark.parametrize(("given", "full"), [
    ("/data/app.db", "/data/app.db"),
    ("/data//sub/../app.db", "/data/app.db"),
    ("app.db", "/app.db"),
    ("./x/./y.db", "/x/y.db"),
])
def test_full_pathname_of_inner_paths(given: str, full: str) -> None:
    assert cartfs.vfs.register().xFullPathname(given) == full


def test_full_pathname_of_qualified_relative_paths(archive: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(archive.parent)
    assert cartfs.vfs.register().xFullPathname(f"{archive.name}/d/x.db") == \
        f"{archive}/d/x.db"


def test_uri_helper_quotes(tmp_path: Path) -> None:
    odd = tmp_path / "we?ird #name.cart"
    Archive.create(odd).close()
    uri = cartfs.vfs.uri(odd, "/a b.db")
    assert "?vfs=cartridge" in uri and "%3F" in uri and "%23" in uri
    conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_URI | RW_CREATE)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    assert archive_files(odd) == {"/a b.db": 8192}
