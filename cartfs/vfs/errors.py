"""The one boundary where cartfs errors become SQLite result codes.

Every VFS method catches what it calls and raises :func:`to_sqlite` of it: apsw turns the
exception's ``extendedresult`` into the code SQLite sees, and the message reaches the user
(apsw raises our exception from ``Connection``/``execute``). A :class:`CartError` maps by
kind; anything else is a bug in cartfs, logged with its traceback and reported as an I/O
error of the operation, never leaked as a Python exception into SQLite.
"""

from __future__ import annotations

import logging

import apsw

from cartfs.core.errors import (
    AlreadyExists,
    ArchiveBusy,
    CartError,
    CorruptArchive,
    FileTooLarge,
    IsADirectory,
    NoSpace,
    NotADirectory,
    NotAnArchive,
    NotFound,
    PassphraseRequired,
    PermissionDenied,
    ReadOnly,
    UnsupportedFormat,
    WrongPassphrase,
)

log = logging.getLogger("cartfs.vfs")

# (kind, code) — first match wins; CorruptArchive covers IntegrityError.
_CODES: tuple[tuple[type[CartError], int], ...] = (
    (NoSpace, apsw.SQLITE_FULL),
    (FileTooLarge, apsw.SQLITE_FULL),
    (ArchiveBusy, apsw.SQLITE_BUSY),
    (CorruptArchive, apsw.SQLITE_IOERR_CORRUPTFS),
    (PermissionDenied, apsw.SQLITE_PERM),
    (ReadOnly, apsw.SQLITE_READONLY),
)

# What an open can fail with: SQLITE_CANTOPEN, whatever the kind.
_OPEN_FAILURES: tuple[type[CartError], ...] = (
    NotFound, NotADirectory, IsADirectory, NotAnArchive, UnsupportedFormat,
    PassphraseRequired, WrongPassphrase, AlreadyExists, ReadOnly, PermissionDenied,
)


def sqlite_error(code: int, message: str) -> apsw.Error:
    """An apsw exception carrying ``code`` (extended codes too) and our message."""
    exc = apsw.exception_for(code)
    exc.args = (message,)
    assert isinstance(exc, apsw.Error)
    return exc


def code_for(exc: CartError, default: int) -> int:
    """The SQLite result code for a cartfs error in an operation whose generic failure is
    ``default`` (SQLITE_CANTOPEN for opens, SQLITE_IOERR_READ for reads, ...)."""
    if default == apsw.SQLITE_CANTOPEN and isinstance(exc, _OPEN_FAILURES):
        return apsw.SQLITE_CANTOPEN
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return default


def to_sqlite(exc: BaseException, default: int, what: str) -> apsw.Error:
    """Translate any exception raised below a VFS method (see the module docstring)."""
    if isinstance(exc, apsw.Error):
        return exc
    if isinstance(exc, CartError):
        message = str(exc)
        if not message.startswith(what):
            message = f"{what}: {message}"
        return sqlite_error(code_for(exc, default), f"cartridge: {message}")
    log.error("cartridge VFS: unexpected error in %s", what, exc_info=exc)
    if default & 0xFF != apsw.SQLITE_IOERR:
        default = apsw.SQLITE_IOERR
    return sqlite_error(default, f"cartridge: {what}: internal error: {exc!r}")
