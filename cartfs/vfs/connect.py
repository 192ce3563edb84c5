"""``connect()``: an :class:`apsw.Connection` to a database inside an archive, in one call."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from urllib.parse import quote

import apsw

from cartfs.core.archive import OpenOptions
from cartfs.core.errors import ArchiveBusy, CartError

from .errors import sqlite_error, to_sqlite
from .naming import normalize
from .registry import REGISTRY, ArchiveEntry
from .vfs import VFS_NAME, register

DEFAULT_BUSY_TIMEOUT_MS = 5000


@contextlib.contextmanager
def default_archive(archive_path: str | os.PathLike[str]) -> Iterator[None]:
    """Within the block, a database named by a plain absolute path — ``ATTACH '/other.db'``,
    ``VACUUM INTO '/bak.db'``, a URI without ``archive=`` — lives in ``archive_path``, even
    while other archives are open (process-wide; ``cartfs sql`` uses it for its archive).

    Outside such a block a plain path means the one archive open in the process, and is
    refused as ambiguous while several are open."""
    path = os.path.realpath(os.fspath(archive_path))
    previous, REGISTRY.default_archive = REGISTRY.default_archive, path
    try:
        yield
    finally:
        REGISTRY.default_archive = previous


def uri(archive_path: str | os.PathLike[str], db_path: str, *, readonly: bool = False,
        **params: str) -> str:
    """The URI naming ``db_path`` inside ``archive_path`` for the cartridge VFS, in the
    archive-qualified spelling (unique in the process, usable in ATTACH too)::

        file:/srv/app.cart/data/app.db?vfs=cartridge
    """
    path = os.path.realpath(os.fspath(archive_path)) + normalize(db_path)
    query = {"vfs": VFS_NAME, **params}
    if readonly:
        query["mode"] = "ro"
    tail = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    return f"file:{quote(path, safe='/')}?{tail}"


def connect(archive_path: str | os.PathLike[str], db_path: str, *, readonly: bool = False,
            create: bool = True, passphrase: str | bytes | None = None,
            busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, flags: int | None = None,
            check: bool = True, options: OpenOptions | None = None) -> apsw.Connection:
    """Open the SQLite database ``db_path`` stored inside the archive ``archive_path``.

    The archive is opened writable unless ``readonly`` (or it is frozen: then the connection
    is read-only). ``create=False`` refuses a database that does not exist yet.
    ``passphrase`` unlocks an encrypted archive (else ``$CARTFS_PASSPHRASE``). With
    ``check`` the database header is read once, so a file that is not a database fails here
    with a clear error rather than at the first query. ``flags`` overrides the open flags.
    ``options`` tunes the archive (cache, commit interval) if this call opens it.

    When another process holds the archive (a writer, or readers while we want to write),
    ``connect`` waits for it up to ``busy_timeout_ms``, as SQLite waits for a lock.

    Errors are apsw exceptions (:class:`apsw.CantOpenError` for a missing archive or
    database, :class:`apsw.NotADBError`, :class:`apsw.BusyError` when another process still
    holds the archive); their ``__cause__`` is the cartfs error, if any.
    """
    register()
    archive = os.fspath(archive_path)
    entry = _acquire(archive, not readonly, passphrase, options, busy_timeout_ms / 1000)
    try:
        if flags is None:
            flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE
            if create and not readonly:
                flags |= apsw.SQLITE_OPEN_CREATE
        conn = apsw.Connection(uri(entry.path, db_path), flags=flags | apsw.SQLITE_OPEN_URI)
    finally:
        REGISTRY.release(entry)
    conn.set_busy_timeout(busy_timeout_ms)
    if check:
        _check_database(conn, archive, db_path)
    return conn


def _acquire(archive: str, writable: bool, passphrase: str | bytes | None,
             options: OpenOptions | None, patience: float) -> ArchiveEntry:
    deadline = time.monotonic() + patience
    delay = 0.001
    while True:
        try:
            return REGISTRY.acquire(archive, writable=writable, passphrase=passphrase,
                                    options=options)
        except ArchiveBusy as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise to_sqlite(exc, apsw.SQLITE_CANTOPEN, archive) from exc
        except CartError as exc:
            raise to_sqlite(exc, apsw.SQLITE_CANTOPEN, archive) from exc
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


def _check_database(conn: apsw.Connection, archive: str, db_path: str) -> None:
    try:
        conn.execute("PRAGMA schema_version").fetchall()
    except apsw.NotADBError as exc:
        conn.close()
        raise sqlite_error(apsw.SQLITE_NOTADB,
                           f"{archive}: {db_path}: file is not a database") from exc
    except apsw.ReadOnlyError as exc:
        conn.close()
        if getattr(exc, "extendedresult", None) != apsw.SQLITE_READONLY_ROLLBACK:
            raise
        raise sqlite_error(apsw.SQLITE_READONLY_ROLLBACK, (
            f"{archive}: {db_path}: an interrupted transaction must be rolled back first "
            "(a hot journal); open the database writable once")) from exc
    except BaseException:
        conn.close()
        raise
