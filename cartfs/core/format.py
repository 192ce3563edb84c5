"""On-disk format of a Cartridge archive, version 1 — the byte-level contract.

FORMAT.md explains every field; this module is the code that encodes and decodes them, and the
two must agree (tests/core/test_format.py checks golden byte strings both ways).

Layout of a ``.cart`` file, in 4096-byte pages::

    page 0, page 1   two superblocks; commit N writes slot N % 2, opening picks the newest
                     valid one, so a torn superblock write falls back to the previous commit
    page 2..         B-tree node pages (with a page header) and extents (runs of pages
                     without headers: file chunks, large values, the allocator state), in any
                     order; which pages are used is recorded by the allocator state

All integers are little-endian, except B-tree keys, which are big-endian so that byte order
sorts them. Every node page carries a CRC-32 over the whole page; every extent is covered by a
CRC-32 stored in the pointer that names it, together with the extent's birth transaction id, so
a stale (lost) write or a misdirected one is caught on read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import NewType

from .errors import CorruptArchive, NotAnArchive, UnsupportedFormat

PageNo = NewType("PageNo", int)
TxnId = NewType("TxnId", int)
InodeNo = NewType("InodeNo", int)

PAGE_SIZE = 4096
MAGIC = b"\x89CART\r\n\x1a"  # PNG-style: catches text-mode mangling and never decodes as text
FORMAT_VERSION = 1
SUPERBLOCK_PAGES = (PageNo(0), PageNo(1))
FIRST_DATA_PAGE = PageNo(2)

# Feature flags (superblock `features`).
FEATURE_ENCRYPTED = 1 << 0
FEATURE_FROZEN = 1 << 1
FEATURE_SIGNED = 1 << 2
KNOWN_FEATURES = FEATURE_ENCRYPTED | FEATURE_FROZEN | FEATURE_SIGNED

# Chunk codecs.
CODEC_NONE = 0
CODEC_LZ4 = 1
CODEC_ZSTD = 2
CODEC_NAMES = {CODEC_NONE: "none", CODEC_LZ4: "lz4", CODEC_ZSTD: "zstd"}
CODEC_BY_NAME = {name: codec for codec, name in CODEC_NAMES.items()}
CODEC_INHERIT = 0xFF  # per-file override meaning "use the archive default"

DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 1024 * 1024

# AES-256-GCM sealing overhead: 12-byte nonce before, 16-byte tag after the ciphertext.
SEAL_NONCE = 12
SEAL_TAG = 16
SEAL_OVERHEAD = SEAL_NONCE + SEAL_TAG


def crc32(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """CRC-32 (zlib polynomial): 4 GB/s here, and enough to catch torn or flipped pages."""
    return zlib.crc32(data, start) & 0xFFFFFFFF


def pages_for(nbytes: int) -> int:
    """Number of whole pages an extent of ``nbytes`` stored bytes occupies."""
    return max(1, -(-nbytes // PAGE_SIZE))


# --------------------------------------------------------------------------------------------
# Superblock
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeRef:
    """Where a B-tree's root node lives: its page and the txid that wrote it (0, 0 = empty)."""

    page: PageNo = PageNo(0)
    birth: TxnId = TxnId(0)

    @property
    def empty(self) -> bool:
        return self.page == 0


@dataclass(frozen=True)
class BlobRef:
    """An extent holding one opaque byte string: first page, birth, stored length, CRC-32."""

    page: PageNo = PageNo(0)
    birth: TxnId = TxnId(0)
    length: int = 0
    checksum: int = 0

    @property
    def empty(self) -> bool:
        return self.page == 0

    @property
    def npages(self) -> int:
        return pages_for(self.length)


TREE_REF = struct.Struct("<QQ")
BLOB_REF = struct.Struct("<QQII")
assert TREE_REF.size == 16 and BLOB_REF.size == 24


def encode_tree_ref(ref: TreeRef) -> bytes:
    return TREE_REF.pack(ref.page, ref.birth)


def decode_tree_ref(data: bytes | memoryview, offset: int = 0) -> TreeRef:
    page, birth = TREE_REF.unpack_from(data, offset)
    return TreeRef(PageNo(page), TxnId(birth))


def encode_blob_ref(ref: BlobRef) -> bytes:
    return BLOB_REF.pack(ref.page, ref.birth, ref.length, ref.checksum)


def decode_blob_ref(data: bytes | memoryview, offset: int = 0) -> BlobRef:
    page, birth, length, checksum = BLOB_REF.unpack_from(data, offset)
    return BlobRef(PageNo(page), TxnId(birth), length, checksum)


@dataclass(frozen=True)
class KeyHeader:
    """Encryption parameters: how to derive the key-encryption key and the wrapped data key.

    kdf 0 = not encrypted, 1 = scrypt (n = 2**log2_n, r, p), 2 = Argon2id (memory_kib,
    iterations, lanes). The 32-byte data key is sealed with AES-256-GCM under the derived key
    (wrap_nonce, wrapped_key = ciphertext+tag), so a new passphrase rewrites only this header.
    """

    kdf: int = 0
    log2_n: int = 0
    r: int = 0
    p: int = 0
    memory_kib: int = 0
    iterations: int = 0
    lanes: int = 0
    salt: bytes = bytes(16)
    wrap_nonce: bytes = bytes(12)
    wrapped_key: bytes = bytes(48)


KEY_HEADER = struct.Struct("<BBBBIII16s12s48s")
KEY_HEADER_SIZE = 128  # room reserved in the superblock; the rest is zero
assert KEY_HEADER.size <= KEY_HEADER_SIZE


@dataclass(frozen=True)
class Superblock:
    """The root of everything one commit made durable. See FORMAT.md §2."""

    txid: TxnId
    uuid: bytes
    total_pages: int
    chunk_size: int = DEFAULT_CHUNK_SIZE
    codec: int = CODEC_LZ4
    codec_level: int = 0
    features: int = 0
    catalog: TreeRef = TreeRef()
    system: TreeRef = TreeRef()
    allocator: BlobRef = BlobRef()
    next_ino: int = 2
    created_ns: int = 0
    committed_ns: int = 0
    key_header: KeyHeader = field(default_factory=KeyHeader)
    signature: BlobRef = BlobRef()
    auth_tag: bytes = bytes(32)  # HMAC-SHA256 of the superblock under the data key (encrypted)
    format_version: int = FORMAT_VERSION
    page_size: int = PAGE_SIZE

    def with_(self, **changes: object) -> Superblock:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def encrypted(self) -> bool:
        return bool(self.features & FEATURE_ENCRYPTED)

    @property
    def frozen(self) -> bool:
        return bool(self.features & FEATURE_FROZEN)


# Fixed part: magic, version, page size, txid, features, uuid, total pages, chunk size,
# codec, level, reserved(2), next_ino, created_ns, committed_ns.
SUPER_HEAD = struct.Struct("<8sIIQQ16sQIBbHQqq")
SUPER_HEAD_OFFSET = 0
SUPER_CATALOG_OFFSET = SUPER_HEAD.size  # 88
SUPER_SYSTEM_OFFSET = SUPER_CATALOG_OFFSET + TREE_REF.size  # 104
SUPER_ALLOC_OFFSET = SUPER_SYSTEM_OFFSET + TREE_REF.size  # 120
SUPER_SIGNATURE_OFFSET = SUPER_ALLOC_OFFSET + BLOB_REF.size  # 144
SUPER_KEY_OFFSET = SUPER_SIGNATURE_OFFSET + BLOB_REF.size  # 168
SUPER_AUTH_OFFSET = SUPER_KEY_OFFSET + KEY_HEADER_SIZE  # 296
SUPER_BODY_SIZE = SUPER_AUTH_OFFSET + 32  # 328: bytes covered by the checksum
SUPER_CHECKSUM_OFFSET = SUPER_BODY_SIZE  # 328: CRC-32 of bytes 0..327
assert SUPER_HEAD.size == 88


def encode_superblock(sb: Superblock) -> bytes:
    """Encode ``sb`` into a full 4096-byte page (zero padded, CRC at offset 328)."""
    page = bytearray(PAGE_SIZE)
    SUPER_HEAD.pack_into(
        page, 0, MAGIC, sb.format_version, sb.page_size, sb.txid, sb.features, sb.uuid,
        sb.total_pages, sb.chunk_size, sb.codec, sb.codec_level, 0, sb.next_ino,
        sb.created_ns, sb.committed_ns,
    )
    TREE_REF.pack_into(page, SUPER_CATALOG_OFFSET, sb.catalog.page, sb.catalog.birth)
    TREE_REF.pack_into(page, SUPER_SYSTEM_OFFSET, sb.system.page, sb.system.birth)
    page[SUPER_ALLOC_OFFSET:SUPER_SIGNATURE_OFFSET] = encode_blob_ref(sb.allocator)
    page[SUPER_SIGNATURE_OFFSET:SUPER_KEY_OFFSET] = encode_blob_ref(sb.signature)
    kh = sb.key_header
    KEY_HEADER.pack_into(
        page, SUPER_KEY_OFFSET, kh.kdf, kh.log2_n, kh.r, kh.p, kh.memory_kib, kh.iterations,
        kh.lanes, kh.salt, kh.wrap_nonce, kh.wrapped_key,
    )
    page[SUPER_AUTH_OFFSET:SUPER_BODY_SIZE] = sb.auth_tag
    struct.pack_into("<I", page, SUPER_CHECKSUM_OFFSET, crc32(page[:SUPER_BODY_SIZE]))
    return bytes(page)


def superblock_auth_message(page: bytes) -> bytes:
    """The bytes an encrypted archive authenticates: the body with the auth tag zeroed."""
    return page[:SUPER_AUTH_OFFSET] + bytes(32)


def decode_superblock(page: bytes, *, slot: int) -> Superblock:
    """Decode one superblock page; raise NotAnArchive / UnsupportedFormat / CorruptArchive."""
    if len(page) < SUPER_BODY_SIZE + 4:
        raise NotAnArchive("file is too short to be a Cartridge archive")
    if page[:8] != MAGIC:
        raise NotAnArchive("not a Cartridge archive (bad magic)")
    (stored,) = struct.unpack_from("<I", page, SUPER_CHECKSUM_OFFSET)
    if crc32(page[:SUPER_BODY_SIZE]) != stored:
        raise CorruptArchive("superblock checksum mismatch", page=slot, kind="superblock")
    (_, version, page_size, txid, features, uuid, total, chunk, codec, level, _, next_ino,
     created, committed) = SUPER_HEAD.unpack_from(page, 0)
    if version != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"archive format version {version} is not supported (this cartfs reads "
            f"version {FORMAT_VERSION})"
        )
    if page_size != PAGE_SIZE:
        raise UnsupportedFormat(f"page size {page_size} is not supported")
    if features & ~KNOWN_FEATURES:
        raise UnsupportedFormat(f"unknown feature flags {features & ~KNOWN_FEATURES:#x}")
    if not (MIN_CHUNK_SIZE <= chunk <= MAX_CHUNK_SIZE) or chunk & (chunk - 1):
        raise CorruptArchive(f"invalid chunk size {chunk}", page=slot, kind="superblock")
    if codec not in CODEC_NAMES or total < 2:
        raise CorruptArchive("invalid codec or page count", page=slot, kind="superblock")
    kh_fields = KEY_HEADER.unpack_from(page, SUPER_KEY_OFFSET)
    return Superblock(
        txid=TxnId(txid), uuid=uuid, total_pages=total, chunk_size=chunk, codec=codec,
        codec_level=level, features=features,
        catalog=decode_tree_ref(page, SUPER_CATALOG_OFFSET),
        system=decode_tree_ref(page, SUPER_SYSTEM_OFFSET),
        allocator=decode_blob_ref(page, SUPER_ALLOC_OFFSET),
        next_ino=next_ino, created_ns=created, committed_ns=committed,
        key_header=KeyHeader(*kh_fields),
        signature=decode_blob_ref(page, SUPER_SIGNATURE_OFFSET),
        auth_tag=bytes(page[SUPER_AUTH_OFFSET:SUPER_BODY_SIZE]),
        format_version=version, page_size=page_size,
    )


# --------------------------------------------------------------------------------------------
# Node page header
# --------------------------------------------------------------------------------------------

KIND_LEAF = 1
KIND_BRANCH = 2
KIND_NAMES = {KIND_LEAF: "B-tree leaf", KIND_BRANCH: "B-tree branch"}

PAGE_FLAG_SEALED = 1

# kind u8, flags u8, count u16, crc u32, page u64, birth u64, level u8, tree u8, reserved 6
PAGE_HEADER = struct.Struct("<BBHIQQBB6x")
PAGE_HEADER_SIZE = PAGE_HEADER.size
PAGE_PAYLOAD = PAGE_SIZE - PAGE_HEADER_SIZE
assert PAGE_HEADER_SIZE == 32


@dataclass(frozen=True)
class PageHeader:
    """The 32 bytes in front of every B-tree node page."""

    kind: int
    flags: int
    count: int
    checksum: int
    page: PageNo
    birth: TxnId
    level: int
    tree: int

    @property
    def sealed(self) -> bool:
        return bool(self.flags & PAGE_FLAG_SEALED)


def page_checksum(page: bytes | bytearray | memoryview) -> int:
    """CRC-32 over the whole page except the checksum field itself (bytes 4..7)."""
    return crc32(memoryview(page)[8:], crc32(memoryview(page)[:4]))


def encode_page(header: PageHeader, payload: bytes | bytearray) -> bytes:
    """Assemble a node page: header (with computed CRC) + payload, zero padded to 4096."""
    if len(payload) > PAGE_PAYLOAD:
        raise ValueError(f"page payload of {len(payload)} bytes exceeds {PAGE_PAYLOAD}")
    page = bytearray(PAGE_SIZE)
    PAGE_HEADER.pack_into(page, 0, header.kind, header.flags, header.count, 0, header.page,
                          header.birth, header.level, header.tree)
    page[PAGE_HEADER_SIZE:PAGE_HEADER_SIZE + len(payload)] = payload
    struct.pack_into("<I", page, 4, page_checksum(page))
    return bytes(page)


def decode_page_header(page: bytes | memoryview, *, where: int) -> PageHeader:
    """Check a node page's CRC and decode its header; raise CorruptArchive naming the page."""
    if len(page) != PAGE_SIZE:
        raise CorruptArchive(f"short read ({len(page)} bytes)", page=where, kind="node page")
    kind, flags, count, checksum, page_no, birth, level, tree = PAGE_HEADER.unpack_from(page)
    if page_checksum(page) != checksum:
        kind_name = KIND_NAMES.get(kind, "node page")
        raise CorruptArchive("page checksum mismatch", page=where, kind=kind_name)
    if kind not in KIND_NAMES:
        raise CorruptArchive(f"unknown page kind {kind}", page=where, kind="node page")
    return PageHeader(kind, flags, count, checksum, PageNo(page_no), TxnId(birth), level, tree)


# --------------------------------------------------------------------------------------------
# Chunk pointers (values of CHUNK records in the catalog)
# --------------------------------------------------------------------------------------------

CHUNK_EXTENT = 0
CHUNK_INLINE = 1

# form u8, codec u8, flags u16, logical u32, stored u32, crc u32, page u64, birth u64
CHUNK_EXTENT_PTR = struct.Struct("<BBHIIIQQ")
# form u8, codec u8, flags u16, logical u32, then the stored bytes
CHUNK_INLINE_HEAD = struct.Struct("<BBHI")
assert CHUNK_EXTENT_PTR.size == 32 and CHUNK_INLINE_HEAD.size == 8

CHUNK_FLAG_SEALED = 1


@dataclass(frozen=True)
class ChunkPtr:
    """Where one chunk of a file lives and how to decode it.

    ``inline`` chunks keep their stored bytes inside the catalog leaf (small files); extent
    chunks name a run of pages, the stored length, a CRC-32 of the stored bytes and the txid
    that wrote them (part of the sealing associated data when encrypted).
    """

    codec: int
    logical: int
    stored: int
    checksum: int = 0
    page: PageNo = PageNo(0)
    birth: TxnId = TxnId(0)
    inline_data: bytes | None = None
    sealed: bool = False

    @property
    def npages(self) -> int:
        return 0 if self.inline_data is not None else pages_for(self.stored)


def encode_chunk_ptr(ptr: ChunkPtr) -> bytes:
    flags = CHUNK_FLAG_SEALED if ptr.sealed else 0
    if ptr.inline_data is not None:
        return CHUNK_INLINE_HEAD.pack(CHUNK_INLINE, ptr.codec, flags, ptr.logical) + ptr.inline_data
    return CHUNK_EXTENT_PTR.pack(CHUNK_EXTENT, ptr.codec, flags, ptr.logical, ptr.stored,
                                 ptr.checksum, ptr.page, ptr.birth)


def decode_chunk_ptr(value: bytes) -> ChunkPtr:
    form = value[0] if value else -1
    if form == CHUNK_INLINE and len(value) >= CHUNK_INLINE_HEAD.size:
        _, codec, flags, logical = CHUNK_INLINE_HEAD.unpack_from(value)
        data = bytes(value[CHUNK_INLINE_HEAD.size:])
        return ChunkPtr(codec, logical, len(data), inline_data=data,
                        sealed=bool(flags & CHUNK_FLAG_SEALED))
    if form == CHUNK_EXTENT and len(value) == CHUNK_EXTENT_PTR.size:
        _, codec, flags, logical, stored, crc, page, birth = CHUNK_EXTENT_PTR.unpack(value)
        return ChunkPtr(codec, logical, stored, crc, PageNo(page), TxnId(birth),
                        sealed=bool(flags & CHUNK_FLAG_SEALED))
    raise CorruptArchive(f"malformed chunk pointer ({len(value)} bytes)", kind="catalog record")
