"""Open archives, shared by every SQLite file the VFS has open in this process.

Theory of operation
-------------------
**One Archive per archive file per process.** The first file SQLite opens in an archive opens
it (writable unless the connection is read-only, or the archive is frozen); later files —
other connections, journals, WAL files, attached databases — share that :class:`ArchiveEntry`,
reference-counted, and the last close commits and closes the archive. Archives are keyed by
the host file's (device, inode), so different spellings of one path share an entry. A
read-only request shares a writable entry; a writable request for an archive open read-only
reopens it writable in place (:meth:`Registry._upgrade`) if no other process holds it.

**Durability.** ``xSync`` commits the archive transaction (one commit, two fsyncs; see
:class:`~cartfs.core.archive.Archive`). A commit persists *every* change made so far, in the
order made, atomically — so a crash leaves the state after some prefix of our writes. That is
why the VFS reports ``SQLITE_IOCAP_SEQUENTIAL`` (SQLite then skips the journal syncs it would
otherwise need before writing the database) and why the main database's ``xSync`` during a
rollback-journal transaction may be *deferred* to the end of the transaction
(``SQLITE_FCNTL_COMMIT_PHASETWO``, or the unlock below RESERVED): the database pages and the
journal's deletion/truncation/zeroing then land in one atomic commit, one commit per SQLite
transaction instead of two, and a committed transaction is durable when COMMIT returns.

The prefix property holds per archive; SQLite's multi-database commit (a super-journal in one
archive, databases in others) needs it across archives, so before a thread changes an
archive other than the one it changed last, that one is committed
(:meth:`Registry.switch_to`). A multi-database COMMIT runs in one thread, so its writes form
one ordered stream across archives; independent connections writing different archives in
different threads do not force commits on each other.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from dataclasses import dataclass

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.errors import (
    ArchiveBusy,
    ArchiveClosed,
    CartError,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotAnArchive,
    NotFound,
    ReadOnly,
)
from cartfs.core.keys import read_key_file
from cartfs.core.paths import parent_and_name

from .committer import Committer
from .naming import derived_base
from .nodes import CHUNK_CACHE_BYTES, FileNode, PendingRun

PASSPHRASE_ENV = "CARTFS_PASSPHRASE"
_NAME_CACHE_MAX = 4096
_MISSING = -1
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class _PerThread(threading.local):
    """The archive this thread changed last (see :meth:`Registry.switch_to`)."""

    changed: ArchiveEntry | None = None


class NameConflict(CartError):
    """A database path is already open from another archive in this process."""


@dataclass
class Binding:
    """A main database's full pathname, bound to the archive and path it was opened from."""

    entry: ArchiveEntry
    inner: str
    refs: int = 0


class ArchiveEntry:
    """One open archive and what the VFS keeps about it (see the module docstring).

    ``mutex`` guards the name cache, the nodes, their caches and sizes, and the pending
    write run (:mod:`cartfs.vfs.nodes`); it is never held while waiting for another entry.
    """

    def __init__(self, registry: Registry, key: tuple[int, int], path: str,
                 archive: Archive) -> None:
        self.registry = registry
        self.key = key
        self.path = path
        self.archive = archive
        self.writable = archive.writable
        # never writable here: frozen, or the file/filesystem refused a writable open
        self.readonly_forced = archive.superblock.frozen
        self.chunk_size = archive.superblock.chunk_size
        self.refs = 0
        self.open_journals = 0
        self.owed = False
        self.mutex = threading.Lock()
        self.pending: PendingRun | None = None
        self._names: dict[str, int] = {}
        self._nodes: dict[int, FileNode] = {}

    def __repr__(self) -> str:
        return f"<ArchiveEntry {self.path} refs={self.refs} writable={self.writable}>"

    def flush_locked(self) -> None:
        """Hand the pending write run to the archive (caller holds ``mutex``)."""
        pending = self.pending
        if pending is not None:
            self.archive.write(pending.node.ino, pending.start, pending.buf)
            self.pending = None

    def flush(self) -> None:
        with self.mutex:
            self.flush_locked()

    # ---- names --------------------------------------------------------------------------

    def lookup(self, inner: str) -> int | None:
        """The inode at an archive path (following symlinks), or None if there is none.

        Cached: SQLite asks "does the journal exist?" at the start of every transaction.
        Every create and unlink in this archive goes through the VFS, which updates the cache.
        """
        ino = self._names.get(inner)
        if ino is None:
            with self.mutex:
                try:
                    ino = self.archive.resolve(inner).ino
                except (NotFound, NotADirectory):
                    ino = _MISSING
                if len(self._names) >= _NAME_CACHE_MAX:
                    self._names.clear()
                self._names[inner] = ino
        return None if ino == _MISSING else ino

    def create(self, inner: str, *, parents: bool = False) -> int:
        """Create an empty regular file; its directory must exist unless ``parents``."""
        parent_parts, name = parent_and_name(inner)
        folder = b"/" + b"/".join(parent_parts)
        self.before_change()
        with self.mutex:
            self.flush_locked()
            if parents:
                self.archive.make_dir(folder, parents=True, exist_ok=True)
            parent = self.archive.resolve(folder)
            if not parent.is_dir:
                raise NotADirectory(f"{os.fsdecode(folder)}: not a directory")
            ino = self.archive.create_file(parent.ino, name).ino
            self._names[inner] = ino
            return ino

    def create_unlinked(self) -> int:
        """A nameless file for SQLITE_OPEN_DELETEONCLOSE (reclaimed even after a crash)."""
        self.before_change()
        with self.mutex:
            self.flush_locked()
            return self.archive.create_unlinked().ino

    def unlink(self, inner: str) -> bool:
        """Remove a name; False if there was none. Open handles keep the inode (pinned)."""
        if self.lookup(inner) is None:
            return False
        parents, name = parent_and_name(inner)
        self.before_change()
        with self.mutex:
            self.flush_locked()
            self._names[inner] = _MISSING
            parent = self.archive.resolve(b"/" + b"/".join(parents))
            try:
                self.archive.unlink(parent.ino, name)
            except NotFound:
                return False
            return True

    def is_dir(self, ino: int) -> bool:
        with self.mutex:
            return self.archive.getattr(ino).is_dir

    # ---- file nodes ---------------------------------------------------------------------

    def open_node(self, ino: int, cache_bytes: int = CHUNK_CACHE_BYTES) -> FileNode:
        """The shared node of an inode, with one more handle on it (and the inode pinned,
        so an unlink while open keeps the bytes until the last close); a new node caches
        up to ``cache_bytes`` of chunks."""
        with self.mutex:
            node = self._nodes.get(ino)
            if node is None:
                inode = self.archive.getattr(ino)
                if inode.is_dir:
                    raise IsADirectory("is a directory")
                if not inode.is_reg:
                    raise InvalidArgument("not a regular file")
                node = FileNode(self, ino, inode.size, self.chunk_size, cache_bytes)
                self._nodes[ino] = node
            node.handles += 1
            self.archive.pin(ino)
            return node

    def nodes_locked(self) -> dict[int, FileNode]:
        """The open nodes (caller holds ``mutex``)."""
        return dict(self._nodes)

    def close_node(self, node: FileNode) -> None:
        with self.mutex:
            if self.pending is not None and self.pending.node is node:
                self.flush_locked()
            node.handles -= 1
            if node.handles == 0:
                self._nodes.pop(node.ino, None)
            self.archive.unpin(node.ino)

    # ---- durability ---------------------------------------------------------------------

    def before_change(self) -> None:
        """Keep one ordered stream of writes across archives (see the module docstring)."""
        if self.registry.thread.changed is not self:
            self.registry.switch_to(self)

    def sync(self) -> None:
        """Commit the archive transaction: everything written so far becomes durable."""
        self.owed = False
        if self.writable:
            self.flush()
            self.archive.sync()

    def sync_main_db(self) -> None:
        """``xSync`` of a main database: deferred to the end of the transaction while a
        rollback journal is open (the journal's end lands in the same commit), else now."""
        if self.open_journals > 0:
            self.owed = True
        else:
            self.sync()

    def count_journal(self, delta: int) -> None:
        """A rollback journal opened (+1) or closed (-1) in this archive."""
        with self.mutex:
            self.open_journals += delta

    def pay_owed(self) -> None:
        if self.owed:
            self.sync()

    def commit_if_due(self) -> None:
        """The commit timer's tick (:mod:`cartfs.vfs.committer`)."""
        archive = self.archive
        if not self.writable or archive.closed:
            return
        interval = archive.options.commit_interval
        try:
            with self.mutex:
                pending = self.pending
                if pending is not None and time.monotonic() - pending.born >= interval:
                    self.flush_locked()
            archive.commit_if_due()
        except ArchiveClosed:
            pass  # closed by its last connection meanwhile


class Registry:
    """Every archive the VFS has open in this process, and the name bindings."""

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._entries: dict[tuple[int, int], ArchiveEntry] = {}
        self._bindings: dict[str, Binding] = {}
        self.thread = _PerThread()
        self._committer: Committer | None = None
        # the archive a plain absolute path means (see plain_path_archive); set by
        # cartfs.vfs.default_archive()
        self.default_archive: str | None = None

    # ---- archives -----------------------------------------------------------------------

    def acquire(self, path: str, *, writable: bool, passphrase: str | bytes | None = None,
                key_file: str | None = None, options: OpenOptions | None = None
                ) -> ArchiveEntry:
        """The entry of the archive at ``path`` with one more reference (opening it if this
        process has not yet, with ``options``). Raises the core's errors (NotFound,
        ArchiveBusy, ...)."""
        key = _archive_key(path)
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                archive = self._open(path, writable, passphrase, key_file, options)
                entry = ArchiveEntry(self, key, os.path.realpath(path), archive)
                entry.readonly_forced |= writable and not archive.writable
                self._entries[key] = entry
            elif writable and not entry.writable and not entry.readonly_forced:
                self._upgrade(entry, path, passphrase, key_file, options)
            entry.refs += 1
            if entry.writable and self._committer is None:
                self._committer = Committer(self)
                self._committer.start()
            return entry

    def writable_entries(self, committer: Committer) -> list[ArchiveEntry]:
        """What the commit timer looks after; an empty list also retires it."""
        with self._mutex:
            entries = [e for e in self._entries.values() if e.writable]
            if not entries and self._committer is committer:
                self._committer = None
            return entries

    def _upgrade(self, entry: ArchiveEntry, path: str, passphrase: str | bytes | None,
                 key_file: str | None, options: OpenOptions | None) -> None:
        """Reopen a read-only archive writable under its live files: close it (its shared
        flock would block our own exclusive one), open it writable, and keep the new one
        only if nobody committed in between (same transaction id: every cache stays true).
        Otherwise reopen read-only and report the archive busy."""
        with entry.mutex:
            old = entry.archive
            sb = old.superblock
            old.close()
            try:
                new = self._open(path, True, passphrase, key_file, options)
            except CartError as exc:
                entry.archive = self._open(path, False, passphrase, key_file, options)
                raise ArchiveBusy(f"{path}: archive is open read-only in this process and "
                                  f"cannot be reopened for writing: {exc}") from exc
            if (not new.writable or new.superblock.txid != sb.txid
                    or new.superblock.uuid != sb.uuid):
                new.close()
                entry.archive = self._open(path, False, passphrase, key_file, options)
                raise ArchiveBusy(f"{path}: archive changed while it was reopened for "
                                  "writing; try again")
            for ino, node in entry.nodes_locked().items():
                for _ in range(node.handles):
                    new.pin(ino)
            entry.archive = new
            entry.writable = True
        if self._committer is None:
            self._committer = Committer(self)
            self._committer.start()

    @staticmethod
    def _open(path: str, writable: bool, passphrase: str | bytes | None,
              key_file: str | None, options: OpenOptions | None) -> Archive:
        if passphrase is None and key_file:
            passphrase = read_key_file(key_file)
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV) or None
        if writable:
            try:
                return Archive.open(path, passphrase=passphrase, options=options)
            except CartError as exc:
                # frozen, read-only file system, no write permission: read-only, like
                # SQLite's own fallback for a database file it cannot write
                refused = type(exc) is CartError and exc.errno in _NOT_WRITABLE
                if not (isinstance(exc, ReadOnly) or refused):
                    raise
        return Archive.open(path, readonly=True, passphrase=passphrase, options=options)

    def retain(self, entry: ArchiveEntry) -> None:
        with self._mutex:
            entry.refs += 1

    def retain_open(self, entry: ArchiveEntry) -> bool:
        """One more reference on ``entry`` if it is still open (False if it was closed)."""
        with self._mutex:
            if entry.refs <= 0 or self._entries.get(entry.key) is not entry:
                return False
            entry.refs += 1
            return True

    def release(self, entry: ArchiveEntry) -> None:
        """Drop a reference; the last one commits and closes the archive."""
        with self._mutex:
            entry.refs -= 1
            if entry.refs > 0:
                return
            self._entries.pop(entry.key, None)
            for name in [n for n, b in self._bindings.items() if b.entry is entry]:
                del self._bindings[name]
            try:
                entry.flush()
            finally:
                entry.archive.close()

    def plain_path_archive(self) -> str | None:
        """The archive a database named by a plain absolute path (``ATTACH '/other.db'``,
        ``VACUUM INTO '/bak.db'``, no ``archive=``) lives in: the default archive if one is
        set, else the one archive open in this process; None if there are several or none."""
        with self._mutex:
            if self.default_archive is not None:
                return self.default_archive
            entries = list(self._entries.values())
            return entries[0].path if len(entries) == 1 else None

    def open_entries(self) -> list[ArchiveEntry]:
        with self._mutex:
            return list(self._entries.values())

    # ---- bindings of full pathnames ------------------------------------------------------

    def bind(self, name: str, entry: ArchiveEntry, inner: str) -> None:
        """Remember that the database SQLite calls ``name`` is ``inner`` in ``entry``."""
        with self._mutex:
            binding = self._bindings.get(name)
            if binding is not None and (binding.entry is not entry or binding.inner != inner):
                raise NameConflict(
                    f"{name} is already open from {binding.entry.path} in this process; "
                    "SQLite identifies databases by path, so name this one with its archive: "
                    f"file:{entry.path}{inner}?vfs=cartridge")
            if binding is None:
                binding = self._bindings[name] = Binding(entry, inner)
            binding.refs += 1

    def unbind(self, name: str) -> None:
        with self._mutex:
            binding = self._bindings.get(name)
            if binding is not None:
                binding.refs -= 1
                if binding.refs <= 0:
                    del self._bindings[name]

    def bound(self, name: str) -> tuple[ArchiveEntry, str] | None:
        """(entry, inner path) for a bound database name or a name derived from one."""
        binding = self._bindings.get(name)
        if binding is not None:
            return binding.entry, binding.inner
        split = derived_base(name)
        if split is not None:
            binding = self._bindings.get(split[0])
            if binding is not None:
                return binding.entry, binding.inner + split[1]
        return None

    # ---- ordering across archives ---------------------------------------------------------

    def switch_to(self, entry: ArchiveEntry) -> None:
        """Commit the archive this thread changed last before it changes ``entry``."""
        previous = self.thread.changed
        if previous is not None and previous is not entry and not previous.archive.closed:
            with contextlib.suppress(ArchiveClosed):  # closed meanwhile: that committed it
                previous.sync()
        self.thread.changed = entry


def _archive_key(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such archive") from None
    except NotADirectoryError:
        raise NotFound(f"{path}: no such archive") from None
    except OSError as exc:
        raise NotAnArchive(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotAnArchive(f"{path}: not a regular file, not an archive")
    return st.st_dev, st.st_ino


REGISTRY = Registry()
