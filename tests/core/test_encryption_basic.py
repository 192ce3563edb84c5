"""Encryption basics: the passphrase is needed and checked, nothing readable leaks into the
file, and tampering — even by someone who recomputes the plain CRCs — is detected as an
IntegrityError on read or by fsck, naming the page."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import (
    CorruptArchive,
    IntegrityError,
    PassphraseRequired,
    WrongPassphrase,
)
from cartfs.core.format import PAGE_SIZE, decode_page_header, decode_superblock, page_checksum
from cartfs.core.fsck import Checker, fsck
from cartfs.core.keys import KdfParams
from cartfs.testing.tree import tree_state

PASS = "correct horse battery staple"
SECRET_NAME = "quarterly-secret-report.txt"
SECRET_TEXT = b"The launch code is SWORDFISH-7731. " * 400
SECRET_XATTR = b"user.classification-level"


def encrypted_image(passphrase: str | bytes = PASS) -> bytes:
    device = MemoryDevice()
    archive = Archive.create_on(device, passphrase=passphrase, kdf=KdfParams.cheap(),
                                chunk_size=4096, title="Top Secret Title")
    archive.write_file(f"/vault/{SECRET_NAME}", SECRET_TEXT, parents=True)
    archive.write_file("/vault/small.txt", b"tiny SWORDFISH")
    ino = archive.resolve("/vault").ino
    archive.setxattr(ino, SECRET_XATTR, b"SWORDFISH-xattr" * 100)
    archive.make_symlink("/vault/SWORDFISH-target", "/link-to-SWORDFISH")
    archive.close()
    return bytes(device.data)


def newest_slot(image: bytes) -> int:
    return max((0, 1), key=lambda s: decode_superblock(
        image[s * PAGE_SIZE:(s + 1) * PAGE_SIZE], slot=s).txid)


def owners(image: bytes) -> dict[int, str]:
    archive = Archive.open_on(MemoryDevice(image), readonly=True, passphrase=PASS)
    checker = Checker(archive)
    checker.run()
    archive.close()
    return {page: owner for page, (owner, _) in checker.pages.owner.items()}


def test_round_trip_and_reopen() -> None:
    image = encrypted_image()
    archive = Archive.open_on(MemoryDevice(image), passphrase=PASS)
    assert archive.read_file(f"/vault/{SECRET_NAME}") == SECRET_TEXT
    assert archive.manifest()["title"] == "Top Secret Title"
    assert fsck(archive).ok
    archive.close()


def test_passphrase_required_and_checked() -> None:
    image = encrypted_image()
    with pytest.raises(PassphraseRequired):
        Archive.open_on(MemoryDevice(image))
    for wrong in ("", "correct horse battery stapl", PASS.upper(), PASS.encode() + b"\0"):
        with pytest.raises(WrongPassphrase):
            Archive.open_on(MemoryDevice(image), passphrase=wrong)
    Archive.open_on(MemoryDevice(image), passphrase=PASS.encode(), readonly=True).close()


def test_nothing_readable_in_the_file() -> None:
    """Names, contents, xattr names and values, symlink targets and the manifest are all
    sealed; only the superblock's fixed fields are plain."""
    image = encrypted_image()
    for needle in (SECRET_NAME.encode(), b"SWORDFISH", b"quarterly", SECRET_XATTR,
                   b"classification", b"Top Secret", b"vault", PASS.encode()):
        assert needle not in image, f"{needle!r} is readable in the archive file"


def test_tampered_node_with_fixed_crc_is_an_integrity_error() -> None:
    """Flip a sealed byte and recompute the page CRC: only the AEAD tag can tell."""
    image = encrypted_image()
    nodes = sorted(p for p, o in owners(image).items() if o == "B-tree node")
    assert nodes
    for page in nodes:
        damaged = bytearray(image)
        damaged[page * PAGE_SIZE + 100] ^= 0x01
        struct.pack_into("<I", damaged, page * PAGE_SIZE + 4,
                         page_checksum(damaged[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]))
        try:
            archive = Archive.open_on(MemoryDevice(bytes(damaged)), passphrase=PASS,
                                      readonly=True)
        except IntegrityError as exc:
            assert exc.page == page
            continue
        report = fsck(archive)
        archive.close()
        assert any(p.page == page and "authentication" in p.message
                   for p in report.problems), report.problems


def test_node_moved_to_another_page_is_detected() -> None:
    """Copy one sealed node over another and rewrite its header (page number) and CRC, as
    an attacker replaying or swapping blocks would: the header is associated data."""
    image = encrypted_image()
    nodes = sorted(p for p, o in owners(image).items() if o == "B-tree node")
    assert len(nodes) >= 2
    src, dst = nodes[0], nodes[1]
    damaged = bytearray(image)
    block = bytearray(image[src * PAGE_SIZE:(src + 1) * PAGE_SIZE])
    dst_header = decode_page_header(image[dst * PAGE_SIZE:(dst + 1) * PAGE_SIZE], where=dst)
    struct.pack_into("<QQ", block, 8, dst, dst_header.birth)
    struct.pack_into("<I", block, 4, page_checksum(block))
    damaged[dst * PAGE_SIZE:(dst + 1) * PAGE_SIZE] = block
    try:
        archive = Archive.open_on(MemoryDevice(bytes(damaged)), passphrase=PASS,
                                  readonly=True)
    except IntegrityError as exc:
        assert exc.page == dst
        return
    report = fsck(archive)
    archive.close()
    assert any(p.page == dst for p in report.problems), report.problems


def test_tampered_file_data_is_detected_on_read_and_by_fsck() -> None:
    image = encrypted_image()
    data_pages = sorted(p for p, o in owners(image).items() if o == "file data")
    assert data_pages
    page = data_pages[len(data_pages) // 2]
    damaged = bytearray(image)
    damaged[page * PAGE_SIZE + 20] ^= 0x80
    archive = Archive.open_on(MemoryDevice(bytes(damaged)), passphrase=PASS, readonly=True)
    with pytest.raises(CorruptArchive) as info:
        tree_state(archive)
    assert info.value.page == page
    report = fsck(archive)
    assert any(p.page == page for p in report.problems), report.problems
    archive.close()


def test_tampered_superblock_with_fixed_crc_is_refused() -> None:
    """Change a plain superblock field (the manifest-free part an attacker can see) and fix
    its CRC: the superblock MAC under the data key refuses it."""
    image = bytearray(encrypted_image())
    slot = newest_slot(bytes(image))
    base = slot * PAGE_SIZE
    struct.pack_into("<Q", image, base + 64, 999_999)  # next_ino
    struct.pack_into("<I", image, base + 328, zlib.crc32(bytes(image[base:base + 328])))
    with pytest.raises(IntegrityError) as info:
        Archive.open_on(MemoryDevice(bytes(image)), passphrase=PASS)
    assert info.value.page == slot


def test_chunks_cannot_be_swapped_between_files() -> None:
    """Two files' chunk extents of equal length swapped (content and all): the CRCs in the
    pointers catch it first, and even with matching CRCs the AEAD binding (catalog key +
    birth) would; either way the read fails instead of returning the other file's data."""
    device = MemoryDevice()
    archive = Archive.create_on(device, passphrase=PASS, kdf=KdfParams.cheap(),
                                chunk_size=4096)
    archive.write_file("/a", os.urandom(4096))  # incompressible: stored as extents
    archive.write_file("/b", os.urandom(4096))
    ino_a, ino_b = archive.resolve("/a").ino, archive.resolve("/b").ino
    ptr_a, ptr_b = archive._chunks.pointer(ino_a, 0), archive._chunks.pointer(ino_b, 0)
    archive.close()
    assert ptr_a is not None and ptr_b is not None
    assert ptr_a.inline_data is None and ptr_a.stored == ptr_b.stored
    image = bytearray(device.data)
    a_bytes = image[ptr_a.page * PAGE_SIZE:ptr_a.page * PAGE_SIZE + ptr_a.stored]
    b_bytes = image[ptr_b.page * PAGE_SIZE:ptr_b.page * PAGE_SIZE + ptr_b.stored]
    image[ptr_a.page * PAGE_SIZE:ptr_a.page * PAGE_SIZE + ptr_a.stored] = b_bytes
    image[ptr_b.page * PAGE_SIZE:ptr_b.page * PAGE_SIZE + ptr_b.stored] = a_bytes
    swapped = Archive.open_on(MemoryDevice(bytes(image)), passphrase=PASS, readonly=True)
    for path in ("/a", "/b"):
        with pytest.raises(CorruptArchive):
            swapped.read_file(path)
    # The AEAD layer on its own: open b's sealed bytes as if they were a's chunk.
    with pytest.raises(IntegrityError):
        swapped._pager.open_extent(bytes(b_bytes), b"".join([ino_a.to_bytes(8, "big"),
                                                             b"\x05", bytes(8)]),
                                   ptr_a.birth, page=ptr_a.page, kind="chunk", sealed=True)
    swapped.close()
