"""Golden encode/decode tables for the on-disk format (STYLE.md item 9, h11's SIMPLE_CASES).

One list of (object, bytes) pairs drives both directions: encoding the object must give
exactly these bytes, and decoding the bytes must give back the object. The expected bytes are
written out independently of format.py's struct objects — as hex, or assembled field by field
at the offsets FORMAT.md documents — so a change to the format (a reordered field, a changed
width or endianness) fails here and has to be a deliberate, versioned decision.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartfs.core import catalog as C
from cartfs.core.alloc import Allocator
from cartfs.core.errors import CorruptArchive, NotAnArchive, UnsupportedFormat
from cartfs.core.format import (
    FEATURE_ENCRYPTED,
    MAGIC,
    PAGE_SIZE,
    BlobRef,
    ChunkPtr,
    KeyHeader,
    PageHeader,
    PageNo,
    Superblock,
    TreeRef,
    TxnId,
    decode_blob_ref,
    decode_chunk_ptr,
    decode_page_header,
    decode_superblock,
    decode_tree_ref,
    encode_blob_ref,
    encode_chunk_ptr,
    encode_page,
    encode_superblock,
    encode_tree_ref,
)


def h(text: str) -> bytes:
    """Hex with spaces for readability."""
    return bytes.fromhex(text.replace(" ", ""))


# ---- references and chunk pointers ----------------------------------------------------------

TREE_REFS = [
    (TreeRef(), h("0000000000000000 0000000000000000")),
    (TreeRef(PageNo(5), TxnId(7)), h("0500000000000000 0700000000000000")),
    (TreeRef(PageNo(2**40 + 1), TxnId(2**63)), h("0100000000010000 0000000000000080")),
]

BLOB_REFS = [
    (BlobRef(), h("00" * 24)),
    (BlobRef(PageNo(9), TxnId(3), 5000, 0xDEADBEEF),
     h("0900000000000000 0300000000000000 88130000 efbeadde")),
]

CHUNK_PTRS = [
    # extent: form 0, codec, flags u16, logical u32, stored u32, crc u32, page u64, birth u64
    (ChunkPtr(1, 65536, 12345, 0x01020304, PageNo(77), TxnId(12), sealed=True),
     h("00 01 0100 00000100 39300000 04030201 4d00000000000000 0c00000000000000")),
    (ChunkPtr(0, 4096, 4096, 0xFFFFFFFF, PageNo(2), TxnId(1)),
     h("00 00 0000 00100000 00100000 ffffffff 0200000000000000 0100000000000000")),
    # inline: form 1, codec, flags u16, logical u32, then the stored bytes
    (ChunkPtr(0, 3, 3, inline_data=b"abc"), h("01 00 0000 03000000 616263")),
    (ChunkPtr(2, 100, 0, inline_data=b"", sealed=True), h("01 02 0100 64000000")),
]


@pytest.mark.parametrize(("ref", "data"), TREE_REFS)
def test_tree_ref_golden(ref: TreeRef, data: bytes) -> None:
    assert encode_tree_ref(ref) == data
    assert decode_tree_ref(data) == ref


@pytest.mark.parametrize(("ref", "data"), BLOB_REFS)
def test_blob_ref_golden(ref: BlobRef, data: bytes) -> None:
    assert encode_blob_ref(ref) == data
    assert decode_blob_ref(data) == ref
    assert ref.npages == max(1, -(-ref.length // PAGE_SIZE))


@pytest.mark.parametrize(("ptr", "data"), CHUNK_PTRS)
def test_chunk_ptr_golden(ptr: ChunkPtr, data: bytes) -> None:
    assert encode_chunk_ptr(ptr) == data
    assert decode_chunk_ptr(data) == ptr


@pytest.mark.parametrize("data", [b"", b"\x00" * 31, b"\x00" * 33, b"\x01\x00\x00", b"\x02" * 32])
def test_malformed_chunk_ptr(data: bytes) -> None:
    with pytest.raises(CorruptArchive):
        decode_chunk_ptr(data)


# ---- catalog keys and records ---------------------------------------------------------------

KEYS = [
    (C.inode_key(1), h("0000000000000001 01")),
    (C.dirent_key(1, b"a"), h("0000000000000001 02 61")),
    (C.index_key(2, 3), h("0000000000000002 03 0000000000000003")),
    (C.xattr_key(258, b"user.x"), h("0000000000000102 04") + b"user.x"),
    (C.chunk_key(5, 2), h("0000000000000005 05 0000000000000002")),
    (C.orphan_key(9), h("0000000000000000 10 0000000000000009")),
]


@pytest.mark.parametrize(("key", "data"), KEYS)
def test_catalog_keys_golden(key: bytes, data: bytes) -> None:
    assert key == data
    ino, rec, _suffix = C.split_key(data)
    assert ino == int.from_bytes(data[:8], "big") and rec == data[8]


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_keys_sort_like_their_numbers(ino: int, a: int, b: int) -> None:
    """Big-endian keys: byte order is numeric order, so range scans work."""
    assert (C.chunk_key(ino, a) < C.chunk_key(ino, b)) == (a < b)
    assert (C.index_key(ino, a) < C.index_key(ino, b)) == (a < b)
    assert (C.inode_key(a) < C.inode_key(b)) == (a < b)
    start, end = C.chunk_range(ino)
    assert start <= C.chunk_key(ino, a) < end
    lo, hi = C.all_records(ino) if ino < 2**64 - 1 else (b"", b"\xff" * 20)
    assert lo <= C.xattr_key(ino, b"n") < hi


INODE = C.Inode(ino=7, mode=0o100644, uid=1000, gid=100, nlink=2, size=65537, atime_ns=-1,
                mtime_ns=2, ctime_ns=3, btime_ns=4, rdev=0x0801, parent=0, next_index=3,
                generation=9, flags=0, codec=0xFF)
INODE_BYTES = (struct.pack("<IIII", 0o100644, 1000, 100, 2) + struct.pack("<Q", 65537)
               + struct.pack("<qqqq", -1, 2, 3, 4) + struct.pack("<QQQ", 0x0801, 0, 3)
               + struct.pack("<II", 9, 0) + b"\xff" + bytes(7))


def test_inode_golden() -> None:
    assert len(INODE_BYTES) == 96
    assert C.encode_inode(INODE) == INODE_BYTES
    assert C.decode_inode(7, INODE_BYTES) == INODE
    with pytest.raises(CorruptArchive):
        C.decode_inode(7, INODE_BYTES[:-1])


def test_directory_records_golden() -> None:
    assert C.encode_dirent(5, 3) == h("0500000000000000 0300000000000000")
    assert C.decode_dirent(h("0500000000000000 0300000000000000")) == (5, 3)
    assert C.encode_index(5, b"name") == h("0000000000000005") + b"name"
    assert C.decode_index(h("0000000000000005") + b"name") == (5, b"name")
    with pytest.raises(CorruptArchive):
        C.decode_dirent(b"\x00" * 15)
    with pytest.raises(CorruptArchive):
        C.decode_index(b"\x00" * 8)


def test_xattr_values_golden() -> None:
    assert C.encode_xattr_inline(b"v") == b"\x00v"
    assert C.decode_xattr(b"\x00v") == b"v"
    ref = BlobRef(PageNo(9), TxnId(3), 5000, 0xDEADBEEF)
    data = b"\x01" + h("0900000000000000 0300000000000000 88130000 efbeadde")
    assert C.encode_xattr_blob(ref) == data
    assert C.decode_xattr(data) == ref
    for bad in (b"", b"\x01short", b"\x07x"):
        with pytest.raises(CorruptArchive):
            C.decode_xattr(bad)


# ---- node pages -----------------------------------------------------------------------------


def test_node_page_golden() -> None:
    """kind u8, flags u8, count u16, crc u32, page u64, birth u64, level u8, tree u8, 6 zero
    bytes, payload, zero padding; the CRC covers every byte except itself."""
    payload = struct.pack("<HH", 1, 2) + b"k" + b"vv"
    header = PageHeader(kind=1, flags=0, count=1, checksum=0, page=PageNo(10), birth=TxnId(4),
                        level=0, tree=1)
    expected = bytearray(h("01 00 0100 00000000 0a00000000000000 0400000000000000 00 01")
                         + bytes(6) + payload)
    expected += bytes(PAGE_SIZE - len(expected))
    crc = zlib.crc32(bytes(expected[8:]), zlib.crc32(bytes(expected[:4])))
    struct.pack_into("<I", expected, 4, crc)
    page = encode_page(header, payload)
    assert page == bytes(expected)
    decoded = decode_page_header(page, where=10)
    assert decoded == PageHeader(1, 0, 1, crc, PageNo(10), TxnId(4), 0, 1)


@pytest.mark.parametrize("offset", [0, 5, 31, 32, 100, PAGE_SIZE - 1])
def test_node_page_damage_names_the_page(offset: int) -> None:
    page = bytearray(encode_page(PageHeader(2, 0, 1, 0, PageNo(10), TxnId(4), 1, 1), b"x"))
    page[offset] ^= 0x01
    with pytest.raises(CorruptArchive) as info:
        decode_page_header(bytes(page), where=10)
    assert info.value.page == 10


def test_node_page_unknown_kind_and_short_read() -> None:
    page = bytearray(encode_page(PageHeader(1, 0, 1, 0, PageNo(3), TxnId(1), 0, 1), b""))
    page[0] = 9
    struct.pack_into("<I", page, 4, zlib.crc32(bytes(page[8:]), zlib.crc32(bytes(page[:4]))))
    with pytest.raises(CorruptArchive, match="unknown page kind"):
        decode_page_header(bytes(page), where=3)
    with pytest.raises(CorruptArchive, match="short read"):
        decode_page_header(bytes(page[:100]), where=3)


# ---- superblock -----------------------------------------------------------------------------

KEYH = KeyHeader(kdf=2, log2_n=10, r=8, p=1, memory_kib=1024, iterations=1, lanes=1,
                 salt=bytes(range(16)), wrap_nonce=bytes(range(12)),
                 wrapped_key=bytes(range(48)))
SUPER = Superblock(
    txid=TxnId(0x0102030405), uuid=bytes(range(100, 116)), total_pages=258, chunk_size=65536,
    codec=1, codec_level=-3, features=FEATURE_ENCRYPTED, catalog=TreeRef(PageNo(5), TxnId(6)),
    system=TreeRef(PageNo(7), TxnId(8)), allocator=BlobRef(PageNo(9), TxnId(10), 11, 12),
    next_ino=13, created_ns=-14, committed_ns=15, key_header=KEYH,
    signature=BlobRef(PageNo(16), TxnId(17), 18, 19), auth_tag=bytes(range(200, 232)),
)


def superblock_bytes() -> bytes:
    """SUPER laid out by hand at the documented offsets."""
    page = bytearray(PAGE_SIZE)
    page[0:8] = MAGIC
    struct.pack_into("<I", page, 8, 1)  # format version
    struct.pack_into("<I", page, 12, 4096)  # page size
    struct.pack_into("<Q", page, 16, 0x0102030405)  # txid
    struct.pack_into("<Q", page, 24, FEATURE_ENCRYPTED)
    page[32:48] = bytes(range(100, 116))  # uuid
    struct.pack_into("<Q", page, 48, 258)  # total pages
    struct.pack_into("<I", page, 56, 65536)  # chunk size
    struct.pack_into("<Bb", page, 60, 1, -3)  # codec, level (62..63 reserved)
    struct.pack_into("<Qqq", page, 64, 13, -14, 15)  # next ino, created, committed
    struct.pack_into("<QQ", page, 88, 5, 6)  # catalog root
    struct.pack_into("<QQ", page, 104, 7, 8)  # system tree root
    struct.pack_into("<QQII", page, 120, 9, 10, 11, 12)  # allocator blob
    struct.pack_into("<QQII", page, 144, 16, 17, 18, 19)  # signature blob
    struct.pack_into("<BBBBIII", page, 168, 2, 10, 8, 1, 1024, 1, 1)  # key header
    page[184:200] = bytes(range(16))  # salt
    page[200:212] = bytes(range(12))  # wrap nonce
    page[212:260] = bytes(range(48))  # wrapped key (260..295 reserved)
    page[296:328] = bytes(range(200, 232))  # auth tag
    struct.pack_into("<I", page, 328, zlib.crc32(bytes(page[:328])))
    return bytes(page)


def test_superblock_golden() -> None:
    data = superblock_bytes()
    assert encode_superblock(SUPER) == data
    assert decode_superblock(data, slot=1) == SUPER
    assert decode_superblock(data, slot=1).encrypted


def _edit(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    page = bytearray(data)
    struct.pack_into(fmt, page, offset, value)
    struct.pack_into("<I", page, 328, zlib.crc32(bytes(page[:328])))
    return bytes(page)


SUPERBLOCK_ERRORS = [
    ("empty", b"", NotAnArchive),
    ("bad magic", b"\x89CARD" + superblock_bytes()[5:], NotAnArchive),
    ("zip", b"PK\x03\x04" + bytes(PAGE_SIZE), NotAnArchive),
    ("bad crc", superblock_bytes()[:100] + b"\xff" + superblock_bytes()[101:], CorruptArchive),
    ("version 2", _edit(superblock_bytes(), 8, "<I", 2), UnsupportedFormat),
    ("page size", _edit(superblock_bytes(), 12, "<I", 8192), UnsupportedFormat),
    ("unknown feature", _edit(superblock_bytes(), 24, "<Q", 1 << 40), UnsupportedFormat),
    ("chunk not a power of two", _edit(superblock_bytes(), 56, "<I", 65535), CorruptArchive),
    ("chunk too small", _edit(superblock_bytes(), 56, "<I", 2048), CorruptArchive),
    ("unknown codec", _edit(superblock_bytes(), 60, "<B", 7), CorruptArchive),
    ("one page", _edit(superblock_bytes(), 48, "<Q", 1), CorruptArchive),
]


@pytest.mark.parametrize(("name", "data", "error"), SUPERBLOCK_ERRORS,
                         ids=[c[0] for c in SUPERBLOCK_ERRORS])
def test_superblock_errors(name: str, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        decode_superblock(data, slot=0)
    assert type(info.value) is error
    if error is CorruptArchive:
        assert info.value.page == 0  # type: ignore[attr-defined]


# ---- allocator state --------------------------------------------------------------------------

ALLOCATOR_STATES = [
    # total 10, horizon 0, free runs [(2, 8)], no groups, no pending, no dead
    (h("0a 00 01 02 08 00 00 00"), {"total": 10, "free": [(2, 8)], "groups": []}),
    # total 100: a group of 64 at page 2 with pages 2 and 3 used, free run 66..99
    (h("64 00 01 42 22 01 02 40 0300000000000000 00 00"),
     {"total": 100, "free": [(66, 34)], "groups": [(2, 64, 0b11)]}),
    # varints: total 300 = ac 02
    (h("ac02 00 01 02 aa02 00 00 00"), {"total": 300, "free": [(2, 298)], "groups": []}),
]


@pytest.mark.parametrize(("data", "expect"), ALLOCATOR_STATES)
def test_allocator_state_golden(data: bytes, expect: dict[str, object]) -> None:
    alloc = Allocator.decode(data)
    assert alloc.total_pages == expect["total"]
    assert list(alloc._free.items()) == expect["free"]
    assert [(g.start, g.size, g.used) for g in alloc._groups.values()] == expect["groups"]
    assert alloc.encode() == data


def test_allocator_pending_runs_decode_as_free() -> None:
    """Pending runs are free in the state being committed: decoding frees them."""
    data = h("64 00 01 46 1e 00 01 42 04 00")  # free 70..99, pending 66..69
    alloc = Allocator.decode(data)
    assert list(alloc._free.items()) == [(66, 34)]
    assert alloc.encode() == h("64 00 01 42 22 00 00 00")


@pytest.mark.parametrize("data", [b"", h("0a"), h("0a 00 01 02"), h("0a 00 01 02 08 00 00 00 01"),
                                  h("ff" * 12), h("0a 00 01 02 08 01 02 80"),
                                  h("0a 00 01 02 09 00 00 00"), h("0a 00 01 01 08 00 00 00")])
def test_allocator_state_damage(data: bytes) -> None:
    with pytest.raises(CorruptArchive):
        Allocator.decode(data)
