"""Catalog records: how inodes, directory entries, xattrs and chunk maps become B-tree keys.

Keys start with the owning inode number (8 bytes big-endian) and a record type, so all of one
inode's records sit together in the tree (as in btrfs) and a range scan finds them:

=========  ==============================  ==============================================
type       key suffix                      value
=========  ==============================  ==============================================
0x01 INODE (none)                          :class:`Inode` (fixed 96 bytes)
0x02 DIRENT name                           child ino u64, index u64
0x03 INDEX index u64 (big-endian)          child ino u64, then name — readdir order; the
                                           index is the stable readdir cookie
0x04 XATTR name                            0x00 + value, or 0x01 + BlobRef (large values)
0x05 CHUNK chunk number u64 (big-endian)   chunk pointer (format.ChunkPtr)
=========  ==============================  ==============================================

Inode 0 is reserved for archive-wide records: ``0x10 ORPHAN ino`` lists inodes whose last
name was removed while open, to be reclaimed on the next writable open.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass, fields

from .errors import CorruptArchive
from .format import BLOB_REF, BlobRef, decode_blob_ref, encode_blob_ref

ROOT_INO = 1
REC_INODE = 0x01
REC_DIRENT = 0x02
REC_INDEX = 0x03
REC_XATTR = 0x04
REC_CHUNK = 0x05
REC_ORPHAN = 0x10

NAME_MAX = 255
XATTR_NAME_MAX = 255
XATTR_VALUE_MAX = 64 * 1024
INLINE_VALUE_MAX = 700  # values above this go to a blob extent (btree.MAX_ENTRY budget)
FIRST_INDEX = 3  # readdir cookies 1 and 2 are left for "." and ".."

_INO = struct.Struct(">Q")


def ino_prefix(ino: int) -> bytes:
    return _INO.pack(ino)


def inode_key(ino: int) -> bytes:
    return _INO.pack(ino) + bytes((REC_INODE,))


def dirent_key(parent: int, name: bytes) -> bytes:
    return _INO.pack(parent) + bytes((REC_DIRENT,)) + name


def dirent_range(parent: int) -> tuple[bytes, bytes]:
    prefix = _INO.pack(parent)
    return prefix + bytes((REC_DIRENT,)), prefix + bytes((REC_DIRENT + 1,))


def index_key(parent: int, index: int) -> bytes:
    return _INO.pack(parent) + bytes((REC_INDEX,)) + _INO.pack(index)


def index_range(parent: int, after: int = 0) -> tuple[bytes, bytes]:
    prefix = _INO.pack(parent)
    return index_key(parent, after + 1), prefix + bytes((REC_INDEX + 1,))


def xattr_key(ino: int, name: bytes) -> bytes:
    return _INO.pack(ino) + bytes((REC_XATTR,)) + name


def xattr_range(ino: int) -> tuple[bytes, bytes]:
    prefix = _INO.pack(ino)
    return prefix + bytes((REC_XATTR,)), prefix + bytes((REC_XATTR + 1,))


def chunk_key(ino: int, chunk_no: int) -> bytes:
    return _INO.pack(ino) + bytes((REC_CHUNK,)) + _INO.pack(chunk_no)


def chunk_range(ino: int, first: int = 0) -> tuple[bytes, bytes]:
    prefix = _INO.pack(ino)
    return chunk_key(ino, first), prefix + bytes((REC_CHUNK + 1,))


def orphan_key(ino: int) -> bytes:
    return _INO.pack(0) + bytes((REC_ORPHAN,)) + _INO.pack(ino)


def orphan_range() -> tuple[bytes, bytes]:
    prefix = _INO.pack(0)
    return prefix + bytes((REC_ORPHAN,)), prefix + bytes((REC_ORPHAN + 1,))


def all_records(ino: int) -> tuple[bytes, bytes]:
    return _INO.pack(ino), _INO.pack(ino + 1)


def split_key(key: bytes) -> tuple[int, int, bytes]:
    """(ino, record type, suffix) of any catalog key."""
    if len(key) < 9:
        raise CorruptArchive(f"catalog key of {len(key)} bytes", kind="catalog record")
    return _INO.unpack_from(key)[0], key[8], key[9:]


def chunk_no_of(key: bytes) -> int:
    value: int = _INO.unpack_from(key, 9)[0]
    return value


# ---- inode ---------------------------------------------------------------------------------

# mode, uid, gid, nlink, size, atime, mtime, ctime, btime, rdev, parent, next_index,
# generation, flags, codec, reserved
INODE = struct.Struct("<IIIIQqqqqQQQIIB7x")
assert INODE.size == 96


@dataclass(frozen=True, slots=True)
class Inode:
    """Everything stat() reports, plus the directory's parent and next readdir index."""

    ino: int
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    btime_ns: int = 0
    rdev: int = 0
    parent: int = 0  # directories only: the one directory that names it
    next_index: int = FIRST_INDEX  # directories only
    generation: int = 0
    flags: int = 0
    codec: int = 0xFF  # per-file codec override; 0xFF = archive default

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def with_(self, **changes: int) -> Inode:
        """A copy with some fields changed (cheaper than dataclasses.replace, which
        re-validates: this runs on every write)."""
        values = {name: getattr(self, name) for name in _INODE_FIELDS}
        values.update(changes)
        return Inode(**values)


_INODE_FIELDS = tuple(f.name for f in fields(Inode))


def encode_inode(inode: Inode) -> bytes:
    return INODE.pack(
        inode.mode, inode.uid, inode.gid, inode.nlink, inode.size, inode.atime_ns,
        inode.mtime_ns, inode.ctime_ns, inode.btime_ns, inode.rdev, inode.parent,
        inode.next_index, inode.generation, inode.flags, inode.codec,
    )


def decode_inode(ino: int, value: bytes) -> Inode:
    if len(value) != INODE.size:
        raise CorruptArchive(f"inode {ino} record has {len(value)} bytes", kind="inode")
    fields = INODE.unpack(value)
    return Inode(ino, *fields)


# ---- directory entries ---------------------------------------------------------------------

_DIRENT = struct.Struct("<QQ")


def encode_dirent(child: int, index: int) -> bytes:
    return _DIRENT.pack(child, index)


def decode_dirent(value: bytes) -> tuple[int, int]:
    if len(value) != _DIRENT.size:
        raise CorruptArchive("malformed directory entry", kind="directory entry")
    child, index = _DIRENT.unpack(value)
    return child, index


def encode_index(child: int, name: bytes) -> bytes:
    return _INO.pack(child) + name


def decode_index(value: bytes) -> tuple[int, bytes]:
    if len(value) < 9:
        raise CorruptArchive("malformed directory index entry", kind="directory entry")
    return _INO.unpack_from(value)[0], bytes(value[8:])


def index_of_key(key: bytes) -> int:
    value: int = _INO.unpack_from(key, 9)[0]
    return value


# ---- xattr values --------------------------------------------------------------------------

XATTR_INLINE = 0
XATTR_BLOB = 1


def encode_xattr_inline(value: bytes) -> bytes:
    return bytes((XATTR_INLINE,)) + value


def encode_xattr_blob(ref: BlobRef) -> bytes:
    return bytes((XATTR_BLOB,)) + encode_blob_ref(ref)


def decode_xattr(value: bytes) -> bytes | BlobRef:
    if value[:1] == bytes((XATTR_INLINE,)):
        return bytes(value[1:])
    if value[:1] == bytes((XATTR_BLOB,)) and len(value) == 1 + BLOB_REF.size:
        return decode_blob_ref(value, 1)
    raise CorruptArchive("malformed xattr value", kind="xattr")
