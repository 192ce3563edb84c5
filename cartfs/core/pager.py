"""Pager: turns page numbers into verified bytes and back.

It owns the device, the ARC buffer pool and (for encrypted archives) the sealer. Node pages
carry a header and a whole-page CRC; when the archive is encrypted the payload is sealed with
the header as associated data. Extents (chunks, large values, the allocator state) carry no
header: the pointer that names them holds their CRC and birth, and their associated data is
the catalog key that owns them.

Commit ordering (see :meth:`Pager.commit_superblock`): all new pages are written and synced
*before* the superblock that names them is written and synced. Readers never see a superblock
whose pages might not be on disk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .cache import ARCCache
from .codec import Sealer
from .device import Device
from .errors import CartError, CorruptArchive, NotAnArchive
from .format import (
    PAGE_FLAG_SEALED,
    PAGE_HEADER,
    PAGE_HEADER_SIZE,
    PAGE_PAYLOAD,
    PAGE_SIZE,
    SEAL_OVERHEAD,
    BlobRef,
    PageHeader,
    PageNo,
    Superblock,
    TxnId,
    crc32,
    decode_page_header,
    decode_superblock,
    encode_page,
    encode_superblock,
    pages_for,
    superblock_auth_message,
)


@dataclass(frozen=True)
class PagerStatistics:
    """I/O counters since open: what benchmarks and `cartfs info -v` report."""

    pages_read: int
    pages_written: int
    bytes_read: int
    bytes_written: int
    syncs: int
    file_pages: int


class Pager:
    """Verified page and extent I/O over one device."""

    def __init__(self, device: Device, cache: ARCCache[Any, Any],
                 sealer: Sealer | None = None) -> None:
        self.device = device
        self.cache = cache
        self.sealer = sealer
        self._pages_read = self._pages_written = 0
        self._bytes_read = self._bytes_written = 0
        self._syncs = 0

    @property
    def node_capacity(self) -> int:
        """Payload bytes a node page can hold (less when sealed)."""
        return PAGE_PAYLOAD - (SEAL_OVERHEAD if self.sealer else 0)

    # ---- superblocks ------------------------------------------------------------------------

    def read_superblocks(self) -> list[Superblock]:
        """Every valid superblock, newest first; raise if none is valid."""
        head = self.device.pread(2 * PAGE_SIZE, 0)
        if len(head) < 8:
            raise NotAnArchive("file is empty or too short to be a Cartridge archive")
        found: list[Superblock] = []
        errors: list[CartError] = []
        for slot in (0, 1):
            page = head[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE]
            try:
                found.append(decode_superblock(page, slot=slot))
            except CartError as exc:
                errors.append(exc)
        if not found:
            not_archive = [e for e in errors if isinstance(e, NotAnArchive)]
            raise not_archive[0] if len(not_archive) == len(errors) else errors[0]
        return sorted(found, key=lambda sb: sb.txid, reverse=True)

    def superblock_is_authentic(self, sb: Superblock) -> bool:
        if self.sealer is None:
            return True
        message = superblock_auth_message(encode_superblock(sb))
        return self.sealer.verify_mac(message, sb.auth_tag)

    def commit_superblock(self, sb: Superblock) -> Superblock:
        """Sync data, then write and sync the superblock of ``sb.txid`` (slot txid % 2)."""
        if self.sealer is not None:
            unsigned = sb.with_(auth_tag=bytes(32))
            sb = sb.with_(auth_tag=self.sealer.mac(
                superblock_auth_message(encode_superblock(unsigned))))
        self.sync()
        self.device.pwrite(encode_superblock(sb), (sb.txid % 2) * PAGE_SIZE)
        self.sync()
        return sb

    def write_superblock_slot(self, sb: Superblock, slot: int) -> None:
        """Write ``sb`` into a given slot (creation writes both slots)."""
        self.device.pwrite(encode_superblock(sb), slot * PAGE_SIZE)

    def sync(self) -> None:
        self.device.sync()
        self._syncs += 1

    # ---- node pages -------------------------------------------------------------------------

    def read_node(self, page: PageNo, birth: TxnId) -> tuple[PageHeader, bytes]:
        """Read, verify and (if sealed) open a node page; return header and payload."""
        raw = self.device.pread(PAGE_SIZE, page * PAGE_SIZE)
        self._pages_read += 1
        self._bytes_read += len(raw)
        header = decode_page_header(raw, where=page)
        kind = "B-tree node"
        if header.page != page:
            raise CorruptArchive(f"page claims to be page {header.page} (misdirected write)",
                                 page=page, kind=kind)
        if header.birth != birth:
            raise CorruptArchive(
                f"page was written by transaction {header.birth}, its parent expects "
                f"{birth} (lost or stale write)", page=page, kind=kind)
        payload = raw[PAGE_HEADER_SIZE:]
        if header.sealed:
            if self.sealer is None:
                raise CorruptArchive("sealed page in an unencrypted archive", page=page,
                                     kind=kind)
            payload = self.sealer.open(payload[:PAGE_PAYLOAD], self._node_ad(raw),
                                       page=page, kind=kind)
        elif self.sealer is not None:
            raise CorruptArchive("plaintext page in an encrypted archive", page=page, kind=kind)
        return header, payload

    @staticmethod
    def _node_ad(page_bytes: bytes) -> bytes:
        """Associated data of a sealed node: its header without the CRC field."""
        return b"node" + page_bytes[:4] + page_bytes[8:PAGE_HEADER_SIZE]

    def write_node(self, header: PageHeader, payload: bytes | bytearray) -> None:
        """Encode (seal when encrypted) and write one node page."""
        if self.sealer is not None:
            header = PageHeader(header.kind, header.flags | PAGE_FLAG_SEALED, header.count, 0,
                                header.page, header.birth, header.level, header.tree)
            head = PAGE_HEADER.pack(header.kind, header.flags, header.count, 0, header.page,
                                    header.birth, header.level, header.tree)
            padded = bytes(payload) + bytes(self.node_capacity - len(payload))
            payload = self.sealer.seal(padded, self._node_ad(head))
        data = encode_page(header, payload)
        self.device.pwrite(data, header.page * PAGE_SIZE)
        self._pages_written += 1
        self._bytes_written += PAGE_SIZE

    # ---- extents ----------------------------------------------------------------------------

    def seal_extent(self, data: bytes | bytearray | memoryview, owner: bytes,
                    birth: TxnId) -> bytes | bytearray | memoryview:
        if self.sealer is None:
            return data
        return self.sealer.seal(data, self._extent_ad(owner, birth))

    @staticmethod
    def _extent_ad(owner: bytes, birth: TxnId) -> bytes:
        return b"extent" + struct.pack("<Q", birth) + owner

    def write_extent(self, page: PageNo, stored: bytes | bytearray | memoryview) -> None:
        """Write stored bytes at ``page`` (the tail of the last page is left as is)."""
        self.device.pwrite(stored, page * PAGE_SIZE)
        self._pages_written += pages_for(len(stored))
        self._bytes_written += len(stored)

    def read_extent(self, page: PageNo, length: int, checksum: int, *, kind: str) -> bytes:
        """Read ``length`` stored bytes at ``page`` and check their CRC."""
        data = self.device.pread(length, page * PAGE_SIZE)
        self._pages_read += pages_for(length)
        self._bytes_read += len(data)
        if len(data) != length:
            raise CorruptArchive(f"extent cut short ({len(data)} of {length} bytes; "
                                 "truncated file?)", page=page, kind=kind)
        if crc32(data) != checksum:
            raise CorruptArchive("checksum mismatch", page=page, kind=kind)
        return data

    def read_run(self, page: PageNo, length: int) -> bytes:
        """Raw bytes of several adjacent extents at once (the caller checks each CRC)."""
        data = self.device.pread(length, page * PAGE_SIZE)
        self._pages_read += pages_for(length)
        self._bytes_read += len(data)
        return data

    def open_extent(self, stored: bytes, owner: bytes, birth: TxnId, *, page: int | None,
                    kind: str, sealed: bool) -> bytes:
        """Undo ``seal_extent`` (checking the flag matches the archive)."""
        if sealed != (self.sealer is not None):
            raise CorruptArchive("sealing flag does not match the archive", page=page,
                                 kind=kind)
        if self.sealer is None:
            return stored
        return self.sealer.open(stored, self._extent_ad(owner, birth), page=page, kind=kind)

    def write_blob(self, page: PageNo, birth: TxnId, owner: bytes, data: bytes) -> BlobRef:
        """Seal and write a blob; return the reference that names it."""
        stored = self.seal_extent(data, owner, birth)
        self.write_extent(page, stored)
        return BlobRef(page, birth, len(stored), crc32(stored))

    def read_blob(self, ref: BlobRef, owner: bytes, *, kind: str) -> bytes:
        stored = self.read_extent(ref.page, ref.length, ref.checksum, kind=kind)
        return self.open_extent(stored, owner, ref.birth, page=ref.page, kind=kind,
                                sealed=self.sealer is not None)

    def blob_pages(self, nbytes: int) -> int:
        return pages_for(nbytes + (SEAL_OVERHEAD if self.sealer else 0))

    # ---- size -------------------------------------------------------------------------------

    def grow(self, total_pages: int) -> None:
        """Make the file ``total_pages`` long (reserving blocks; NoSpace if the disk is full)."""
        if total_pages * PAGE_SIZE > self.device.size():
            self.device.resize(total_pages * PAGE_SIZE)

    def shrink(self, total_pages: int) -> None:
        self.device.resize(total_pages * PAGE_SIZE)

    def statistics(self) -> PagerStatistics:
        return PagerStatistics(self._pages_read, self._pages_written, self._bytes_read,
                               self._bytes_written, self._syncs,
                               self.device.size() // PAGE_SIZE)
