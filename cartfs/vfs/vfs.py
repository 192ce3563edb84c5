"""The ``cartridge`` VFS: which file an SQLite name means, and opening it.

Opening maps SQLite's open flags to archive files:

* main database (``SQLITE_OPEN_MAIN_DB``, attached databases and VACUUM INTO's target too):
  the archive comes from the ``archive=`` URI parameter, from an archive-qualified path (see
  :mod:`cartfs.vfs.naming`), or — for a plain absolute path such as ``ATTACH '/other.db'`` —
  from :meth:`Registry.plain_path_archive` (the default archive, else the only archive open
  in the process; with several open the name is refused as ambiguous); the archive is
  opened writable unless the connection is read-only (``mode=ro``, SQLITE_OPEN_READONLY) or
  the archive cannot be written (frozen, read-only file); the database is created if SQLite
  asks (SQLITE_OPEN_CREATE), with any missing directories (``/data/app.db`` in a fresh
  archive just works).
* rollback journal, WAL, super-journal: the archive file SQLite names, next to the database.
  A read-only connection whose WAL does not exist yet while the archive is open read-only
  gets a handle that reads as empty until a writer in this process creates that file, and
  then reads it (:class:`~cartfs.vfs.nodes.AwaitedNode`).
* delete-on-close files, and temp files without a name (temp database, statement/temp
  journals, VACUUM's transient database, sorter spills): a nameless archive file
  (:meth:`Archive.create_unlinked`), dropped at close and reclaimed by the next writable
  open if the process dies first; never synced. A temp file has no name to tell its archive,
  so it goes to the archive of the main database this thread locked last — the database
  whose statement needs it. When that archive is not open writable (frozen, or only
  read-only connections), or the thread locked none, or it is a plain archive while an
  encrypted one is open (the guess may be wrong: an attached plain database locked after an
  encrypted main one), the temp file is held in memory (never on the host disk: it may hold
  plaintext rows of an encrypted archive).

Every method translates errors at one boundary (:mod:`cartfs.vfs.errors`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import apsw

from cartfs.core.errors import AlreadyExists, CartError, IsADirectory, NotFound, ReadOnly

from .errors import sqlite_error, to_sqlite
from .file import (
    FileHandle,
    MainDbHandle,
    ShadowedMainDbFile,
    TempFileHandle,
    current_entry,
)
from .naming import full_pathname, normalize, split_qualified
from .nodes import AwaitedNode, FileNode, MemoryNode
from .registry import REGISTRY, ArchiveEntry, Registry
from .shm import remove_shadow, shadow_path

log = logging.getLogger("cartfs.vfs")

VFS_NAME = "cartridge"
# Chunks a temp file keeps decoded: it is written and read back in runs, and the archive's
# own cache holds what is re-read; a big cache per temp file would only add to the peak RSS.
TEMP_CACHE_BYTES = 4 * 1024 * 1024

_O = apsw
_READONLY, _READWRITE, _CREATE = _O.SQLITE_OPEN_READONLY, _O.SQLITE_OPEN_READWRITE, \
    _O.SQLITE_OPEN_CREATE


def _out_flags(inflags: int, writable: bool) -> int:
    if writable:
        return inflags
    return (inflags & ~(_READWRITE | _CREATE)) | _READONLY


class CartridgeVFS(apsw.VFS):
    """SQLite databases stored inside Cartridge archives (see the module docstring).

    Time, randomness, sleeping and extension loading come from SQLite's default VFS."""

    def __init__(self, name: str = VFS_NAME, registry: Registry = REGISTRY) -> None:
        super().__init__(name, "")
        self.name = name
        self.registry = registry
        self._shadows = _ShadowCounts()

    # ---- names ------------------------------------------------------------------------

    def xFullPathname(self, name: str) -> str:
        try:
            return full_pathname(name)
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_CANTOPEN_FULLPATH, name) from exc

    def xAccess(self, pathname: str, flags: int) -> bool:
        try:
            bound = self.registry.bound(pathname)
            if bound is not None:  # held open by the connection asking: no reference needed
                entry, inner = bound
                if entry.lookup(inner) is None:
                    return False
                return flags != apsw.SQLITE_ACCESS_READWRITE or entry.writable
            located = self._locate(pathname, None, writable=False)
            if located is None:
                return False
            entry, inner = located
            try:
                if entry.lookup(inner) is None:
                    return False
                return flags != apsw.SQLITE_ACCESS_READWRITE or entry.writable
            finally:
                self.registry.release(entry)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_ACCESS, pathname) from exc

    def xDelete(self, filename: str, syncdir: bool) -> None:
        try:
            located = self._locate(filename, None, writable=True)
            if located is None:
                raise sqlite_error(apsw.SQLITE_IOERR_DELETE_NOENT, f"{filename}: no such file")
            entry, inner = located
            try:
                removed = entry.unlink(inner)
                if syncdir:
                    entry.sync()
            finally:
                self.registry.release(entry)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_IOERR_DELETE, filename) from exc
        if not removed:
            raise sqlite_error(apsw.SQLITE_IOERR_DELETE_NOENT, f"{filename}: no such file")

    def xSleep(self, microseconds: int) -> int:
        """Sleep without holding the GIL (the default VFS's sleep would stall the thread
        that holds the lock we are waiting for)."""
        time.sleep(microseconds / 1e6)
        return microseconds

    # ---- opening ------------------------------------------------------------------------

    def xOpen(self, name: str | apsw.URIFilename | None,  # type: ignore[override]
              flags: list[int]) -> FileHandle:
        # Returns plain file objects for everything but main databases (see cartfs.vfs.file).
        label = "temp file" if name is None else (
            name.filename() if isinstance(name, apsw.URIFilename) else name)
        try:
            if name is None:
                return self._open_temp(flags)
            archive = key_file = None
            if isinstance(name, apsw.URIFilename):
                archive = name.uri_parameter("archive") or None
                key_file = name.uri_parameter("key_file") or None
                name = name.filename()
            if flags[0] & apsw.SQLITE_OPEN_MAIN_DB:
                return self._open_main(name, archive, key_file, flags)
            return self._open_other(name, archive, flags)
        except apsw.Error:
            raise
        except Exception as exc:
            raise to_sqlite(exc, apsw.SQLITE_CANTOPEN, label) from exc

    def _open_temp(self, flags: list[int]) -> FileHandle:
        """A temp file without a name: a nameless file in the archive of the database this
        thread locked last (the statement or VACUUM that needs it), or memory when that
        archive is not open writable or could leak an encrypted archive's rows (see the
        module docstring and _might_leak)."""
        entry = current_entry()
        if entry is None or not entry.writable or self._might_leak(entry) \
                or not self.registry.retain_open(entry):
            return self._open_memory(flags, "temp file")
        try:
            return self._open_unlinked(entry, flags, f"{entry.path}:(temp file)")
        except BaseException:
            self.registry.release(entry)
            raise

    def _might_leak(self, entry: ArchiveEntry) -> bool:
        """A temp file holds plain rows of whatever the statement reads; "the archive locked
        last" may be a plain one attached to a connection whose main database is encrypted.
        So a plain archive takes temp files only while no encrypted archive is open."""
        if entry.archive.superblock.encrypted:
            return False
        return any(other.archive.superblock.encrypted
                   for other in self.registry.open_entries() if other is not entry)

    @staticmethod
    def _open_memory(flags: list[int], label: str) -> FileHandle:
        flags[1] = flags[0]
        return FileHandle(MemoryNode(), label)

    def _open_main(self, name: str, archive: str | None, key_file: str | None,
                   flags: list[int]) -> FileHandle:
        inflags = flags[0]
        readonly = bool(inflags & _READONLY)
        if archive is not None:
            archive_path, inner = archive, normalize(name)
        else:
            split = split_qualified(name)
            if split is None:
                default = self.registry.plain_path_archive()
                if default is None:
                    several = len(self.registry.open_entries()) > 1
                    raise sqlite_error(apsw.SQLITE_CANTOPEN, (
                        f"cartridge: {name}: which archive? "
                        + ("Several are open in this process. " if several else "")
                        + "Add ?archive=/path/to/archive.cart to the URI, or name the database "
                        "as /path/to/archive.cart/path/inside.db"))
                split = default, normalize(name)
            archive_path, inner = split
        try:
            entry = self.registry.acquire(archive_path, writable=not readonly,
                                          key_file=key_file)
        except CartError as exc:
            raise to_sqlite(exc, apsw.SQLITE_CANTOPEN, archive_path) from exc
        try:
            node = self._main_node(entry, inner, inflags)
        except CartError as exc:
            self.registry.release(entry)
            raise to_sqlite(exc, apsw.SQLITE_CANTOPEN, f"{archive_path}: {inner}") from exc
        except BaseException:
            self.registry.release(entry)
            raise
        try:
            self.registry.bind(name, entry, inner)
        except BaseException:
            entry.close_node(node)
            self.registry.release(entry)
            raise
        flags[1] = _out_flags(inflags, entry.writable and not readonly)
        return self._main_handle(name, entry, node, f"{entry.path}:{inner}")

    @staticmethod
    def _main_node(entry: ArchiveEntry, inner: str, inflags: int) -> FileNode:
        ino = entry.lookup(inner)
        if ino is None:
            if not inflags & _CREATE:
                raise NotFound("no such database in the archive")
            if not entry.writable:
                raise ReadOnly("no such database, and the archive is open read-only")
            ino = entry.create(inner, parents=False)
        elif inflags & apsw.SQLITE_OPEN_EXCLUSIVE and inflags & _CREATE:
            raise AlreadyExists("already exists")
        if entry.is_dir(ino):
            raise IsADirectory("is a directory, not a database")
        return entry.open_node(ino)

    def _main_handle(self, name: str, entry: ArchiveEntry, node: FileNode,
                     label: str) -> FileHandle:
        registry = self.registry
        shadow = shadow_path(entry.key, entry.archive.superblock.uuid, node.ino)

        def on_close() -> None:
            try:
                entry.close_node(node)
                registry.unbind(name)
            finally:
                registry.release(entry)

        if shadow is not None:
            self._shadows.acquire(shadow)
            try:
                return _ShadowedFile(shadow, self._shadows, node, label, entry, on_close)
            except apsw.Error as exc:
                self._shadows.release(shadow)
                log.warning("%s: no WAL shared memory (%s)", label, exc)
        return MainDbHandle(node, label, entry, on_close)

    def _open_other(self, name: str, archive: str | None, flags: list[int]) -> FileHandle:
        inflags = flags[0]
        writable = not inflags & _READONLY
        located = self._locate(name, archive, writable=writable)
        if located is None:
            raise NotFound(f"{name}: cannot tell which archive holds this file")
        entry, inner = located
        try:
            return self._open_in(entry, inner, name, flags)
        except BaseException:
            self.registry.release(entry)
            raise

    def _open_in(self, entry: ArchiveEntry, inner: str, name: str,
                 flags: list[int]) -> FileHandle:
        inflags = flags[0]
        label = f"{entry.path}:{inner}"
        if inflags & apsw.SQLITE_OPEN_DELETEONCLOSE:
            return self._open_unlinked(entry, flags, label)
        ino = entry.lookup(inner)
        if ino is None:
            if not inflags & _CREATE:
                raise NotFound(f"{inner}: no such file")
            if not entry.writable:
                if inflags & apsw.SQLITE_OPEN_WAL:  # a read-only database without a WAL
                    return self._open_awaited(entry, inner, flags, label)
                raise ReadOnly(f"cannot create {inner}: the archive is open read-only")
            ino = entry.create(inner)
        elif inflags & apsw.SQLITE_OPEN_EXCLUSIVE and inflags & _CREATE:
            raise AlreadyExists(f"{inner}: already exists")
        node = entry.open_node(ino)
        journal = bool(inflags & apsw.SQLITE_OPEN_MAIN_JOURNAL)
        if journal:
            entry.count_journal(+1)
        flags[1] = _out_flags(inflags, entry.writable and not inflags & _READONLY)
        return FileHandle(node, label, entry, self._closer(entry, node, journal))

    def _open_awaited(self, entry: ArchiveEntry, inner: str, flags: list[int],
                      label: str) -> FileHandle:
        """The WAL of a read-only connection, before any WAL exists: it becomes the real
        ``-wal`` file as soon as a writer in this process creates it (see AwaitedNode)."""
        node = AwaitedNode(entry, inner)
        registry = self.registry

        def on_close() -> None:
            try:
                node.close()
            finally:
                registry.release(entry)

        flags[1] = _out_flags(flags[0], False)
        return FileHandle(node, label, entry, on_close)

    def _open_unlinked(self, entry: ArchiveEntry, flags: list[int], label: str) -> FileHandle:
        if not entry.writable:
            self.registry.release(entry)
            return self._open_memory(flags, label)
        ino = entry.create_unlinked()  # pinned once, and reclaimed if the process dies
        try:
            node = entry.open_node(ino, TEMP_CACHE_BYTES)  # the handle's own pin
        finally:
            entry.archive.unpin(ino)  # create_unlinked's pin (the last one drops the inode)
        flags[1] = flags[0]
        return TempFileHandle(node, label, entry, self._closer(entry, node, False))

    def _closer(self, entry: ArchiveEntry, node: FileNode, journal: bool
                ) -> Callable[[], None]:
        registry = self.registry

        def on_close() -> None:
            try:
                if journal:
                    entry.count_journal(-1)
                entry.close_node(node)
            finally:
                registry.release(entry)
        return on_close

    # ---- which archive --------------------------------------------------------------------

    def _locate(self, name: str, archive: str | None, *, writable: bool
                ) -> tuple[ArchiveEntry, str] | None:
        """The archive (with a reference taken) and inner path of a file SQLite names.

        Order: an explicit archive parameter; a bound main database or a name derived from
        one; an archive-qualified path; the archive this thread last locked a database in;
        the only archive open. None when nothing says which archive."""
        registry = self.registry
        if archive is not None:
            return registry.acquire(archive, writable=writable), normalize(name)
        bound = registry.bound(name)
        if bound is not None:
            registry.retain(bound[0])
            return bound
        split = split_qualified(name)
        if split is not None:
            return registry.acquire(split[0], writable=writable), split[1]
        entry = current_entry()
        if entry is None or entry.refs <= 0:
            entries = registry.open_entries()
            entry = entries[0] if len(entries) == 1 else None
        if entry is None:
            return None
        registry.retain(entry)
        return entry, normalize(name)


class _ShadowCounts:
    """How many handles of this process use each shadow file; the last one removes it (so a
    later open creates a fresh one rather than two handles ever using different copies)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._counts: dict[str, int] = {}

    def acquire(self, path: str) -> None:
        with self._mutex:
            self._counts[path] = self._counts.get(path, 0) + 1

    def release(self, path: str) -> None:
        with self._mutex:
            left = self._counts.get(path, 0) - 1
            if left > 0:
                self._counts[path] = left
                return
            self._counts.pop(path, None)
            remove_shadow(path)


class _ShadowedFile(ShadowedMainDbFile):
    """A shadowed main database that gives its shadow back when closed."""

    def __init__(self, shadow: str, counts: _ShadowCounts, node: FileNode, label: str,
                 entry: ArchiveEntry, on_close: Callable[[], None]) -> None:
        super().__init__(shadow, node, label, entry, on_close)
        self._shadow: str | None = shadow
        self._counts = counts

    def xClose(self) -> None:
        try:
            super().xClose()
        finally:
            shadow, self._shadow = self._shadow, None
            if shadow is not None:
                self._counts.release(shadow)


_VFS: CartridgeVFS | None = None


def register() -> CartridgeVFS:
    """Register the ``cartridge`` VFS with SQLite (idempotent) and return it."""
    global _VFS
    if _VFS is None:
        _VFS = CartridgeVFS()
    return _VFS
