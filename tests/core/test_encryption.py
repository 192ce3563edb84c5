"""Encryption at rest: known answers, every byte tampered, swaps, replays, leaks, passphrases.

The promise (DESIGN.md §7, the seed's trap list): every chunk and every metadata page is sealed
with AES-256-GCM under a random data key wrapped by a passphrase-derived key; the associated
data binds each block to its place, so a flipped, swapped, moved or replayed block is an error
naming where — never different bytes returned silently — and nothing of the tree (names,
sizes, xattrs, link targets) is readable without the key.

Two kinds of attacker appear below. One edits bytes only (the realistic one): CRCs are public,
so they may fix any CRC they like, but they cannot produce a valid tag. The other also rewrites
a pointer inside a sealed node (simulated through the catalog, with the key) — that is how the
tests reach the associated-data check *behind* the CRC that names each extent, so dropping
the place from the associated data makes them fail.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cartfs.core.archive import Archive
from cartfs.core.btree import BTree
from cartfs.core.cache import ARCCache
from cartfs.core.catalog import (
    REC_CHUNK,
    REC_XATTR,
    ROOT_INO,
    chunk_key,
    decode_xattr,
    split_key,
)
from cartfs.core.codec import Sealer
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import (
    CartError,
    CorruptArchive,
    IntegrityError,
    InvalidArgument,
    PassphraseRequired,
    ReadOnly,
    WrongPassphrase,
)
from cartfs.core.format import (
    FEATURE_ENCRYPTED,
    PAGE_HEADER,
    PAGE_HEADER_SIZE,
    PAGE_SIZE,
    SUPER_AUTH_OFFSET,
    SUPER_BODY_SIZE,
    SUPER_CHECKSUM_OFFSET,
    SUPER_HEAD,
    BlobRef,
    KeyHeader,
    PageHeader,
    Superblock,
    TxnId,
    crc32,
    decode_chunk_ptr,
    decode_page_header,
    decode_superblock,
    encode_chunk_ptr,
    encode_superblock,
    page_checksum,
)
from cartfs.core.fsck import FREE, Checker, fsck
from cartfs.core.keys import KDF_ARGON2ID, KDF_SCRYPT, KdfParams, derive, unwrap
from cartfs.core.pager import Pager
from cartfs.testing.tree import EntryState, diff_states, tree_state

PASS = "tamper test passphrase"
CHEAP = KdfParams.cheap()
NODE_LABEL = "B-tree node"

# ---- known answers ---------------------------------------------------------------------------
# Published vectors first (they pin the primitives), then our own, each computed once with
# `cryptography` directly (AESGCM / Argon2id / Scrypt, not through cartfs) and pinned as hex.

# McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, 96-bit IV,
# 20 bytes of AAD). Our AD is uuid(16) || place, so the AAD splits at byte 16.
GCM16_KEY = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
GCM16_IV = "cafebabefacedbaddecaf888"
GCM16_PT = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
GCM16_AAD = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
GCM16_CT = ("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662")
GCM16_TAG = "76fc6ece0f4e1768cddf8853bb2d551b"

# RFC 7914 §12: scrypt(P="password", S="NaCl", N=1024, r=8, p=16), first 32 of 64 bytes.
SCRYPT_RFC_KEY = "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"

KAT_PASSPHRASE = b"correct horse battery staple"
KAT_SALT = bytes(range(16))
# Argon2id(t=1, m=1024 KiB, p=1, len=32) and scrypt(N=2**10, r=8, p=1, len=32) of the above.
ARGON2ID_KEY = "f0d1525842159cef972608e2f8bc1cb2c8230f81eea76f124789f6beb42403b2"
SCRYPT_KEY = "9a9f74cc441de571a18c4bf8580ad51f86745d14b39065ad24ad92fc05c99515"

KAT_DATA_KEY = bytes(range(0x80, 0xA0))
KAT_UUID = bytes(range(0x40, 0x50))
KAT_NONCE = bytes(range(0xA0, 0xAC))
KAT_WRAP_NONCE = bytes(range(0xB0, 0xBC))
# AESGCM(SCRYPT_KEY).encrypt(KAT_WRAP_NONCE, KAT_DATA_KEY, b"cartfs data key\0" + KAT_UUID)
KAT_WRAPPED = ("6aacd1ee17070a7d61cf66ed745c8b182bebda9014405c5e833aae609069b073"
               "95b64cdffb0acf1e74c8c0a1cfe4d139")
# The extent of chunk 3 of inode 5 born in txid 7, sealed under key bytes(range(32)):
# nonce || AESGCM.encrypt(nonce, KAT_PLAINTEXT, uuid || b"extent" || u64le(7) || KAT_OWNER)
KAT_OWNER = bytes.fromhex("0000000000000005" "05" "0000000000000003")  # ino BE, CHUNK, no BE
KAT_SEAL_KEY = bytes(range(32))
KAT_PLAINTEXT = b"Cartridge known-answer plaintext"
KAT_SEALED = ("a0a1a2a3a4a5a6a7a8a9aaaba5790e5937a266d80745ecbd680daef311c22a67"
              "f7c5621cf06f4fe80bce0d75735aa157f1cc838c3b9df38787591d34")


def test_gcm_published_vector_through_the_sealer() -> None:
    """Our Sealer opens the GCM spec's test case 16 — same primitive, same byte order."""
    aad = bytes.fromhex(GCM16_AAD)
    sealer = Sealer(bytes.fromhex(GCM16_KEY), aad[:16])
    sealed = bytes.fromhex(GCM16_IV + GCM16_CT + GCM16_TAG)
    assert sealer.open(sealed, aad[16:], page=None, kind="kat") == bytes.fromhex(GCM16_PT)
    with pytest.raises(IntegrityError):
        sealer.open(sealed, aad[16:] + b"x", page=None, kind="kat")


def test_extent_sealing_known_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed key, nonce, place and plaintext give exactly the pinned bytes."""
    monkeypatch.setattr(os, "urandom", lambda n: KAT_NONCE[:n])
    pager = Pager(MemoryDevice(), _no_cache(), Sealer(KAT_SEAL_KEY, KAT_UUID))
    assert chunk_key(5, 3) == KAT_OWNER
    sealed = pager.seal_extent(KAT_PLAINTEXT, chunk_key(5, 3), TxnId(7))
    assert sealed.hex() == KAT_SEALED
    opened = pager.open_extent(sealed, chunk_key(5, 3), TxnId(7), page=9, kind="chunk",
                               sealed=True)
    assert opened == KAT_PLAINTEXT


@pytest.mark.parametrize(("owner", "birth"), [
    (chunk_key(5, 4), 7),  # another chunk of the same file
    (chunk_key(6, 3), 7),  # the same chunk number of another file
    (chunk_key(5, 3), 6),  # an older transaction (replay)
])
def test_extent_opened_elsewhere_fails(owner: bytes, birth: int) -> None:
    pager = Pager(MemoryDevice(), _no_cache(), Sealer(KAT_SEAL_KEY, KAT_UUID))
    with pytest.raises(IntegrityError, match="authentication failed") as info:
        pager.open_extent(bytes.fromhex(KAT_SEALED), owner, TxnId(birth), page=9,
                          kind="chunk 3 of inode 5", sealed=True)
    assert info.value.page == 9 and info.value.kind == "chunk 3 of inode 5"


def test_sealed_block_of_another_archive_fails() -> None:
    """Same data key, same place, another archive UUID: refused."""
    other = Sealer(KAT_SEAL_KEY, bytes(16))
    ad = b"extent" + struct.pack("<Q", 7) + chunk_key(5, 3)
    with pytest.raises(IntegrityError):
        other.open(bytes.fromhex(KAT_SEALED), ad, page=None, kind="chunk")


def test_kdf_known_answers() -> None:
    argon = KeyHeader(kdf=KDF_ARGON2ID, memory_kib=1024, iterations=1, lanes=1, salt=KAT_SALT)
    scrypt = KeyHeader(kdf=KDF_SCRYPT, log2_n=10, r=8, p=1, salt=KAT_SALT)
    rfc = KeyHeader(kdf=KDF_SCRYPT, log2_n=10, r=8, p=16, salt=b"NaCl")
    assert derive(argon, KAT_PASSPHRASE).hex() == ARGON2ID_KEY
    assert derive(scrypt, KAT_PASSPHRASE).hex() == SCRYPT_KEY
    assert derive(scrypt, KAT_PASSPHRASE.decode()).hex() == SCRYPT_KEY  # str == its UTF-8
    assert derive(rfc, b"password").hex() == SCRYPT_RFC_KEY


def test_wrapped_data_key_known_answer() -> None:
    header = KeyHeader(kdf=KDF_SCRYPT, log2_n=10, r=8, p=1, salt=KAT_SALT,
                       wrap_nonce=KAT_WRAP_NONCE, wrapped_key=bytes.fromhex(KAT_WRAPPED))
    assert unwrap(header, KAT_PASSPHRASE, KAT_UUID) == KAT_DATA_KEY
    with pytest.raises(WrongPassphrase):
        unwrap(header, b"wrong", KAT_UUID)
    with pytest.raises(WrongPassphrase):  # the wrap is bound to the archive's UUID
        unwrap(header, KAT_PASSPHRASE, bytes(16))


def test_on_disk_layout_opens_with_plain_aesgcm() -> None:
    """Decrypt a real archive's node page, chunk extent and superblock MAC with the
    primitives alone, following the documented layout — not through cartfs's reader."""
    device = MemoryDevice()
    archive = Archive.create_on(device, passphrase=PASS, kdf=CHEAP, chunk_size=4096)
    archive.write_file("/data.bin", random.Random(1).randbytes(5000))
    archive.sync()
    sb, ino = archive.superblock, archive.resolve("/data.bin").ino
    ptr = decode_chunk_ptr(archive._catalog.get(chunk_key(ino, 0)) or b"")
    archive.close()
    raw = bytes(device.data)
    data_key = unwrap(sb.key_header, PASS, sb.uuid)
    aead = AESGCM(data_key)

    page = raw[sb.catalog.page * PAGE_SIZE:(sb.catalog.page + 1) * PAGE_SIZE]
    node_ad = sb.uuid + b"node" + page[:4] + page[8:PAGE_HEADER_SIZE]
    body = page[PAGE_HEADER_SIZE:]
    payload = aead.decrypt(body[:12], body[12:], node_ad)
    assert b"data.bin" in payload

    stored = raw[ptr.page * PAGE_SIZE:ptr.page * PAGE_SIZE + ptr.stored]
    extent_ad = sb.uuid + b"extent" + struct.pack("<Q", ptr.birth) + chunk_key(ino, 0)
    assert len(aead.decrypt(stored[:12], stored[12:], extent_ad)) == 4096

    slot = raw[(sb.txid % 2) * PAGE_SIZE:(sb.txid % 2 + 1) * PAGE_SIZE]
    mac_key = hashlib.sha256(b"cartfs superblock mac\0" + data_key).digest()
    message = slot[:SUPER_AUTH_OFFSET] + bytes(32)
    expected = hmac.new(mac_key, message, hashlib.sha256).digest()
    assert slot[SUPER_AUTH_OFFSET:SUPER_BODY_SIZE] == expected


def _no_cache() -> ARCCache[Any, Any]:
    return ARCCache(0)


# ---- a small encrypted archive and what each of its bytes is -------------------------------

POLICY = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
          '"cartfs:Read", "Resource": "arn:cartfs:::/home/${aws:username}/**"}]}')


def build_small() -> bytes:
    """A few files of every kind, a snapshot, IAM records; vacuumed, then two commits that
    change only the key header, so both superblock slots name the same trees."""
    rng = random.Random(5)
    device = MemoryDevice()
    with Archive.create_on(device, passphrase=PASS, kdf=CHEAP, chunk_size=4096,
                           title="Quarterly secrets") as archive:
        archive.make_dir("/docs")
        archive.write_file("/docs/notes.txt", b"the launch code is 0000, do not tell\n" * 60)
        archive.write_file("/docs/random.bin", rng.randbytes(3 * 4096))
        archive.write_file("/tiny.txt", b"tiny inline file")
        archive.make_symlink("docs/notes.txt", "/link-to-notes")
        ino = archive.resolve("/tiny.txt").ino
        archive.setxattr(ino, "user.small", b"small xattr value")
        archive.setxattr(ino, "user.big", rng.randbytes(1500))
        archive.iam.add_user("alice")
        archive.iam.put_policy("home", POLICY)
        archive.iam.attach("alice", "home")
        archive.create_snapshot("before")
        archive.write(archive.resolve("/docs/random.bin").ino, 4096, rng.randbytes(4096))
        archive.vacuum()
        archive.change_passphrase(PASS, CHEAP)
    return bytes(device.data)


def open_image(image: bytes | bytearray, *, passphrase: str = PASS,
               readonly: bool = True) -> Archive:
    return Archive.open_on(MemoryDevice(bytes(image)), passphrase=passphrase,
                           readonly=readonly)


def everything(archive: Archive) -> dict[str, Any]:
    """All an archive tells a reader: live tree, snapshot tree, IAM records, manifest."""
    snapshot: dict[str, EntryState] = tree_state(_Rooted(archive.snapshot("before")))  # type: ignore[arg-type]
    return {
        "live": tree_state(archive),
        "snapshot": snapshot,
        "users": archive.iam.list_users(),
        "policies": {n: archive.iam.get_policy(n).to_json() for n in archive.iam.list_policies()},
        "manifest": archive.manifest(),
    }


class _Rooted:
    """A snapshot view with the ``root_ino`` that tree_state asks for."""

    root_ino = ROOT_INO

    def __init__(self, view: Any) -> None:
        self._view = view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


def extent_lengths(archive: Archive) -> dict[int, int]:
    """First page → stored length of every extent reachable from any root."""
    sb = archive.superblock
    lengths = {sb.allocator.page: sb.allocator.length}
    trees = [archive._catalog] + [
        BTree(archive._pager, None, archive._clock, archive._catalog.tree_id, root,
              writable=False) for _, root in archive._snapshot_roots()]
    for tree in trees:
        for visit in tree.walk():
            if not visit.node.is_leaf:
                continue
            for key, value in zip(visit.node.keys, visit.node.vals, strict=True):
                rec = split_key(key)[1]
                if rec == REC_CHUNK:
                    ptr = decode_chunk_ptr(value)
                    if ptr.inline_data is None:
                        lengths[ptr.page] = ptr.stored
                elif rec == REC_XATTR:
                    stored = decode_xattr(value)
                    if isinstance(stored, BlobRef):
                        lengths[stored.page] = stored.length
    return lengths


@dataclass(frozen=True)
class Region:
    """A run of bytes with one owner: a superblock body, a node page or an extent."""

    what: str
    start: int
    end: int


def regions_that_matter(image: bytes) -> list[Region]:
    """Every byte a reader depends on, from fsck's ownership map (which proves the allocator
    right: each page free or owned, none leaked) and each extent's stored length. Left out:
    free pages, the zero padding after each superblock's checksum, and the slack after an
    extent's stored length in its last page."""
    with open_image(image) as archive:
        checker = Checker(archive)
        report = checker.run()
        assert report.ok, report.problems
        owner = checker.pages.owner
        lengths = extent_lengths(archive)
        total = archive.superblock.total_pages
    assert len(image) == total * PAGE_SIZE
    regions = []
    for page in range(total):
        what, start = owner[page]  # KeyError = a page fsck did not account for
        base = page * PAGE_SIZE
        if what == FREE:
            continue
        if what == "superblock":
            regions.append(Region(f"superblock slot {page}", base,
                                  base + SUPER_CHECKSUM_OFFSET + 4))
        elif what == NODE_LABEL:
            regions.append(Region(f"node page {page}", base, base + PAGE_SIZE))
        else:
            end = min(base + PAGE_SIZE, start * PAGE_SIZE + lengths[start])
            if end > base:
                regions.append(Region(f"{what} at page {start}", base, end))
    return regions


@pytest.fixture(scope="module")
def small() -> tuple[bytes, dict[str, Any], list[Region]]:
    image = build_small()
    with open_image(image) as archive:
        expected = everything(archive)
    slots = [decode_superblock(image[s * PAGE_SIZE:(s + 1) * PAGE_SIZE], slot=s)
             for s in (0, 1)]
    assert slots[0].catalog == slots[1].catalog and slots[0].system == slots[1].system
    return image, expected, regions_that_matter(image)


def outcome(image: bytes | bytearray, expected: dict[str, Any]) -> str:
    """How a reader meets a damaged image: 'error' (a CartError on open, read or fsck),
    'problem' (fsck reports damage), 'note' (fsck notes an invalid superblock slot and the
    other slot, naming the same trees, served identical content) — or 'undetected'. Any
    other exception propagates: it would be a bug. Different content without an error
    fails the test here."""
    try:
        with open_image(image) as archive:
            got = everything(archive)
            report = fsck(archive)
    except CartError:
        return "error"
    if report.problems:
        return "problem"
    assert got == expected, ("different content returned silently",
                             diff_states(expected["live"], got["live"]))
    return "note" if report.notes else "undetected"


def flip(image: bytes, offset: int) -> bytearray:
    damaged = bytearray(image)
    damaged[offset] ^= 1 << (offset % 8)
    return damaged


def sample_offsets(regions: list[Region], count: int, seed: int = 0) -> list[int]:
    """The first and last 32 bytes of every region (headers, lengths, tags), then random
    bytes from everywhere that matters, ``count`` in all."""
    chosen: set[int] = set()
    for region in regions:
        chosen.update(range(region.start, min(region.end, region.start + 32)))
        chosen.update(range(max(region.start, region.end - 32), region.end))
    everywhere = [o for r in regions for o in range(r.start, r.end)]
    rng = random.Random(seed)
    rest = [o for o in everywhere if o not in chosen]
    chosen.update(rng.sample(rest, max(0, min(len(rest), count - len(chosen)))))
    return sorted(chosen)


def sweep(image: bytes, expected: dict[str, Any], offsets: list[int]) -> dict[str, int]:
    tally: dict[str, int] = {}
    missed = []
    for offset in offsets:
        result = outcome(flip(image, offset), expected)
        tally[result] = tally.get(result, 0) + 1
        if result == "undetected":
            missed.append(offset)
    assert not missed, f"{len(missed)} flipped bytes went unnoticed, e.g. at {missed[:10]}"
    return tally


def test_small_archive_is_small_and_mapped(small: tuple[bytes, dict[str, Any],
                                                       list[Region]]) -> None:
    _, _, regions = small
    kinds = {r.what.split(" at ")[0].split(" page")[0].split(" slot")[0] for r in regions}
    assert {"superblock", "node", "file data", "allocator state"} <= kinds, kinds
    assert any(r.what.startswith("xattr") for r in regions)
    matter = sum(r.end - r.start for r in regions)
    assert 16 * 1024 <= matter <= 64 * 1024, matter


def test_every_sampled_tampered_byte_is_detected(
        small: tuple[bytes, dict[str, Any], list[Region]]) -> None:
    """2,000 flipped bytes, including the edges of every page and extent."""
    image, expected, regions = small
    tally = sweep(image, expected, sample_offsets(regions, 2000))
    assert tally.get("error", 0) > 0 and tally.get("note", 0) > 0


@pytest.mark.soak
def test_every_tampered_byte_is_detected(
        small: tuple[bytes, dict[str, Any], list[Region]]) -> None:
    image, expected, regions = small
    sweep(image, expected, [o for r in regions for o in range(r.start, r.end)])


def test_bytes_left_out_really_do_not_matter(
        small: tuple[bytes, dict[str, Any], list[Region]]) -> None:
    """The skipped set is not a hiding place: flipping every 97th skipped byte changes
    nothing a reader sees, and fsck stays clean."""
    image, expected, regions = small
    matters = bytearray(len(image))
    for region in regions:
        matters[region.start:region.end] = b"\1" * (region.end - region.start)
    skipped = [o for o in range(0, len(image), 97) if not matters[o]]
    assert skipped
    damaged = bytearray(image)
    for offset in skipped:
        damaged[offset] ^= 0xFF
    with open_image(damaged) as archive:
        assert everything(archive) == expected
        assert fsck(archive).ok


# ---- swaps, moves and replays ----------------------------------------------------------------


def _write_random_files(archive: Archive, rng: random.Random) -> None:
    archive.write_file("/a.bin", rng.randbytes(3 * 4096))  # incompressible: same sizes
    archive.write_file("/b.bin", rng.randbytes(2 * 4096))


def _built(rng_seed: int = 3) -> MemoryDevice:
    device = MemoryDevice()
    with Archive.create_on(device, passphrase=PASS, kdf=CHEAP, chunk_size=4096) as archive:
        _write_random_files(archive, random.Random(rng_seed))
    return device


def _pointer(archive: Archive, path: str, chunk_no: int) -> tuple[int, Any]:
    ino = archive.resolve(path).ino
    return ino, decode_chunk_ptr(archive._catalog.get(chunk_key(ino, chunk_no)) or b"")


def _swap(image: bytearray, a: Any, b: Any) -> None:
    assert a.stored == b.stored
    pa, pb = a.page * PAGE_SIZE, b.page * PAGE_SIZE
    image[pa:pa + a.stored], image[pb:pb + b.stored] = (image[pb:pb + b.stored],
                                                       image[pa:pa + a.stored])


def _read_all_and_fsck(image: bytes | bytearray) -> tuple[list[CartError], list[str]]:
    errors: list[CartError] = []
    with open_image(image) as archive:
        for path in ("/a.bin", "/b.bin"):
            try:
                archive.read_file(path)
            except CartError as exc:
                errors.append(exc)
        problems = [str(p) for p in fsck(archive).problems]
    return errors, problems


@pytest.mark.parametrize(("first", "second"), [
    (("/a.bin", 0), ("/a.bin", 1)),  # within one file
    (("/a.bin", 2), ("/b.bin", 0)),  # across files
])
def test_swapped_extent_bytes_are_detected(first: tuple[str, int],
                                           second: tuple[str, int]) -> None:
    """An attacker who swaps the bytes of two sealed chunks of the same size."""
    device = _built()
    with open_image(device.data) as archive:
        (ino_a, ptr_a), (_, ptr_b) = _pointer(archive, *first), _pointer(archive, *second)
    image = bytearray(device.data)
    _swap(image, ptr_a, ptr_b)
    errors, problems = _read_all_and_fsck(image)
    assert errors and all(isinstance(e, CorruptArchive) for e in errors)
    assert any(e.page == ptr_a.page and f"chunk {first[1]} of inode {ino_a}" in str(e)
               for e in errors), [str(e) for e in errors]
    assert len(problems) >= 2, problems


@pytest.mark.parametrize(("first", "second"), [
    (("/a.bin", 0), ("/a.bin", 1)),
    (("/a.bin", 2), ("/b.bin", 0)),
])
def test_swapped_chunk_pointers_fail_authentication(first: tuple[str, int],
                                                    second: tuple[str, int]) -> None:
    """Behind the CRC: pointers swapped (CRCs then match), the associated data still names
    the chunk each extent was sealed for."""
    device = _built()
    with Archive.open_on(device, passphrase=PASS) as archive:
        (ino_a, ptr_a), (ino_b, ptr_b) = _pointer(archive, *first), _pointer(archive, *second)
        archive._catalog.put(chunk_key(ino_a, first[1]), encode_chunk_ptr(ptr_b))
        archive._catalog.put(chunk_key(ino_b, second[1]), encode_chunk_ptr(ptr_a))
        archive._meta_dirty = True
    errors, problems = _read_all_and_fsck(device.data)
    assert errors and all(isinstance(e, IntegrityError) for e in errors), errors
    assert "authentication failed" in str(errors[0])
    assert any("authentication failed" in p for p in problems), problems


def test_replayed_chunk_is_detected() -> None:
    """Old bytes of a chunk put where its new version lives: the CRC in the (sealed) pointer
    refuses them; with the CRC forged too, the birth in the associated data does."""
    device = _built()
    rng = random.Random(9)
    with Archive.open_on(device, passphrase=PASS) as archive:
        ino, old = _pointer(archive, "/a.bin", 1)
        old_bytes = bytes(device.data[old.page * PAGE_SIZE:old.page * PAGE_SIZE + old.stored])
        archive.write(ino, 4096, rng.randbytes(4096))
        archive.sync()
        _, new = _pointer(archive, "/a.bin", 1)
        assert (new.page, new.birth) != (old.page, old.birth)
    image = bytearray(device.data)
    image[new.page * PAGE_SIZE:new.page * PAGE_SIZE + new.stored] = old_bytes
    errors, _ = _read_all_and_fsck(image)
    assert errors and isinstance(errors[0], CorruptArchive)

    with Archive.open_on(device, passphrase=PASS) as archive:  # forge the CRC as well
        forged = type(new)(new.codec, new.logical, new.stored, crc32(old_bytes), new.page,
                           new.birth, sealed=True)
        archive._catalog.put(chunk_key(ino, 1), encode_chunk_ptr(forged))
        archive._meta_dirty = True
    image = bytearray(device.data)
    image[new.page * PAGE_SIZE:new.page * PAGE_SIZE + new.stored] = old_bytes
    errors, problems = _read_all_and_fsck(image)
    assert errors and isinstance(errors[0], IntegrityError), errors
    assert problems


def _node_pages(image: bytes | bytearray) -> dict[int, PageHeader]:
    with open_image(image) as archive:
        checker = Checker(archive)
        checker.run()
        pages = [p for p, (what, _) in checker.pages.owner.items() if what == NODE_LABEL]
    return {p: decode_page_header(bytes(image[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]), where=p)
            for p in pages}


def _transplant(image: bytearray, source: bytes, target: int, header: PageHeader) -> None:
    """Put a sealed page's payload at ``target`` under ``target``'s own header, CRC fixed —
    what an attacker who knows the format (but not the key) can do."""
    page = bytearray(source)
    PAGE_HEADER.pack_into(page, 0, header.kind, header.flags, header.count, 0, header.page,
                          header.birth, header.level, header.tree)
    struct.pack_into("<I", page, 4, page_checksum(page))
    image[target * PAGE_SIZE:(target + 1) * PAGE_SIZE] = page


def _expect_detected(image: bytes | bytearray, *, integrity: bool) -> None:
    try:
        with open_image(image) as archive:
            everything_plain(archive)
            report = fsck(archive)
    except IntegrityError:
        return
    except CorruptArchive:
        assert not integrity, "expected an authentication failure"
        return
    assert not report.ok
    if integrity:
        assert any("authentication failed" in str(p) for p in report.problems), report.problems


def everything_plain(archive: Archive) -> None:
    tree_state(archive)
    archive.iam.list_users()
    for name in archive.iam.list_policies():
        archive.iam.get_policy(name)


def test_moved_node_page_is_detected() -> None:
    device = _built()
    with Archive.open_on(device, passphrase=PASS) as archive:
        archive.iam.add_user("mallory")  # a system-tree node beside the catalog's
    image = bytes(device.data)
    nodes = _node_pages(image)
    assert len(nodes) >= 2
    (src, _), (dst, dst_header) = list(nodes.items())[:2]
    source = image[src * PAGE_SIZE:(src + 1) * PAGE_SIZE]
    moved = bytearray(image)
    moved[dst * PAGE_SIZE:(dst + 1) * PAGE_SIZE] = source  # as is: misdirected
    _expect_detected(moved, integrity=False)
    moved = bytearray(image)
    _transplant(moved, source, dst, dst_header)  # header rewritten: only the AD can tell
    _expect_detected(moved, integrity=True)


def test_replayed_node_page_is_detected() -> None:
    """A node page from an earlier copy of the file, under the header the current tree
    expects: the sealed payload was bound to the old header."""
    device = _built()
    earlier = bytes(device.data)
    old_nodes = _node_pages(earlier)
    with Archive.open_on(device, passphrase=PASS) as archive:
        archive.write_file("/c.txt", b"a change that rewrites the catalog")
    image = bytes(device.data)
    new_nodes = _node_pages(image)
    catalog_root = decode_superblock(image[:PAGE_SIZE], slot=0)
    other = decode_superblock(image[PAGE_SIZE:2 * PAGE_SIZE], slot=1)
    root = max(catalog_root, other, key=lambda sb: sb.txid).catalog.page
    old_page = next(p for p, h in old_nodes.items() if h.tree == new_nodes[root].tree)
    replayed = bytearray(image)
    _transplant(replayed, earlier[old_page * PAGE_SIZE:(old_page + 1) * PAGE_SIZE], root,
                new_nodes[root])
    _expect_detected(replayed, integrity=True)


# ---- the superblock --------------------------------------------------------------------------


def _newest_slot(image: bytes | bytearray) -> tuple[int, Superblock]:
    sbs = [decode_superblock(bytes(image[s * PAGE_SIZE:(s + 1) * PAGE_SIZE]), slot=s)
           for s in (0, 1)]
    slot = max((0, 1), key=lambda s: sbs[s].txid)
    return slot, sbs[slot]


def _rewrite_superblock(image: bytearray, slot: int, sb: Superblock) -> None:
    """Re-encode with a correct CRC but the old authentication tag."""
    image[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE] = encode_superblock(sb)


@pytest.mark.parametrize("change", ["catalog", "total_pages", "next_ino", "chunk_size",
                                    "codec"])
def test_edited_superblock_with_fixed_crc_fails_authentication(change: str) -> None:
    device = _built()
    image = bytearray(device.data)
    slot, sb = _newest_slot(image)
    edits: dict[str, object] = {
        "catalog": sb.system, "total_pages": sb.total_pages + 1, "next_ino": sb.next_ino + 5,
        "chunk_size": sb.chunk_size * 2, "codec": 0 if sb.codec else 1,
    }
    _rewrite_superblock(image, slot, sb.with_(**{change: edits[change]}))
    if change == "total_pages":
        image.extend(bytes(PAGE_SIZE))
    with pytest.raises(IntegrityError, match="superblock"):
        open_image(image)


def test_downgrade_to_unencrypted_reveals_nothing() -> None:
    """Clearing the 'encrypted' flag (CRC fixed) must not open into garbage or plaintext:
    the sealed pages refuse to be read as plain ones."""
    device = _built()
    image = bytearray(device.data)
    slot, sb = _newest_slot(image)
    _rewrite_superblock(image, slot, sb.with_(features=sb.features & ~FEATURE_ENCRYPTED))
    with pytest.raises(CorruptArchive), Archive.open_on(MemoryDevice(bytes(image)),
                                                        readonly=True) as archive:
        tree_state(archive)


@pytest.mark.parametrize("header", [
    {"kdf": KDF_ARGON2ID, "memory_kib": 0},
    {"kdf": KDF_ARGON2ID, "iterations": 0},
    {"kdf": KDF_ARGON2ID, "iterations": 0xFFFFFFFF},  # would spin for ages
    {"kdf": KDF_ARGON2ID, "lanes": 0},
    {"kdf": KDF_ARGON2ID, "memory_kib": 0xFFFFFFFF},  # 4 TiB
    {"kdf": KDF_SCRYPT, "log2_n": 0, "r": 8, "p": 1},
    {"kdf": KDF_SCRYPT, "log2_n": 200, "r": 8, "p": 1},
    {"kdf": KDF_SCRYPT, "log2_n": 40, "r": 8, "p": 1},
    {"kdf": KDF_SCRYPT, "log2_n": 10, "r": 0, "p": 1},
    {"kdf": 0},
    {"kdf": 99},
])
def test_tampered_kdf_parameters_are_a_clear_error(header: dict[str, int]) -> None:
    """Regression: the KDF runs before the superblock can be authenticated, and absurd
    stored parameters (CRC fixed) escaped as ValueError / OverflowError / MemoryError — or
    would have run for hours. They are refused as a corrupt superblock, before any KDF."""
    device = _built()
    image = bytearray(device.data)
    slot, sb = _newest_slot(image)
    tampered = replace(sb.key_header, **header)
    _rewrite_superblock(image, slot, sb.with_(key_header=tampered))
    with pytest.raises(CorruptArchive, match="superblock"):
        open_image(image)


def test_absurd_kdf_cost_is_refused_at_creation() -> None:
    for params in (KdfParams(iterations=0), KdfParams(kdf=KDF_SCRYPT, log2_n=40),
                   KdfParams(kdf=7)):
        with pytest.raises(InvalidArgument, match="key derivation"):
            Archive.create_on(MemoryDevice(), passphrase=PASS, kdf=params)


def test_older_superblock_slot_forged_newer_is_refused() -> None:
    device = _built()
    image = bytearray(device.data)
    slot, sb = _newest_slot(image)
    older = 1 - slot
    old_sb = decode_superblock(bytes(image[older * PAGE_SIZE:(older + 1) * PAGE_SIZE]),
                               slot=older)
    _rewrite_superblock(image, older, old_sb.with_(txid=TxnId(sb.txid + 1)))
    with pytest.raises(IntegrityError):
        open_image(image)


# ---- nothing readable without the key --------------------------------------------------------

SECRET_NAMES = ["Confidential-Merger-Plan", "salaries-2031", "Ünïcödé-Secret-Dir"]
SECRET_TEXT = b"TOPSECRET-PAYLOAD-" * 2000  # very compressible
SECRET_SIZE = 1234567
SECRET_XATTR_NAME = "user.classified-label"
SECRET_XATTR_VALUE = b"eyes-only-xattr-value"
SECRET_LINK_TARGET = "/vault/hidden-link-target"


def _fill_secrets(archive: Archive) -> None:
    directory = f"/{SECRET_NAMES[2]}"
    archive.make_dir(directory)
    archive.write_file(f"{directory}/{SECRET_NAMES[0]}.txt", SECRET_TEXT)
    archive.write_file(f"/{SECRET_NAMES[1]}.bin", b"x")
    archive.truncate(archive.resolve(f"/{SECRET_NAMES[1]}.bin").ino, SECRET_SIZE)
    ino = archive.resolve(f"{directory}/{SECRET_NAMES[0]}.txt").ino
    archive.setxattr(ino, SECRET_XATTR_NAME, SECRET_XATTR_VALUE)
    archive.setxattr(ino, "user.big-one", SECRET_XATTR_VALUE * 100)
    archive.make_symlink(SECRET_LINK_TARGET, "/innocent-link")
    archive.iam.add_user("secret-agent-user")
    archive.iam.put_policy("secret-policy-name", POLICY)


def _needles() -> list[bytes]:
    names = [n.encode() for n in SECRET_NAMES]
    return [*names, b"TOPSECRET-PAYLOAD", SECRET_XATTR_NAME.encode(), SECRET_XATTR_VALUE,
            SECRET_LINK_TARGET.encode(), b"secret-agent-user", b"secret-policy-name",
            b"home/${aws:username}", b"Quarterly secrets", struct.pack("<Q", SECRET_SIZE),
            PASS.encode()]


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_nothing_readable_without_the_key(tmp_path: Path, compression: str) -> None:
    plain, sealed = tmp_path / "plain.cart", tmp_path / "sealed.cart"
    for path, passphrase in ((plain, None), (sealed, PASS)):
        with Archive.create(path, passphrase=passphrase, kdf=CHEAP, title="Quarterly secrets",
                            compression=compression) as archive:
            _fill_secrets(archive)
            archive.create_snapshot("snap")
    plain_bytes, sealed_bytes = plain.read_bytes(), sealed.read_bytes()
    needles = _needles()
    # The control proves the search works: the plain archive shows (nearly) all of them.
    assert sum(n in plain_bytes for n in needles[:-1]) >= len(needles) - 3
    leaked = [n for n in needles if n in sealed_bytes]
    assert not leaked, leaked
    with Archive.open(sealed, passphrase=PASS, readonly=True) as archive:
        assert archive.read_file(f"/{SECRET_NAMES[2]}/{SECRET_NAMES[0]}.txt") == SECRET_TEXT


def test_frozen_copy_stays_sealed(tmp_path: Path) -> None:
    with Archive.create(tmp_path / "a.cart", passphrase=PASS, kdf=CHEAP) as archive:
        _fill_secrets(archive)
        archive.freeze(tmp_path / "frozen.cart")
    frozen = (tmp_path / "frozen.cart").read_bytes()
    assert not [n for n in _needles() if n in frozen]
    with pytest.raises(PassphraseRequired):
        Archive.open(tmp_path / "frozen.cart", readonly=True)
    with Archive.open(tmp_path / "frozen.cart", readonly=True, passphrase=PASS) as archive:
        assert archive.read_file(f"/{SECRET_NAMES[2]}/{SECRET_NAMES[0]}.txt") == SECRET_TEXT


# ---- passphrases -----------------------------------------------------------------------------


class RecordingDevice(MemoryDevice):
    """A memory device that remembers which byte ranges were read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def pread(self, size: int, offset: int) -> bytes:
        self.reads.append((offset, size))
        return super().pread(size, offset)


@pytest.mark.parametrize(("passphrase", "error"), [
    (None, PassphraseRequired), ("wrong", WrongPassphrase), ("", WrongPassphrase),
    (PASS + " ", WrongPassphrase), (PASS.encode() + b"\0", WrongPassphrase),
])
def test_wrong_or_missing_passphrase_reads_nothing(passphrase: str | bytes | None,
                                                   error: type[CartError]) -> None:
    device = RecordingDevice(bytes(_built().data))
    with pytest.raises(error) as info:
        Archive.open_on(device, passphrase=passphrase)
    assert str(info.value).startswith(("wrong passphrase", "archive is encrypted"))
    assert device.reads and all(offset + size <= 2 * PAGE_SIZE
                                for offset, size in device.reads), device.reads


def test_passphrase_as_bytes_or_text() -> None:
    device = _built()
    with Archive.open_on(MemoryDevice(bytes(device.data)), passphrase=PASS.encode()) as a:
        assert len(a.read_file("/a.bin")) == 3 * 4096


def test_kdf_parameters_are_stored_in_the_superblock(tmp_path: Path) -> None:
    params = {
        KDF_ARGON2ID: KdfParams(kdf=KDF_ARGON2ID, memory_kib=2048, iterations=2, lanes=2),
        KDF_SCRYPT: KdfParams(kdf=KDF_SCRYPT, log2_n=11, r=4, p=2),
    }
    for kdf, param in params.items():
        path = tmp_path / f"kdf{kdf}.cart"
        with Archive.create(path, passphrase=PASS, kdf=param) as archive:
            archive.write_file("/x", b"payload")
        header = decode_superblock(path.read_bytes()[:PAGE_SIZE], slot=0).key_header
        assert header.kdf == kdf
        if kdf == KDF_ARGON2ID:
            assert (header.memory_kib, header.iterations, header.lanes) == (2048, 2, 2)
        else:
            assert (header.log2_n, header.r, header.p) == (11, 4, 2)
        assert len(set(header.salt)) > 4  # random, not a constant
        with Archive.open(path, passphrase=PASS, readonly=True) as archive:
            assert archive.read_file("/x") == b"payload"


def _sealed_pages(image: bytes | bytearray, passphrase: str) -> dict[int, bytes]:
    """Every page that is not a superblock nor allocator state, with its bytes."""
    with open_image(image, passphrase=passphrase) as archive:
        checker = Checker(archive)
        checker.run()
        owner = dict(checker.pages.owner)
    return {p: bytes(image[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]) for p, (what, _) in owner.items()
            if what not in ("superblock", "allocator state", FREE)}


def test_change_passphrase_rewrites_only_the_header() -> None:
    device = _built()
    before = bytes(device.data)
    with open_image(before) as archive:
        expected = tree_state(archive)
    new_kdf = KdfParams(kdf=KDF_SCRYPT, log2_n=10, r=8, p=1)
    with Archive.open_on(device, passphrase=PASS) as archive:
        archive.change_passphrase("a new passphrase", new_kdf)
    after = bytes(device.data)

    with pytest.raises(WrongPassphrase):
        open_image(after)
    with open_image(after, passphrase="a new passphrase") as archive:
        assert tree_state(archive) == expected
        assert fsck(archive).ok
    for slot in (0, 1):
        sb = decode_superblock(after[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE], slot=slot)
        assert sb.key_header.kdf == KDF_SCRYPT
        with pytest.raises(WrongPassphrase):
            unwrap(sb.key_header, PASS, sb.uuid)
        unwrap(sb.key_header, "a new passphrase", sb.uuid)
    # No node page or chunk moved or changed; only superblocks and allocator state did.
    assert _sealed_pages(before, PASS) == _sealed_pages(after, "a new passphrase")
    # A copy taken before the change still opens with the old passphrase (documented).
    with open_image(before) as archive:
        assert tree_state(archive) == expected


def test_change_passphrase_refusals(tmp_path: Path) -> None:
    device = _built()
    with open_image(device.data) as archive, pytest.raises(ReadOnly):
        archive.change_passphrase("x", CHEAP)
    with Archive.create(tmp_path / "plain.cart") as archive, pytest.raises(InvalidArgument):
        archive.change_passphrase("x", CHEAP)


def test_superblock_header_layout_is_stable() -> None:
    """The fields the sweep's skip rule relies on: body, CRC, then zero padding."""
    device = _built()
    page = bytes(device.data[:PAGE_SIZE])
    assert SUPER_HEAD.size + 2 * 16 + 2 * 24 + 128 + 32 == SUPER_CHECKSUM_OFFSET
    assert page[SUPER_CHECKSUM_OFFSET + 4:] == bytes(PAGE_SIZE - SUPER_CHECKSUM_OFFSET - 4)
    assert struct.unpack_from("<I", page, SUPER_CHECKSUM_OFFSET)[0] == crc32(
        page[:SUPER_BODY_SIZE])

