"""File contents: fixed-size logical chunks, each compressed, sealed and stored as a unit.

Theory of operation
-------------------
A file is cut into chunks of ``chunk_size`` bytes (64 KiB by default). Chunk n covers bytes
``[n*chunk_size, (n+1)*chunk_size)`` and is named in the catalog by the key (ino, CHUNK, n).
A missing chunk is a hole and reads as zeros; a chunk may be shorter than chunk_size (the tail
of a file) and bytes past its logical length read as zeros too.

Writes go to a *dirty buffer* per chunk (a bytearray holding the chunk's current logical
bytes) — a 4 KiB write touches one chunk and never the rest of the file. Dirty buffers are
encoded (compressed, sealed, written to a freshly allocated extent, or kept inline in the leaf
when tiny) only when the archive flushes: at commit, or earlier when they exceed the flush
budget. A chunk rewritten many times within one transaction is encoded once. The old extent is
freed copy-on-write (it stays valid until the new state is durable).

Decoded chunks are cached in the ARC pool under ``("c", page, birth)``; like node pages, a
page is only reused with a new birth, so cached chunks are never stale.
"""

from __future__ import annotations

from collections.abc import Callable

from .alloc import Allocator
from .btree import BTree, TxnClock
from .catalog import INLINE_VALUE_MAX, chunk_key, chunk_no_of, chunk_range
from .codec import compress, decompress
from .errors import CorruptArchive
from .format import (
    CHUNK_INLINE_HEAD,
    CODEC_NONE,
    PAGE_SIZE,
    ChunkPtr,
    PageNo,
    TxnId,
    crc32,
    decode_chunk_ptr,
    encode_chunk_ptr,
)
from .pager import Pager

INLINE_STORED_MAX = INLINE_VALUE_MAX - CHUNK_INLINE_HEAD.size
MAX_RUN_BYTES = 4 * 1024 * 1024  # one pread for at most this much of a contiguous run
Data = bytes | bytearray | memoryview  # logical chunk bytes (views are read-only)


def _contiguous(missing: list[tuple[int, ChunkPtr]]) -> list[list[tuple[int, ChunkPtr]]]:
    """Split chunks into runs whose extents follow each other on disk."""
    runs: list[list[tuple[int, ChunkPtr]]] = []
    for chunk_no, ptr in missing:
        if runs:
            prev = runs[-1][-1][1]
            span = (ptr.page - runs[-1][0][1].page) * PAGE_SIZE + ptr.stored
            if ptr.page == prev.page + prev.npages and span <= MAX_RUN_BYTES:
                runs[-1].append((chunk_no, ptr))
                continue
        runs.append([(chunk_no, ptr)])
    return runs
MAX_SPARE_BUFFERS = 256


class ChunkStore:
    """Reads and writes file bytes for one catalog tree (the live one or a snapshot's)."""

    def __init__(self, pager: Pager, tree: BTree, alloc: Allocator | None, clock: TxnClock,
                 chunk_size: int, default_codec: int, codec_level: int) -> None:
        self.pager = pager
        self.tree = tree
        self.alloc = alloc
        self.clock = clock
        self.chunk_size = chunk_size
        self.default_codec = default_codec
        self.codec_level = codec_level
        self._dirty: dict[tuple[int, int], bytearray] = {}
        self.dirty_bytes = 0
        self._zero = bytes(chunk_size)
        self._spare: list[bytearray] = []  # recycled chunk buffers (see _new_buffer)
        self._memo: tuple[int, int, Data] | None = None  # last chunk read
        self.version = 0  # bumped by every change of file content

    # ---- reading ----------------------------------------------------------------------------

    def pointer(self, ino: int, chunk_no: int) -> ChunkPtr | None:
        value = self.tree.get(chunk_key(ino, chunk_no))
        return None if value is None else decode_chunk_ptr(value)

    def decode(self, ino: int, chunk_no: int, ptr: ChunkPtr) -> Data:
        """The logical bytes of a stored chunk (cached by extent)."""
        if ptr.inline_data is not None:
            return decompress(ptr.codec, ptr.inline_data, ptr.logical)
        key = ("c", ptr.page, ptr.birth)
        data: Data | None = self.pager.cache.get(key)
        if data is None:
            data = self.load_extent(ino, chunk_no, ptr)
            self.pager.cache.put(key, data, len(data) or 1)
        return data

    def load_extent(self, ino: int, chunk_no: int, ptr: ChunkPtr) -> Data:
        """Read, check, open and decompress one extent chunk — no shared state touched."""
        where = f"chunk {chunk_no} of inode {ino}"
        stored = self.pager.read_extent(ptr.page, ptr.stored, ptr.checksum, kind=where)
        return self._open_stored(ino, chunk_no, ptr, stored)

    def _open_stored(self, ino: int, chunk_no: int, ptr: ChunkPtr,
                     stored: bytes | memoryview) -> Data:
        """Checked stored bytes → logical bytes. A raw, unsealed chunk is returned as the
        (read-only) view it came in: no copy."""
        if ptr.codec == CODEC_NONE and not ptr.sealed and len(stored) == ptr.logical:
            return stored
        where = f"chunk {chunk_no} of inode {ino}"
        plain = self.pager.open_extent(bytes(stored), chunk_key(ino, chunk_no), ptr.birth,
                                       page=ptr.page, kind=where, sealed=ptr.sealed)
        try:
            return decompress(ptr.codec, plain, ptr.logical)
        except CorruptArchive as exc:
            raise CorruptArchive(exc.reason, page=ptr.page, kind=where) from None

    def chunk_bytes(self, ino: int, chunk_no: int) -> Data:
        """Current logical bytes of a chunk: dirty buffer, else stored, else b'' (hole).
        The last chunk read is remembered, so consecutive small reads skip the lookup."""
        buf = self._dirty.get((ino, chunk_no))
        if buf is not None:
            return buf
        memo = self._memo
        if memo is not None and memo[0] == ino and memo[1] == chunk_no:
            return memo[2]
        ptr = self.pointer(ino, chunk_no)
        data = b"" if ptr is None else self.decode(ino, chunk_no, ptr)
        self._memo = (ino, chunk_no, data)
        return data

    def forget(self, ino: int | None = None) -> None:
        """Drop the remembered chunk (of ``ino``, or any): its content is changing."""
        if self._memo is not None and (ino is None or self._memo[0] == ino):
            self._memo = None

    def read(self, ino: int, file_size: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short only at end of file)."""
        end = min(offset + size, file_size)
        if offset >= end:
            return b""
        cs = self.chunk_size
        first, last = offset // cs, (end - 1) // cs
        if first == last:
            return self._slice(self.chunk_bytes(ino, first), offset - first * cs,
                               end - offset)
        chunks = self._chunks_for_range(ino, first, last)
        parts: list[Data] = []
        for chunk_no in range(first, last + 1):
            lo = max(offset, chunk_no * cs) - chunk_no * cs
            hi = min(end, (chunk_no + 1) * cs) - chunk_no * cs
            data = chunks[chunk_no]
            if lo == 0 and hi - lo == len(data):
                parts.append(data)  # joined below without an intermediate copy
            else:
                parts.append(self._slice(data, lo, hi - lo))
        return b"".join(parts)

    def _chunks_for_range(self, ino: int, first: int, last: int) -> dict[int, Data]:
        """Logical bytes of chunks first..last: one range scan for their pointers, and the
        extents that are not cached read with one pread per physically contiguous run (a
        sequentially written file is laid out in order), each still checked on its own."""
        ptrs = {chunk_no_of(k): decode_chunk_ptr(v)
                for k, v in self.tree.items(chunk_key(ino, first), chunk_key(ino, last + 1))}
        out: dict[int, Data] = {}
        missing: list[tuple[int, ChunkPtr]] = []
        for chunk_no in range(first, last + 1):
            buf = self._dirty.get((ino, chunk_no))
            ptr = ptrs.get(chunk_no)
            if buf is not None:
                out[chunk_no] = buf
            elif ptr is None:
                out[chunk_no] = b""
            elif ptr.inline_data is not None:
                out[chunk_no] = decompress(ptr.codec, ptr.inline_data, ptr.logical)
            else:
                cached = self.pager.cache.get(("c", ptr.page, ptr.birth))
                if cached is not None:
                    out[chunk_no] = cached
                else:
                    missing.append((chunk_no, ptr))
        for run in _contiguous(missing):
            self._load_run(ino, run, out)
        return out

    def _load_run(self, ino: int, run: list[tuple[int, ChunkPtr]],
                  out: dict[int, Data]) -> None:
        first_ptr = run[0][1]
        last_ptr = run[-1][1]
        length = (last_ptr.page - first_ptr.page) * PAGE_SIZE + last_ptr.stored
        raw = memoryview(self.pager.read_run(first_ptr.page, length))
        for chunk_no, ptr in run:
            off = (ptr.page - first_ptr.page) * PAGE_SIZE
            stored = raw[off:off + ptr.stored]
            if len(stored) != ptr.stored or crc32(stored) != ptr.checksum:
                raise CorruptArchive("checksum mismatch", page=ptr.page,
                                     kind=f"chunk {chunk_no} of inode {ino}")
            data = self._open_stored(ino, chunk_no, ptr, stored)
            # A view into the run's buffer would keep all of it alive behind one cached
            # chunk (the cache would count 64 KiB and hold up to 4 MiB): cache a copy.
            cached = bytes(data) if isinstance(data, memoryview) and len(run) > 1 else data
            self.pager.cache.put(("c", ptr.page, ptr.birth), cached, len(cached) or 1)
            out[chunk_no] = data

    @staticmethod
    def _slice(data: Data, lo: int, length: int) -> bytes:
        if lo == 0 and length == len(data) and isinstance(data, bytes):
            return data  # a whole cached chunk: no copy
        piece = bytes(memoryview(data)[lo:lo + length]) if lo < len(data) else b""
        if len(piece) < length:
            piece += bytes(length - len(piece))
        return piece

    # ---- writing ----------------------------------------------------------------------------

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview,
              codec: int | None = None) -> None:
        """Copy ``data`` into the dirty buffers of the chunks it covers. A chunk written
        whole (sequential writes) is encoded and written at once, straight from the caller's
        buffer, when ``codec`` is given: no copy, no buffer."""
        view = memoryview(data).cast("B")
        cs = self.chunk_size
        pieces: list[tuple[int, int, memoryview]] = []
        pos = 0
        while pos < len(view):
            chunk_no, lo = divmod(offset + pos, cs)
            n = min(cs - lo, len(view) - pos)
            pieces.append((chunk_no, lo, view[pos:pos + n]))
            pos += n
        direct = [(c, p) for c, lo, p in pieces
                  if len(p) == cs and codec is not None and (ino, c) not in self._dirty]
        runs = self._take_runs([p for _, p in direct])  # NoSpace here changes nothing
        for (chunk_no, piece), run in zip(direct, runs, strict=True):
            assert codec is not None
            self._store(ino, chunk_no, piece, codec, run)
        stored = {c for c, _ in direct}
        for chunk_no, lo, piece in pieces:
            if chunk_no not in stored:
                self._write_chunk(ino, chunk_no, lo, piece)

    def _new_buffer(self, content: bytes | bytearray | memoryview) -> bytearray:
        """A dirty buffer holding ``content``. Buffers are recycled after a flush: freeing
        and re-allocating tens of MiB of 64 KiB buffers makes glibc return the memory to the
        kernel and fault it back in, which cost more than the copy itself (~60 vs ~10 µs)."""
        if self._spare:
            buf = self._spare.pop()
            buf[:] = content
            return buf
        return bytearray(content)

    def _recycle(self, buffers: list[bytearray]) -> None:
        room = MAX_SPARE_BUFFERS - len(self._spare)
        self._spare.extend(buffers[:max(room, 0)])

    def _write_chunk(self, ino: int, chunk_no: int, lo: int, piece: memoryview) -> None:
        self.version += 1
        self.forget(ino)
        key = (ino, chunk_no)
        buf = self._dirty.get(key)
        if buf is None:
            if lo == 0 and len(piece) == self.chunk_size:
                buf = self._new_buffer(piece)
                self._dirty[key] = buf
                self.dirty_bytes += len(buf)
                return
            buf = self._new_buffer(self.chunk_bytes(ino, chunk_no))
            self._dirty[key] = buf
            self.dirty_bytes += len(buf)
        before = len(buf)
        if lo > before:
            buf.extend(bytes(lo - before))
        buf[lo:lo + len(piece)] = piece
        self.dirty_bytes += len(buf) - before

    def truncate(self, ino: int, old_size: int, new_size: int) -> None:
        """Drop chunks past ``new_size`` and cut the chunk that holds the new end."""
        cs = self.chunk_size
        if new_size >= old_size:
            return
        keep = -(-new_size // cs)  # chunks [0, keep) survive
        self.drop_chunks(ino, keep)
        tail = new_size % cs
        if tail:
            chunk_no = new_size // cs
            data = self.chunk_bytes(ino, chunk_no)
            if len(data) > tail:
                self._replace_dirty(ino, chunk_no, bytearray(data[:tail]))

    def _replace_dirty(self, ino: int, chunk_no: int, buf: bytearray) -> None:
        self.version += 1
        self.forget(ino)
        old = self._dirty.get((ino, chunk_no))
        self.dirty_bytes += len(buf) - (len(old) if old is not None else 0)
        self._dirty[(ino, chunk_no)] = buf

    def drop_chunks(self, ino: int, first: int = 0) -> None:
        """Forget and free every chunk numbered >= first (truncate, delete)."""
        self.version += 1
        self.forget(ino)
        for dirty_key in [k for k in self._dirty if k[0] == ino and k[1] >= first]:
            self.dirty_bytes -= len(self._dirty.pop(dirty_key))
        start, end = chunk_range(ino, first)
        doomed = list(self.tree.items(start, end))
        for key, value in doomed:
            self._free_ptr(decode_chunk_ptr(value))
            self.tree.delete(key)

    def _free_ptr(self, ptr: ChunkPtr) -> None:
        if ptr.inline_data is None and self.alloc is not None:
            self.alloc.free(ptr.page, ptr.npages, ptr.birth, self.clock.txid)

    # ---- flushing ---------------------------------------------------------------------------

    def flush(self, codec_for: Callable[[int], int] | None = None,
              size_of: Callable[[int], int] | None = None) -> None:
        """Encode every dirty chunk into the tree (extents written, not yet synced)."""
        work: list[tuple[int, int, bytearray]] = []
        for (ino, chunk_no), buf in sorted(self._dirty.items()):
            limit = size_of(ino) - chunk_no * self.chunk_size if size_of else len(buf)
            if limit > 0:
                work.append((ino, chunk_no, buf[:limit] if len(buf) > limit else buf))
        runs = self._take_runs([buf for _, _, buf in work])  # NoSpace: nothing changed
        for (ino, chunk_no, buf), run in zip(work, runs, strict=True):
            codec = codec_for(ino) if codec_for else self.default_codec
            self._store(ino, chunk_no, buf, codec, run)
            del self._dirty[(ino, chunk_no)]  # only once stored: a failure loses nothing
        done = list(self._dirty.values())  # what is left lies past the end of its file
        self._dirty.clear()
        self.dirty_bytes = 0
        self._recycle(done + [buf for _, _, buf in work])

    def _take_runs(self, buffers: list[bytearray] | list[memoryview]) -> list[tuple[int, int]]:
        """Pages for every buffer at its raw size (compression only shrinks), taken before
        anything changes, so a full disk raises NoSpace with the archive still consistent."""
        if not buffers:
            return []
        assert self.alloc is not None
        sizes = [self.pager.blob_pages(len(b)) if len(b) > INLINE_STORED_MAX else 0
                 for b in buffers]
        wanted = [n for n in sizes if n]
        starts = iter(self.alloc.take_runs(wanted))
        return [(next(starts), n) if n else (0, 0) for n in sizes]

    def _store(self, ino: int, chunk_no: int, buf: bytearray | memoryview, codec: int,
               run: tuple[int, int]) -> None:
        """Encode one chunk into the pages of ``run`` (taken beforehand; what it does not
        need is given back)."""
        self.version += 1
        self.forget(ino)
        key = chunk_key(ino, chunk_no)
        old = self.tree.get(key)
        if old is not None:
            self._free_ptr(decode_chunk_ptr(old))
        if self._all_zero(buf):
            self._give_back(run, 0)
            if old is not None:
                self.tree.delete(key)
            return
        overhead = self.pager.sealer.overhead if self.pager.sealer else 0
        used, stored = compress(buf, codec, self.codec_level,
                                inline=len(buf) <= INLINE_STORED_MAX, overhead=overhead)
        if len(stored) <= INLINE_STORED_MAX:
            self._give_back(run, 0)
            ptr = ChunkPtr(used, len(buf), len(stored), inline_data=bytes(stored))
        else:
            ptr = self._write_extent(key, stored, used, len(buf), run)
        self.tree.put(key, encode_chunk_ptr(ptr))

    def _give_back(self, run: tuple[int, int], keep: int) -> None:
        """Return the pages of a taken run past the first ``keep`` (never seen by anyone)."""
        start, n = run
        if n > keep and self.alloc is not None:
            self.alloc.free_now(start + keep, n - keep)

    def _all_zero(self, buf: bytearray | memoryview) -> bool:
        """A chunk of zeros is stored as a hole. Cheap for real data: a non-zero first or
        last byte answers at once; otherwise one memcmp against a zero chunk."""
        if not buf:
            return True
        if buf[0] or buf[-1]:
            return False
        zero = self._zero if len(buf) == self.chunk_size else bytes(len(buf))
        return memoryview(buf) == zero

    def _write_extent(self, key: bytes, stored: bytes | bytearray | memoryview, codec: int,
                      logical: int, run: tuple[int, int]) -> ChunkPtr:
        birth = self.clock.txid
        sealed = self.pager.seal_extent(stored, key, birth)
        npages = self.pager.blob_pages(len(stored))
        assert npages <= run[1], "a stored chunk never needs more pages than its raw size"
        self._give_back(run, npages)
        page = PageNo(run[0])
        self.pager.write_extent(page, sealed)
        return ChunkPtr(codec, logical, len(sealed), crc32(sealed), page, TxnId(birth),
                        sealed=self.pager.sealer is not None)

    def is_dirty(self, ino: int | None = None) -> bool:
        if ino is None:
            return bool(self._dirty)
        return any(k[0] == ino for k in self._dirty)

    def chunk_numbers(self, ino: int) -> list[int]:
        start, end = chunk_range(ino)
        stored = {chunk_no_of(k) for k, _ in self.tree.items(start, end)}
        return sorted(stored | {c for (i, c) in self._dirty if i == ino})
