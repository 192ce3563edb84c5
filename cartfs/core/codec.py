"""Chunk codecs: LZ4 / Zstd compression, then AES-256-GCM sealing.

Order matters: compress first (ciphertext does not compress), then seal. A chunk is kept
compressed only when that saves space on disk — for an extent, at least one whole page; for an
inline chunk, at least one byte — otherwise it is stored raw, so incompressible data costs no
decompression on read.

Sealing (FORMAT.md §7): ``nonce(12) || AES-256-GCM(data key, nonce, plaintext, ad) || tag(16)``
with a random nonce per seal. The associated data names the block's place — for a node page its
header (page number, birth txid, kind, tree); for an extent the catalog key that points at it
and its birth txid — always prefixed by the archive's UUID, so a block copied to another place,
another archive, or replayed from an older transaction fails authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

import lz4.block
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CorruptArchive, IntegrityError, InvalidArgument
from .format import (
    CODEC_LZ4,
    CODEC_NAMES,
    CODEC_NONE,
    CODEC_ZSTD,
    MAX_CHUNK_SIZE,
    SEAL_NONCE,
    SEAL_OVERHEAD,
    pages_for,
)

_local = threading.local()


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    """Zstd contexts are not thread-safe: keep one per thread and level."""
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("zc", {})
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level or 3)
    return comp


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "zd", None)
    if dec is None:
        dec = _local.zd = zstandard.ZstdDecompressor()
    return dec


LZ4_HC_LEVELS = range(0, 13)  # 0 = the fast default; 1..12 = LZ4 HC (same decoder)
ZSTD_LEVELS = range(-128, zstandard.MAX_COMPRESSION_LEVEL + 1)  # negative = zstd --fast=N


def check_level(codec: int, level: int) -> None:
    """Refuse a level the codec cannot use, up front: the level is stored in the superblock,
    so a bad one accepted at create time would fail every later write."""
    allowed = {CODEC_LZ4: LZ4_HC_LEVELS, CODEC_ZSTD: ZSTD_LEVELS}.get(codec, range(0, 1))
    if level not in allowed:
        raise InvalidArgument(
            f"compression level {level} is not valid for {CODEC_NAMES[codec]} "
            f"({allowed.start}..{allowed.stop - 1}; 0 = the codec's default)")


def _compress_with(codec: int, data: bytes | bytearray | memoryview, level: int) -> bytes:
    if codec == CODEC_LZ4:
        if level > 0:
            return bytes(lz4.block.compress(data, store_size=False, mode="high_compression",
                                            compression=level))
        return bytes(lz4.block.compress(data, store_size=False))
    if codec == CODEC_ZSTD:
        return bytes(_zstd_compressor(level).compress(data))
    raise ValueError(f"unknown codec {codec}")


def compress(
    data: bytes | bytearray | memoryview, codec: int, level: int = 0, *, inline: bool = False,
    overhead: int = 0,
) -> tuple[int, bytes | bytearray | memoryview]:
    """Return ``(codec used, stored bytes)``: compressed only when it saves disk space.

    ``overhead`` is what sealing will add (so the page arithmetic is exact); ``inline`` says the
    result goes into a catalog leaf, where every byte saved counts. Raw data is returned as
    given, not copied (the caller owns it and does not change it afterwards).
    """
    if codec == CODEC_NONE or not data:
        return CODEC_NONE, data
    packed = _compress_with(codec, data, level)
    if inline:
        worth_it = len(packed) < len(data)
    else:
        worth_it = pages_for(len(packed) + overhead) < pages_for(len(data) + overhead)
    return (codec, packed) if worth_it else (CODEC_NONE, data)


def decompress(codec: int, stored: bytes | memoryview, logical: int) -> bytes:
    """Decode stored bytes back to exactly ``logical`` bytes, or raise CorruptArchive."""
    if not 0 <= logical <= MAX_CHUNK_SIZE:  # else lz4 would try to allocate (or overflow)
        raise CorruptArchive(f"chunk claims {logical} logical bytes", kind="chunk")
    try:
        if codec == CODEC_NONE:
            out = bytes(stored)
        elif codec == CODEC_LZ4:
            out = lz4.block.decompress(stored, uncompressed_size=logical)
        elif codec == CODEC_ZSTD:
            out = _zstd_decompressor().decompress(stored, max_output_size=logical)
        else:
            raise CorruptArchive(f"unknown codec {codec}", kind="chunk")
    except (lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
        raise CorruptArchive(f"{CODEC_NAMES[codec]} data does not decode: {exc}",
                             kind="chunk") from exc
    if len(out) != logical:
        raise CorruptArchive(f"chunk decoded to {len(out)} bytes, expected {logical}",
                             kind="chunk")
    return out


class Sealer:
    """AES-256-GCM with the archive's data key.

    One object per open archive; thread-safe (AESGCM objects are immutable). ``mac`` uses a
    separate HMAC key derived from the data key, for the superblock, which must stay readable
    before the tree is unlocked.
    """

    overhead = SEAL_OVERHEAD

    def __init__(self, data_key: bytes, uuid: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("data key must be 32 bytes")
        self._aead = AESGCM(data_key)
        self.data_key = data_key
        self._uuid = uuid
        self._mac_key = hashlib.sha256(b"cartfs superblock mac\0" + data_key).digest()

    def seal(self, plaintext: bytes | bytearray | memoryview, ad: bytes) -> bytes:
        nonce = os.urandom(SEAL_NONCE)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), self._uuid + ad)

    def open(self, sealed: bytes | memoryview, ad: bytes, *, page: int | None, kind: str) -> bytes:
        """Authenticate and decrypt, or raise IntegrityError naming the place."""
        if len(sealed) < SEAL_OVERHEAD:
            raise IntegrityError("sealed block too short", page=page, kind=kind)
        nonce = bytes(sealed[:SEAL_NONCE])
        try:
            return self._aead.decrypt(nonce, bytes(sealed[SEAL_NONCE:]), self._uuid + ad)
        except InvalidTag:
            raise IntegrityError(
                "authentication failed (tampered, swapped or replayed block)", page=page,
                kind=kind,
            ) from None

    def mac(self, message: bytes) -> bytes:
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

    def verify_mac(self, message: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(message), tag)
