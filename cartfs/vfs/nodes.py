"""The bytes of one file as the VFS sees them: an archive inode, or a temp file in memory.

Every handle SQLite opens on the same archive file shares one :class:`FileNode`, so they all
see one size, one chunk cache and one :class:`~cartfs.vfs.locks.DbLock`.

Theory of operation
-------------------
**Writes** go to the archive at the offset SQLite gives: a 4 KiB page write dirties the one
64 KiB archive chunk that holds it, never the rest of the database. SQLite writes mostly in
runs (journal records appended one after another, database pages in page order at commit,
VACUUM copying a whole file), so each archive keeps one *pending run*: a write that starts
where the pending run ends (same file) is appended to it; anything else — a write elsewhere,
a read of that file, a truncate, create, unlink or sync anywhere in the archive — first
hands the run to :meth:`Archive.write` as one call. Sixteen page writes become one chunk
write. Because the run is always the most recent write and is handed over before any other
archive operation, the archive still sees every write in the order SQLite issued it (what
SQLITE_IOCAP_SEQUENTIAL promises, see :mod:`cartfs.vfs.registry`).

**Reads** are served from a small per-file cache of whole chunks (bytes, as the archive
returns them). SQLite re-reads the same few bytes constantly — the change counter at offset
24 at the start of every read transaction, page 1, hot pages after its own cache evicted them
— and a dictionary hit costs a fraction of a microsecond where an archive read costs several
(B-tree lookups behind the archive lock). The cache is coherent because every change to the
file in this process goes through this node: a write or truncate drops the chunks it touches.
The archive is private to the VFS registry (no other process can write it while we hold it,
see :mod:`cartfs.vfs.locks`), so nothing changes the file behind our back.

The file size is kept the same way; ``xFileSize`` is an attribute read. All node state of
one archive is guarded by that archive's one mutex (``entry.mutex``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

from cartfs.core.errors import ReadOnly

from .locks import DbLock

if TYPE_CHECKING:
    from .registry import ArchiveEntry

CHUNK_CACHE_BYTES = 32 * 1024 * 1024
PENDING_MAX = 1024 * 1024


class Node(Protocol):
    """What a file handle needs from the file behind it."""

    lock: DbLock

    @property
    def size(self) -> int: ...

    def read(self, offset: int, amount: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def truncate(self, size: int) -> None: ...


class PendingRun:
    """Contiguous bytes written to one file and not yet handed to the archive."""

    __slots__ = ("born", "buf", "end", "node", "start")

    def __init__(self, node: FileNode, start: int, data: bytes) -> None:
        self.node = node
        self.start = start
        self.buf = bytearray(data)
        self.end = start + len(data)
        self.born = time.monotonic()


class FileNode:
    """One archive inode opened by the VFS (see the module docstring)."""

    def __init__(self, entry: ArchiveEntry, ino: int, size: int, chunk_size: int,
                 cache_bytes: int = CHUNK_CACHE_BYTES) -> None:
        self.entry = entry
        self.ino = ino
        self.size = size
        self.lock = DbLock()
        self.handles = 0
        self._shift = chunk_size.bit_length() - 1
        self._chunk = chunk_size
        self._cache: dict[int, bytes] = {}
        self._cached = 0
        self._budget = cache_bytes

    def read(self, offset: int, amount: int) -> bytes:
        """Up to ``amount`` bytes at ``offset``; short only at end of file."""
        entry = self.entry
        with entry.mutex:
            pending = entry.pending
            if pending is not None and pending.node is self:
                entry.flush_locked()
            end = min(offset + amount, self.size)
            if offset >= end:
                return b""
            shift = self._shift
            first = offset >> shift
            if (end - 1) >> shift == first:
                return self._piece(first, offset - (first << shift), end - offset)
            parts = []
            pos = offset
            while pos < end:
                chunk_no = pos >> shift
                stop = min(end, (chunk_no + 1) << shift)
                parts.append(self._piece(chunk_no, pos - (chunk_no << shift), stop - pos))
                pos = stop
            return b"".join(parts)

    def _piece(self, chunk_no: int, lo: int, length: int) -> bytes:
        data = self._cache.get(chunk_no)
        if data is None:
            data = self.entry.archive.read(self.ino, chunk_no << self._shift, self._chunk)
            self._remember(chunk_no, data)
        piece = data[lo:lo + length]
        if len(piece) < length:  # the chunk was cached when the file was shorter: a hole
            piece += bytes(length - len(piece))
        return piece

    def _remember(self, chunk_no: int, data: bytes) -> None:
        cache = self._cache
        while cache and self._cached + len(data) > self._budget:
            oldest = next(iter(cache))
            self._cached -= len(cache.pop(oldest))
        cache[chunk_no] = data
        self._cached += len(data)

    def _forget(self, first: int, last: int) -> None:
        cache = self._cache
        if not cache:
            return
        if last - first > len(cache):
            doomed = [c for c in cache if first <= c <= last]
        else:
            doomed = [c for c in range(first, last + 1) if c in cache]
        for chunk_no in doomed:
            self._cached -= len(cache.pop(chunk_no))

    def write(self, offset: int, data: bytes) -> None:
        """Append to the archive's pending run, or hand that over and start a new one."""
        if not data:
            return
        entry = self.entry
        if not entry.writable:
            raise ReadOnly(f"{entry.path}: archive is open read-only")
        if entry.registry.thread.changed is not entry:
            entry.registry.switch_to(entry)
        with entry.mutex:
            end = offset + len(data)
            pending = entry.pending
            if (pending is not None and pending.node is self and pending.end == offset
                    and end - pending.start <= PENDING_MAX):
                pending.buf += data
                pending.end = end
            else:
                if pending is not None:
                    entry.flush_locked()
                entry.pending = PendingRun(self, offset, data)
            self.size = max(self.size, end)
            if self._cache:
                self._forget(offset >> self._shift, (end - 1) >> self._shift)

    def truncate(self, size: int) -> None:
        entry = self.entry
        entry.before_change()
        with entry.mutex:
            entry.flush_locked()
            entry.archive.truncate(self.ino, size)
            old = self.size
            self.size = size
            low, high = min(old, size), max(old, size)
            self._forget(low >> self._shift, max(high - 1, low) >> self._shift)


class AwaitedNode:
    """A file opened read-only before it exists: the WAL of a WAL database opened by a
    read-only connection while the archive is open read-only and no ``-wal`` exists yet.

    It reads as empty until the file appears in the archive, then it *is* that file: every
    call looks the name up (a dictionary hit) until it finds an inode, and from then on uses
    the file's shared :class:`FileNode`. The file can only appear through this process — a
    writer connection reopens the archive writable (:meth:`Registry._upgrade`) and creates
    ``-wal`` through the same :class:`ArchiveEntry`, whose name cache sees the create — so the
    reader reads exactly the frames the writer wrote and the shared wal-index points at.
    (A private empty file would leave the reader short of those frames for good.)
    """

    def __init__(self, entry: ArchiveEntry, inner: str) -> None:
        self.entry = entry
        self.inner = inner
        self.lock = DbLock()
        self.node: FileNode | None = None
        self._mutex = threading.Lock()

    def _resolve(self) -> FileNode | None:
        node = self.node
        if node is None:
            ino = self.entry.lookup(self.inner)
            if ino is None:
                return None
            with self._mutex:
                if self.node is None:
                    self.node = self.entry.open_node(ino)
                node = self.node
        return node

    @property
    def size(self) -> int:
        node = self._resolve()
        return 0 if node is None else node.size

    def read(self, offset: int, amount: int) -> bytes:
        node = self._resolve()
        return b"" if node is None else node.read(offset, amount)

    def write(self, offset: int, data: bytes) -> None:
        node = self._resolve()
        if node is None:
            raise ReadOnly(f"{self.entry.path}: {self.inner}: opened read-only")
        node.write(offset, data)

    def truncate(self, size: int) -> None:
        node = self._resolve()
        if node is None:
            if size == 0:
                return
            raise ReadOnly(f"{self.entry.path}: {self.inner}: opened read-only")
        node.truncate(size)

    def close(self) -> None:
        """Let go of the file, if it was found (the caller releases the entry)."""
        with self._mutex:
            node, self.node = self.node, None
        if node is not None:
            self.entry.close_node(node)


class MemoryNode:
    """A temp file when no writable archive can hold it (see :mod:`cartfs.vfs.vfs`): a
    bytearray.

    Temp files never touch the host disk, which matters for encrypted archives: sort spills
    and VACUUM's transient copy hold plaintext rows.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = DbLock()

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, amount: int) -> bytes:
        return bytes(self.data[offset:offset + amount])

    def write(self, offset: int, data: bytes) -> None:
        buf = self.data
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))
