"""Archive: the one public door into a Cartridge archive.

Everything an adapter does — the FUSE mount, the SQLite VFS, the CLI — goes through this
class; none of them touches pages. The inode-level methods mirror what a file system needs
(lookup, getattr, read, write, rename, ...); :class:`~cartfs.core.paths.PathHelpers` adds
path-level conveniences for scripts (``write_file``, ``read_file``, ``walk``...).

Transactions: every change goes into the one open transaction. ``sync()`` (and ``close()``)
commits it: dirty chunks are encoded and written, dirty B-tree nodes written bottom-up, the
allocator state written, all of it synced, and only then the superblock naming it written and
synced. A crash at any moment leaves the previous commit intact. Commits also happen when
``commit_bytes`` have been written or ``commit_interval`` seconds passed since the last one
(checked on each change, and by ``commit_if_due()`` which adapters call from a timer) — never
one fsync per write. Dirty chunk buffers beyond ``flush_bytes`` are written out early (without
a sync) so memory stays bounded for files larger than RAM.

Threads: one re-entrant lock serialises all calls, so any number of reader threads and one
writer may share an Archive. Files unlinked while open (``pin``) live on as orphans until the
last ``unpin``; a crash before then reclaims them at the next writable open.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import snapshots
from .alloc import Allocator, AllocatorStatistics
from .btree import LEAF_OVERHEAD, MAX_ENTRY, TREE_CATALOG, TREE_SYSTEM, BTree, TxnClock
from .cache import ARCCache, CacheStatistics
from .catalog import ROOT_INO, Inode, chunk_no_of, chunk_range, orphan_key, orphan_range
from .codec import Sealer, check_level
from .device import Device, FileDevice
from .errors import (
    ArchiveBusy,
    ArchiveClosed,
    CartError,
    CorruptArchive,
    FileTooLarge,
    IntegrityError,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    PassphraseRequired,
    ReadOnly,
    ValueOverflow,
)
from .filedata import ChunkStore
from .format import (
    CODEC_BY_NAME,
    CODEC_INHERIT,
    CODEC_NAMES,
    DEFAULT_CHUNK_SIZE,
    FEATURE_ENCRYPTED,
    FIRST_DATA_PAGE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    PAGE_SIZE,
    BlobRef,
    PageNo,
    Superblock,
    TreeRef,
    TxnId,
    decode_chunk_ptr,
)

# The ``X as X`` freeze names are re-exported for adapters (freeze.py is not public).
from .freeze import FreezeResult
from .freeze import VerifyResult as VerifyResult  # noqa: PLC0414
from .freeze import freeze as freeze_archive
from .freeze import keygen as keygen  # noqa: PLC0414
from .freeze import load_private_key as load_private_key  # noqa: PLC0414
from .freeze import load_public_key as load_public_key  # noqa: PLC0414
from .freeze import verify_signature as verify_signature  # noqa: PLC0414
from .guard import GuardedArchive
from .iamstore import IamStore
from .keys import KdfParams, new_key_header, unwrap, wrap
from .namespace import MAX_FILE_SIZE, DirEntry, Namespace
from .pager import Pager, PagerStatistics
from .paths import PathHelpers
from .snapshots import SnapshotInfo
from .vacuum import VacuumResult as VacuumResult  # noqa: PLC0414
from .vacuum import vacuum as vacuum_archive
from .views import Change, SnapshotView, diff_trees
from .xattrs import XattrStore

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Name = str | bytes

ALLOC_OWNER = b"\0allocator"
MANIFEST_KEY = b"manifest"
MANIFEST_MAX = MAX_ENTRY - LEAF_OVERHEAD - len(MANIFEST_KEY)  # one B-tree record
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
DEFAULT_FLUSH_BYTES = 32 * 1024 * 1024
DEFAULT_COMMIT_BYTES = 512 * 1024 * 1024
DEFAULT_COMMIT_INTERVAL = 5.0


def _locked(method: Callable[Concatenate[Archive, P], R]) -> Callable[Concatenate[Archive, P], R]:
    @functools.wraps(method)
    def wrapper(self: Archive, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            if self._closed:
                raise ArchiveClosed("archive is closed")
            return method(self, *args, **kwargs)
    return cast("Callable[Concatenate[Archive, P], R]", wrapper)


def _writing(method: Callable[Concatenate[Archive, P], R]) -> Callable[Concatenate[Archive, P], R]:
    """Like _locked, for calls that change the archive. If one dies halfway — a bug, an
    interrupt, a damaged page met in the middle of a change — the in-memory state may be half
    changed, so the archive refuses to commit it (close() commits nothing after that); the
    last commit stays intact on disk. Errors raised before anything changes (validation,
    NoSpace from a reservation) leave the archive usable: the trees, file data and inodes
    count their changes, so "before anything changed" is a fact, not an assumption."""
    @functools.wraps(method)
    def wrapper(self: Archive, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run_writing(functools.partial(method, self, *args, **kwargs))
    return cast("Callable[Concatenate[Archive, P], R]", wrapper)


def _name(name: Name) -> bytes:
    return os.fsencode(name)


def _publish(tmp: str, path: str) -> None:
    """Give the finished archive its name without ever replacing an existing file: a hard
    link where the file system has them; elsewhere (FAT, exFAT, some network file systems)
    reserve the name exclusively, then rename over the reservation."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK):
            raise
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.rename(tmp, path)


_INT64 = range(-(1 << 63), 1 << 63)
_UINT32 = range(0, 1 << 32)


def _check_attr_ranges(**values: int | None) -> None:
    """Times are signed 64-bit nanoseconds and ids unsigned 32-bit on disk: refuse what does
    not fit before anything changes (a half-applied setattr would block every commit)."""
    for name, value in values.items():
        if value is None:
            continue
        allowed = _INT64 if name.endswith("_ns") else _UINT32
        if value not in allowed:
            what = "time" if name.endswith("_ns") else name
            raise ValueOverflow(f"{what} out of range for the archive format: {value}")


def _manifest_bytes(fields: Mapping[str, Any]) -> bytes:
    """The manifest is one B-tree record: refuse one that does not fit before anything
    changes (a description is a paragraph, not a document)."""
    raw = json.dumps(fields).encode()
    if len(raw) > MANIFEST_MAX:
        raise InvalidArgument(f"manifest too large: slug, title, description and author "
                              f"take {len(raw)} bytes encoded, at most {MANIFEST_MAX} fit")
    return raw


@dataclass(frozen=True)
class StatFs:
    """statvfs() figures: free space counts what the archive has free plus what the disk
    holding it could still grow into."""

    block_size: int
    blocks: int
    blocks_free: int
    blocks_avail: int
    files: int
    files_free: int
    name_max: int


@dataclass(frozen=True)
class ArchiveStatistics:
    """Live counters from every layer (trio's *Statistics shape)."""

    txid: int
    commits: int
    dirty_bytes: int
    open_inodes: int
    cache: CacheStatistics
    pager: PagerStatistics
    allocator: AllocatorStatistics


@dataclass(frozen=True)
class OpenOptions:
    """Tuning knobs shared by create() and open()."""

    cache_bytes: int = DEFAULT_CACHE_BYTES
    flush_bytes: int = DEFAULT_FLUSH_BYTES
    commit_bytes: int = DEFAULT_COMMIT_BYTES
    commit_interval: float = DEFAULT_COMMIT_INTERVAL


class Archive(PathHelpers):
    """An open Cartridge archive. Use as a context manager; see the module docstring."""

    root_ino = ROOT_INO

    def __init__(self, device: Device, sb: Superblock, *, writable: bool,
                 sealer: Sealer | None, options: OpenOptions, path: str | None) -> None:
        self.path = path
        self.writable = writable and not sb.frozen
        self.options = options
        self._lock = threading.RLock()
        self._closed = False
        self._device = device
        self._cache: ARCCache[Any, Any] = ARCCache(options.cache_bytes)
        self._pager = Pager(device, self._cache, sealer)
        self._sb = sb
        self._clock = TxnClock(sb.txid + 1)
        self._alloc = self._load_allocator(sb)
        alloc = self._alloc if self.writable else None
        self._catalog = BTree(self._pager, alloc, self._clock, TREE_CATALOG, sb.catalog)
        self._system = BTree(self._pager, alloc, self._clock, TREE_SYSTEM, sb.system,
                             shared=False)
        self._chunks = ChunkStore(self._pager, self._catalog, alloc, self._clock,
                                  sb.chunk_size, sb.codec, sb.codec_level)
        self._xattrs = XattrStore(self._pager, self._catalog, alloc, self._clock)
        self._ns = Namespace(self._catalog, self._chunks, self._xattrs,
                             self._new_ino if self.writable else None)
        self._next_ino = sb.next_ino
        self._pins: dict[int, int] = {}
        self._broken: BaseException | None = None
        self._meta_dirty = False
        self._uncommitted = 0
        self._commits = 0
        self._last_commit = time.monotonic()
        self._iam = IamStore(self)
        self._allocated: dict[int, tuple[int, int, float]] = {}  # see allocated_bytes

    # ---- opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, compression: str = "lz4",
               level: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE, title: str = "",
               slug: str = "", description: str = "", author: str = "",
               passphrase: str | bytes | None = None, kdf: KdfParams | None = None,
               options: OpenOptions | None = None) -> Archive:
        """Create a new archive file (refusing to overwrite) and open it for writing.

        The file appears under its name only once it is a valid archive (created under a
        temporary name, then hard-linked into place).
        """
        path = os.fspath(path)
        if not path:
            raise InvalidArgument("no archive path given")
        tmp = f"{path}.creating-{os.getpid()}"
        device = FileDevice(tmp, writable=True, create=True)
        try:
            archive = cls.create_on(device, compression=compression, level=level,
                                    chunk_size=chunk_size, title=title, slug=slug,
                                    description=description, author=author,
                                    passphrase=passphrase, kdf=kdf, options=options, path=path)
            _publish(tmp, path)
        except FileExistsError:
            device.close()
            raise CartError(f"{path}: already exists") from None
        except BaseException:
            device.close()
            raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return archive

    @classmethod
    def create_on(cls, device: Device, *, compression: str = "lz4", level: int = 0,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, title: str = "", slug: str = "",
                  description: str = "", author: str = "",
                  passphrase: str | bytes | None = None, kdf: KdfParams | None = None,
                  options: OpenOptions | None = None, path: str | None = None) -> Archive:
        """Create an archive on an empty device (tests use a MemoryDevice)."""
        if compression not in CODEC_BY_NAME:
            raise InvalidArgument(f"unknown compression {compression!r} (lz4, zstd, none)")
        if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
            raise InvalidArgument("chunk size must be a power of two from 4 KiB to 1 MiB")
        check_level(CODEC_BY_NAME[compression], level)
        now = time.time_ns()
        manifest = _manifest_bytes({"slug": slug, "title": title, "description": description,
                                    "author": author, "created": now})
        uuid = os.urandom(16)
        sb = Superblock(txid=TxnId(0), uuid=uuid, total_pages=FIRST_DATA_PAGE,
                        chunk_size=chunk_size, codec=CODEC_BY_NAME[compression],
                        codec_level=level, created_ns=now, committed_ns=now)
        sealer = None
        if passphrase is not None:
            header, data_key = new_key_header(passphrase, uuid, kdf)
            sb = sb.with_(features=FEATURE_ENCRYPTED, key_header=header)
            sealer = Sealer(data_key, uuid)
        device.resize(FIRST_DATA_PAGE * PAGE_SIZE)
        archive = cls(device, sb, writable=True, sealer=sealer,
                      options=options or OpenOptions(), path=path)
        root = Inode(ino=ROOT_INO, mode=0o040755, uid=os.getuid(), gid=os.getgid(), nlink=2,
                     atime_ns=now, mtime_ns=now, ctime_ns=now, btime_ns=now, parent=ROOT_INO)
        archive._ns.put(root)
        archive._system.put(MANIFEST_KEY, manifest)
        archive.sync()
        archive._pager.write_superblock_slot(archive._sb, (archive._sb.txid + 1) % 2)
        archive._pager.sync()
        return archive

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False,
             passphrase: str | bytes | None = None,
             options: OpenOptions | None = None) -> Archive:
        """Open an existing archive; read-only opens share the file with other readers."""
        path = os.fspath(path)
        device = FileDevice(path, writable=not readonly)
        try:
            return cls.open_on(device, readonly=readonly, passphrase=passphrase,
                               options=options, path=path)
        except BaseException:
            device.close()
            raise

    @classmethod
    def open_on(cls, device: Device, *, readonly: bool = False,
                passphrase: str | bytes | None = None, options: OpenOptions | None = None,
                path: str | None = None) -> Archive:
        probe = Pager(device, ARCCache(0))
        sb = probe.read_superblocks()[0]
        if sb.frozen and not readonly:
            raise ReadOnly("archive is frozen: it opens read-only only")
        size = device.size()
        if size < sb.total_pages * PAGE_SIZE:
            raise CorruptArchive(
                f"file is truncated: the archive needs {sb.total_pages * PAGE_SIZE} bytes, "
                f"the file has {size}", kind="file")
        sealer = None
        if sb.encrypted:
            if passphrase is None:
                raise PassphraseRequired("archive is encrypted: a passphrase is required")
            sealer = Sealer(unwrap(sb.key_header, passphrase, sb.uuid), sb.uuid)
            if not Pager(device, ARCCache(0), sealer).superblock_is_authentic(sb):
                raise IntegrityError("superblock authentication failed (tampered header)",
                                     page=sb.txid % 2, kind="superblock")
        archive = cls(device, sb, writable=not readonly, sealer=sealer,
                      options=options or OpenOptions(), path=path)
        if archive.writable:
            archive._reclaim_orphans()
        log.info("opened %s %s: transaction %d, %d pages%s", path or "device",
                 "for writing" if archive.writable else "read-only", sb.txid, sb.total_pages,
                 ", encrypted" if sb.encrypted else "")
        return archive

    def _load_allocator(self, sb: Superblock) -> Allocator:
        if sb.allocator.empty:
            return Allocator.fresh(sb.total_pages, self._pager.grow)
        data = self._pager.read_blob(sb.allocator, ALLOC_OWNER, kind="allocator state")
        alloc = Allocator.decode(data, self._pager.grow)
        if alloc.total_pages != sb.total_pages:
            raise CorruptArchive("allocator and superblock disagree on the file size",
                                 page=sb.allocator.page, kind="allocator state")
        return alloc

    def _reclaim_orphans(self) -> None:
        start, end = orphan_range()
        orphans = [key for key, _ in self._catalog.items(start, end)]
        for key in orphans:
            ino = int.from_bytes(key[9:], "big")
            if self._ns.exists(ino):
                self._ns.delete_inode(ino)
            self._catalog.delete(key)
        if orphans:
            self.sync()

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is pending and release the file."""
        with self._lock:
            if self._closed:
                return
            try:
                if self.writable and self._broken is None:
                    self._commit()
                elif self.writable and self._has_changes():
                    log.warning("%s: closed without committing the changes since the last "
                                "commit (a call failed halfway: %s)",
                                self.path or "archive", self._broken)
            finally:
                self._closed = True
                self._device.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @_locked
    def sync(self) -> None:
        """Make everything written so far durable (one commit, two syncs)."""
        self._commit()

    @_locked
    def commit_if_due(self) -> bool:
        """Commit if the commit interval has passed with changes pending; adapters call this
        from a timer. Returns whether a commit happened."""
        due = time.monotonic() - self._last_commit >= self.options.commit_interval
        if due and self._has_changes():
            self._commit()
            return True
        return False

    def _run_writing(self, call: Callable[[], R]) -> R:
        """Run a change under the lock on an open, writable archive (see ``_writing``):
        the one place that decides whether a failed change leaves the archive unusable."""
        with self._lock:
            if self._closed:
                raise ArchiveClosed("archive is closed")
            self._check_writable()
            before = self._mutations()
            try:
                return call()
            except BaseException as exc:
                self._fail_if_changed(exc, before)
                raise

    def _mutations(self) -> int:
        return (self._catalog.version + self._system.version + self._chunks.version
                + self._ns.version)

    def _fail_if_changed(self, exc: BaseException, before: int) -> None:
        """After an exception: refuse to commit a state a call may have left half changed."""
        clean = isinstance(exc, CartError) and not isinstance(exc, CorruptArchive)
        if not clean or self._mutations() != before:
            self._broken = self._broken or exc

    def _has_changes(self) -> bool:
        return (self._meta_dirty or self._ns.dirty or self._catalog.is_dirty
                or self._system.is_dirty or self._chunks.is_dirty())

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnly("archive is frozen" if self._sb.frozen else
                           "archive is open read-only")
        if self._broken is not None:
            raise CartError(f"archive must be reopened after a failed commit: {self._broken}")

    def _commit(self) -> None:
        if not self.writable or not self._has_changes():
            return
        self._check_writable()
        txid = self._clock.txid
        # Everything that can run out of space happens before the point of no return and
        # leaves a consistent (uncommitted) state: data takes its pages first, then the
        # pages for nodes and the allocator state are reserved (NoSpace changes nothing).
        try:
            self._ns.flush()
            self._chunks.flush(self._codec_for, self._size_of)
            self._alloc.reserve(self._commit_pages())
        except NoSpace:
            raise
        except BaseException as exc:
            self._broken = self._broken or exc
            raise
        try:
            catalog = self._catalog.write_out()
            system = self._system.write_out()
            allocator = self._write_allocator(txid)
            sb = self._sb.with_(txid=txid, catalog=catalog, system=system, allocator=allocator,
                                next_ino=self._next_ino, total_pages=self._alloc.total_pages,
                                committed_ns=time.time_ns())
            self._sb = self._pager.commit_superblock(sb)
        except BaseException as exc:
            self._broken = exc
            raise
        self._alloc.release(txid)
        log.debug("committed transaction %d (%d pages in the file)", txid,
                  self._alloc.total_pages)
        self._clock.txid = TxnId(txid + 1)
        self._meta_dirty = False
        self._uncommitted = 0
        self._commits += 1
        self._last_commit = time.monotonic()

    def _commit_pages(self) -> int:
        """Pages a commit needs beyond its data: dirty nodes and the allocator state."""
        return (self._catalog.dirty_node_count() + self._system.dirty_node_count()
                + 2 * self._pager.blob_pages(len(self._alloc.encode())) + 8)

    def _write_allocator(self, txid: TxnId) -> BlobRef:
        old = self._sb.allocator
        if not old.empty:
            self._alloc.free(old.page, old.npages, old.birth, txid, shared=False)
        size = len(self._alloc.encode()) + 64
        while True:
            npages = self._pager.blob_pages(size)
            page = self._alloc.allocate(npages)
            data = self._alloc.encode()
            if self._pager.blob_pages(len(data)) < npages:
                # Taking the pages shrank the state: pad it to cover all of them, or the
                # last one would be allocated and owned by nothing (a leaked page).
                target = (npages - 1) * PAGE_SIZE + 1
                while self._pager.blob_pages(target - 1) == npages:  # sealing overhead
                    target -= 1
                data = self._alloc.encode(min_length=target)
            if self._pager.blob_pages(len(data)) == npages:
                return self._pager.write_blob(PageNo(page), txid, ALLOC_OWNER, data)
            self._alloc.free_now(page, npages)
            size = len(data) + 64

    def _after_change(self, nbytes: int = 0) -> None:
        """Group commit: commit on size or time thresholds, never per write."""
        self._uncommitted += nbytes
        if (self._uncommitted >= self.options.commit_bytes
                or time.monotonic() - self._last_commit >= self.options.commit_interval):
            try:
                self._commit()
            except NoSpace:
                # The change itself succeeded; the commit is retried at the next threshold
                # or sync(), which report the full disk.
                log.warning("automatic commit postponed: the disk is full")

    def _flush_if_needed(self) -> None:
        """Bound dirty memory: encode chunks early (without syncing) past flush_bytes."""
        if self._chunks.dirty_bytes >= self.options.flush_bytes:
            self._chunks.flush(self._codec_for, self._size_of)

    def _codec_for(self, ino: int) -> int:
        codec = self._ns.get(ino).codec
        return self._sb.codec if codec == CODEC_INHERIT else codec

    def _size_of(self, ino: int) -> int:
        return self._ns.get(ino).size if self._ns.exists(ino) else 0

    def _new_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        self._meta_dirty = True
        return ino

    # ---- inode-level API --------------------------------------------------------------------

    @_locked
    def lookup(self, parent: int, name: Name) -> Inode:
        return self._ns.lookup(parent, _name(name))

    @_locked
    def getattr(self, ino: int) -> Inode:
        return self._ns.get(ino)

    @_locked
    def allocated_bytes(self, ino: int) -> int:
        """Bytes the data of ``ino`` takes in the archive (``st_blocks``, ``du``): the pages
        of its stored chunks (after compression), inline chunks at their stored size, chunks
        not stored yet at their size; holes take nothing. Cheap by design: the first 4096
        chunk records (256 MiB of 64 KiB chunks) are counted, a bigger file is extrapolated
        from them; a figure is kept while nothing changes, and one that took over 1 ms to
        count is recounted at most once per 100 times that (a big file being written shows
        a figure up to ~1 s old)."""
        now = time.monotonic()
        stamp = self._mutations()
        known = self._allocated.get(ino)
        if known is not None and (known[1] == stamp or now < known[2]):
            return known[0]
        total = self._count_allocated(ino)
        took = time.monotonic() - now
        if len(self._allocated) >= 4096:
            self._allocated.clear()
        self._allocated[ino] = (total, stamp, now + 100 * took if took > 0.001 else now)
        return total

    def _count_allocated(self, ino: int) -> int:
        size, cs = self._ns.get(ino).size, self._sb.chunk_size
        total, stored = 0, set[int]()
        for key, value in self._chunks.tree.items(*chunk_range(ino)):
            chunk_no = chunk_no_of(key)
            if len(stored) == 4096:  # extrapolate from the part counted (chunks < chunk_no)
                return total * size // (chunk_no * cs)
            ptr = decode_chunk_ptr(value)
            total += ptr.npages * PAGE_SIZE if ptr.inline_data is None \
                else len(ptr.inline_data)
            stored.add(chunk_no)
        chunks = -(-size // cs)
        if chunks - len(stored) <= 256:  # look each unstored chunk up (no dirty scan)
            unstored: Sequence[int] = [c for c in range(chunks) if c not in stored]
        else:  # mostly holes: scan the dirty chunks instead
            unstored = [c for c in self._chunks.chunk_numbers(ino)
                        if c not in stored] if self._chunks.is_dirty(ino) else []
        for chunk_no in unstored:  # written since the last flush: count them whole
            length = min(len(self._chunks.chunk_bytes(ino, chunk_no)), size - chunk_no * cs)
            total += -(-max(length, 0) // PAGE_SIZE) * PAGE_SIZE
        return total

    @_writing
    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Inode:
        """chmod, chown, truncate and utimens in one call (None leaves a field alone)."""
        _check_attr_ranges(uid=uid, gid=gid, atime_ns=atime_ns, mtime_ns=mtime_ns,
                           ctime_ns=ctime_ns)
        if size is not None:
            self._truncate(ino, size)
        inode = self._ns.setattr(ino, mode=mode, uid=uid, gid=gid, atime_ns=atime_ns,
                                 mtime_ns=mtime_ns, ctime_ns=ctime_ns)
        self._after_change()
        return inode

    def _make(self, parent: int, name: Name, mode: int, uid: int | None, gid: int | None,
              rdev: int = 0) -> Inode:
        inode = self._ns.make(parent, _name(name), mode,
                              os.getuid() if uid is None else uid,
                              os.getgid() if gid is None else gid, rdev)
        self._after_change()
        return inode

    @_writing
    def mkdir(self, parent: int, name: Name, mode: int = 0o755, uid: int | None = None,
              gid: int | None = None) -> Inode:
        return self._make(parent, name, 0o040000 | (mode & 0o7777), uid, gid)

    @_writing
    def create_file(self, parent: int, name: Name, mode: int = 0o644, uid: int | None = None,
                    gid: int | None = None) -> Inode:
        """Create an empty regular file (AlreadyExists if the name is taken)."""
        return self._make(parent, name, 0o100000 | (mode & 0o7777), uid, gid)

    @_writing
    def create_unlinked(self, mode: int = 0o644, uid: int | None = None,
                        gid: int | None = None) -> Inode:
        """A regular file with no name yet (like O_TMPFILE), pinned once: fill it, then
        ``link(ino, parent, name, replace=True)`` publishes it atomically and ``unpin``
        lets it go. If the process dies first, the next writable open reclaims it, so a
        half-written file never appears under a name."""
        inode = self._ns.make_unlinked(0o100000 | (mode & 0o7777),
                                       os.getuid() if uid is None else uid,
                                       os.getgid() if gid is None else gid)
        self._pins[inode.ino] = self._pins.get(inode.ino, 0) + 1
        self._catalog.put(orphan_key(inode.ino), b"")
        self._after_change()
        return inode

    @_writing
    def mknod(self, parent: int, name: Name, mode: int, rdev: int = 0,
              uid: int | None = None, gid: int | None = None) -> Inode:
        """Any file type by its mode bits: regular, FIFO, socket, character/block device."""
        if mode & 0o170000 in (0, 0o040000, 0o120000):
            mode = (mode & 0o7777) | (0o100000 if mode & 0o170000 == 0 else mode & 0o170000)
            if mode & 0o170000 != 0o100000:
                raise InvalidArgument("use mkdir/symlink for directories and links")
        return self._make(parent, name, mode, uid, gid, rdev)

    @_writing
    def symlink(self, parent: int, name: Name, target: Name, uid: int | None = None,
                gid: int | None = None) -> Inode:
        inode = self._ns.symlink(parent, _name(name), _name(target),
                                 os.getuid() if uid is None else uid,
                                 os.getgid() if gid is None else gid)
        self._after_change()
        return inode

    @_locked
    def readlink(self, ino: int) -> bytes:
        return self._ns.readlink(ino)

    @_writing
    def link(self, ino: int, new_parent: int, new_name: Name, *, replace: bool = False
             ) -> Inode:
        """A new name for ``ino``. ``replace=True`` atomically replaces an existing
        non-directory of that name (as rename does); linking an unlinked file gives it its
        first name."""
        name = _name(new_name)
        if replace:
            self._ns.check_link(ino, new_parent, name)  # refuse before removing anything
            existing = self._ns.child(new_parent, name)
            if existing is not None and existing[0] != ino:
                self._drop_if_unused(self._ns.unlink(new_parent, name))
        inode = self._ns.link(ino, new_parent, name)
        if inode.nlink == 1:
            self._catalog.delete(orphan_key(ino))
        self._after_change()
        return inode

    @_writing
    def unlink(self, parent: int, name: Name) -> None:
        inode = self._ns.unlink(parent, _name(name))
        self._drop_if_unused(inode)
        self._after_change()

    @_writing
    def rmdir(self, parent: int, name: Name) -> None:
        inode = self._ns.rmdir(parent, _name(name))
        self._drop_if_unused(inode)
        self._after_change()

    @_writing
    def rename(self, old_parent: int, old_name: Name, new_parent: int, new_name: Name,
               flags: int = 0) -> None:
        """rename(2) with RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2)."""
        victim = self._ns.rename(old_parent, _name(old_name), new_parent, _name(new_name),
                                 flags)
        if victim is not None:
            self._drop_if_unused(victim)
        self._after_change()

    def _drop_if_unused(self, inode: Inode) -> None:
        """An inode without names is deleted now, or at its last unpin (an orphan)."""
        if inode.nlink > 0:
            return
        if self._pins.get(inode.ino):
            self._catalog.put(orphan_key(inode.ino), b"")
        else:
            self._ns.delete_inode(inode.ino)

    @_locked
    def pin(self, ino: int) -> None:
        """An open handle (or kernel reference): keep the inode alive if it is unlinked."""
        self._pins[ino] = self._pins.get(ino, 0) + 1

    @_locked
    def unpin(self, ino: int, count: int = 1) -> None:
        left = self._pins.get(ino, 0) - count
        if left > 0:
            self._pins[ino] = left
            return
        self._pins.pop(ino, None)
        if self.writable and self._broken is None and self._ns.exists(ino) \
                and self._ns.get(ino).nlink == 0:
            before = self._mutations()
            try:
                self._ns.delete_inode(ino)
                self._catalog.delete(orphan_key(ino))
                self._after_change()
            except BaseException as exc:
                self._fail_if_changed(exc, before)
                raise

    @_locked
    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``; short only at end of file."""
        inode = self._ns.get(ino)
        if inode.is_dir:
            raise IsADirectory("is a directory")
        if offset < 0 or size < 0:
            raise InvalidArgument("negative offset or size")
        return self._chunks.read(ino, inode.size, offset, size)

    @_writing
    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview, *,
              touch: bool = True) -> int:
        """Write ``data`` at ``offset`` (extending the file, zero-filling any gap).

        ``touch=False`` leaves mtime/ctime alone: a FUSE mount with the kernel's writeback
        cache sets them itself (a daemon-made mtime would make the kernel drop its cache)."""
        inode = self._ns.get(ino)
        if inode.is_dir:
            raise IsADirectory("is a directory")
        if not inode.is_reg:
            raise InvalidArgument("not a regular file")
        length = len(data) if not isinstance(data, memoryview) else data.nbytes
        if offset < 0 or offset + length > MAX_FILE_SIZE:
            raise FileTooLarge("offset beyond the largest file size")
        self._flush_if_needed()
        self._chunks.write(ino, offset, data, self._codec_for(ino))
        size = max(inode.size, offset + length)
        if touch:
            now = time.time_ns()
            self._ns.put(inode.with_(size=size, mtime_ns=now, ctime_ns=now))
        elif size != inode.size:
            self._ns.put(inode.with_(size=size))
        self._after_change(length)
        return length

    def _truncate(self, ino: int, size: int) -> None:
        inode = self._ns.get(ino)
        if inode.is_dir:
            raise IsADirectory("is a directory")
        if not inode.is_reg:
            raise InvalidArgument("not a regular file")
        if size < 0 or size > MAX_FILE_SIZE:
            raise FileTooLarge("size out of range") if size > 0 else \
                InvalidArgument("negative size")
        self._chunks.truncate(ino, inode.size, size)
        now = time.time_ns()
        self._ns.put(inode.with_(size=size, mtime_ns=now, ctime_ns=now))

    @_writing
    def truncate(self, ino: int, size: int) -> Inode:
        self._truncate(ino, size)
        self._after_change()
        return self._ns.get(ino)

    @_locked
    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]:
        """Entries after cookie ``after`` (0 = from the start); each carries its cookie."""
        return self._ns.readdir(ino, after, limit)

    @_locked
    def getxattr(self, ino: int, name: Name) -> bytes:
        return self._ns.getxattr(ino, _name(name))

    @_locked
    def listxattr(self, ino: int) -> list[bytes]:
        return self._ns.listxattr(ino)

    @_writing
    def setxattr(self, ino: int, name: Name, value: bytes, flags: int = 0) -> None:
        """flags: XATTR_CREATE (1) fails if present, XATTR_REPLACE (2) if absent."""
        self._ns.setxattr(ino, _name(name), bytes(value), flags)
        self._after_change()

    @_writing
    def removexattr(self, ino: int, name: Name) -> None:
        self._ns.removexattr(ino, _name(name))
        self._after_change()

    @_writing
    def set_codec(self, ino: int, codec: str | None) -> Inode:
        """Per-file compression override (None = archive default); applies to new writes."""
        if codec is not None and codec not in CODEC_BY_NAME:
            raise InvalidArgument(f"unknown compression {codec!r}")
        inode = self._ns.get(ino)
        value = CODEC_INHERIT if codec is None else CODEC_BY_NAME[codec]
        inode = self._ns.put(inode.with_(codec=value))
        self._after_change()
        return inode

    # ---- archive-wide -----------------------------------------------------------------------

    @_locked
    def statfs(self) -> StatFs:
        stats = self._alloc.statistics()
        host_free = 0
        if self.path is not None and self.writable:
            vfs = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
            host_free = vfs.f_bavail * vfs.f_frsize // PAGE_SIZE
        free = stats.free_pages + stats.pending_pages + host_free
        return StatFs(PAGE_SIZE, stats.total_pages + host_free, free, free,
                      self._next_ino + (1 << 32), 1 << 32, 255)

    @property
    def superblock(self) -> Superblock:
        return self._sb

    @property
    def compression(self) -> str:
        return CODEC_NAMES[self._sb.codec]

    @_locked
    def manifest(self) -> dict[str, Any]:
        raw = self._system.get(MANIFEST_KEY)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise CorruptArchive(f"manifest does not decode: {exc}", kind="system tree") \
                from None
        if not isinstance(data, dict):
            raise CorruptArchive("manifest is not an object", kind="system tree")
        return data

    @_writing
    def set_manifest(self, *, slug: str | None = None, title: str | None = None,
                     description: str | None = None, author: str | None = None) -> None:
        """Change the manifest fields given (None leaves a field alone)."""
        data = self.manifest()
        changes = {"slug": slug, "title": title, "description": description, "author": author}
        data.update({k: v for k, v in changes.items() if v is not None})
        self._system.put(MANIFEST_KEY, _manifest_bytes(data))
        self._after_change()

    @_locked
    def statistics(self) -> ArchiveStatistics:
        return ArchiveStatistics(self._sb.txid, self._commits, self._chunks.dirty_bytes,
                                 len(self._pins), self._cache.statistics(),
                                 self._pager.statistics(), self._alloc.statistics())

    # ---- internals for core modules (fsck, info, snapshots) ---------------------------------

    def _snapshot_roots(self) -> list[tuple[str, TreeRef]]:
        return [(s.name, s.root) for s in snapshots.list_snapshots(self)]

    def _replace_catalog_root(self, root: TreeRef) -> None:
        """Restore: the live catalog becomes ``root`` (committed by the caller)."""
        self._catalog.replace_root(root)
        self._chunks.forget()
        self._ns.forget_cache()
        self._meta_dirty = True

    @_writing
    def change_passphrase(self, new_passphrase: str | bytes,
                          kdf: KdfParams | None = None) -> None:
        """Re-wrap the data key under a new passphrase: no data or node page is re-sealed;
        the superblocks change (both slots are rewritten, so the old passphrase no longer
        opens this file), plus the allocator state each of those two commits writes. Data sealed
        under the same data key stays readable by anyone who kept an old copy of the file and
        its old passphrase: to revoke that, freeze or copy into a new archive."""
        sealer = self._pager.sealer
        if sealer is None:
            raise InvalidArgument("archive is not encrypted")
        header = wrap(sealer.data_key, new_passphrase, self._sb.uuid, kdf)
        self._sb = self._sb.with_(key_header=header)
        for _ in range(2):
            self._meta_dirty = True
            self._commit()

    # ---- IAM ---------------------------------------------------------------------------------

    @property
    def iam(self) -> IamStore:
        """Users, access keys and policies stored in this archive."""
        return self._iam

    def as_principal(self, user: str, context: Mapping[str, str | Sequence[str]] | None = None
                     ) -> GuardedArchive:
        """This archive as ``user`` sees it: every path-level call checked by IAM."""
        return GuardedArchive(self, self._iam, user, context)

    # ---- snapshots --------------------------------------------------------------------------

    @_writing
    def create_snapshot(self, name: str) -> SnapshotInfo:
        """Pin the current state (committed first) as a read-only snapshot; O(1)."""
        return snapshots.create_snapshot(self, name)

    @_locked
    def list_snapshots(self, *, usage: bool = False) -> list[SnapshotInfo]:
        """Snapshots oldest first; ``usage=True`` also computes the bytes each holds alone
        (what deleting it would free), which walks the trees' metadata."""
        found = snapshots.list_snapshots(self)
        if not usage:
            return found
        held = snapshots.exclusive_usage(self, found)  # one pass for all of them
        return [replace(s, exclusive_bytes=held[s.id]) for s in found]

    @_writing
    def delete_snapshot(self, name: str) -> None:
        """Forget a snapshot and free the pages only it held."""
        snapshots.delete_snapshot(self, name)

    @_writing
    def restore_snapshot(self, name: str) -> None:
        """Make a snapshot's tree the live tree (all snapshots stay). Refused while files
        are open, since their handles would point into the tree being replaced."""
        if self._pins:
            raise ArchiveBusy("files are open (is the archive mounted?); close them first")
        snapshots.restore_snapshot(self, name)
        self._reclaim_orphans()

    @_locked
    def snapshot(self, name: str) -> SnapshotView:
        """A read-only view of a snapshot, with the read half of this API."""
        return SnapshotView(self, snapshots.get_snapshot(self, name))

    def vacuum(self, progress: Callable[[int, int], None] | None = None, *,
               online: bool = False) -> VacuumResult:
        """Move live pages down and shrink the file; crash-safe at every step, and fine
        while files are open (inode numbers and contents do not change). It runs in steps
        that each take the lock (like a ``_writing`` call) and end with a commit, so other
        threads' calls go on between them; ``online=True`` (a mount) also pauses after each
        step so that they get their turn (see vacuum.py)."""
        return vacuum_archive(self, progress, online=online)

    def freeze(self, dest: str | os.PathLike[str], *, key: Ed25519PrivateKey | None = None,
               snapshot: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> FreezeResult:
        """Write a compact, read-only, signed copy of the live tree (or a snapshot) to
        ``dest``; it opens (and mounts) read-only only. See freeze.py."""
        return freeze_archive(self, os.fspath(dest), key=key, snapshot=snapshot,
                              progress=progress)

    def diff(self, old: str | None, new: str | None = None) -> list[Change]:
        """Paths added, removed or changed from snapshot ``old`` to snapshot ``new`` (None
        means the live tree)."""
        return diff_trees(self if old is None else self.snapshot(old),
                          self if new is None else self.snapshot(new))
