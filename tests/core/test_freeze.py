"""Freeze: a packed, read-only, signed copy that holds every path exactly, and a verify
that notices any change to any byte.

The first implementation's freeze was unsigned and silently dropped paths. Here the copy is
compared with the source path by path (whole inode records — modes, owners, all times, inode
numbers, so hard links too — contents, symlink targets, xattrs), and single bytes are flipped
all over the frozen file, superblocks and signature page included.

What the signature covers: the content hash is SHA-256 over the superblock as written
(authentication tag included; its signature reference carries no CRC of the record) and
every page from 2 up to the signature page. The bytes outside the hash — the other
superblock slot, the signature record, the padding after it, the file's length — are
checked by ``verify`` against what the hashed superblock implies. (Archives signed the v1
way, with the tag and the reference zeroed in the hash, still verify: tests/data/frozen-v1.)
So there is no byte whose change goes unnoticed, not even in a superblock copy the reader
would not use (a reader falls back to the other slot, and the test shows the archive still
opens identically — but ``verify`` says the file is no longer what was signed).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import select
import shutil
import signal
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cartfs.core import freeze as freeze_module
from cartfs.core.archive import (
    Archive,
    OpenOptions,
    keygen,
    load_private_key,
    load_public_key,
    verify_signature,
)
from cartfs.core.cache import ARCCache
from cartfs.core.device import FileDevice
from cartfs.core.errors import (
    CartError,
    IntegrityError,
    InvalidArgument,
    NotAnArchive,
    NotFound,
    PassphraseRequired,
    ReadOnly,
    SignatureError,
)
from cartfs.core.format import PAGE_SIZE, BlobRef, PageNo, encode_superblock
from cartfs.core.keys import KdfParams
from cartfs.core.pager import Pager

from .test_snapshots import NEVER, State, assert_fsck, build_rich_tree, churn, full_state


def frozen_state(path: Path, passphrase: str | None = None) -> State:
    with Archive.open(path, readonly=True, passphrase=passphrase) as archive:
        return full_state(archive)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, State]:
    """(source, frozen copy signed with keys/k, the source's state)."""
    folder = tmp_path_factory.mktemp("freeze")
    keygen(str(folder / "k"))
    src = folder / "src.cart"
    with Archive.create(src, chunk_size=4096, options=NEVER, title="frozen test") as archive:
        build_rich_tree(archive)
        churn(archive, random.Random(2), 60)
        archive.create_snapshot("snap")
        churn(archive, random.Random(3), 60)
        state = full_state(archive)
        archive.freeze(folder / "frozen.cart", key=load_private_key(str(folder / "k")))
    return src, folder / "frozen.cart", state


def test_frozen_copy_holds_every_path_exactly(frozen: tuple[Path, Path, State]) -> None:
    src, dest, state = frozen
    assert frozen_state(dest) == state
    with Archive.open(dest, readonly=True) as archive:
        assert archive.superblock.frozen
        assert archive.list_snapshots() == []  # a frozen archive carries no snapshots
        assert archive.manifest()["title"] == "frozen test"
        stats = archive.statistics().allocator
        assert (stats.free_pages, stats.pending_pages, stats.dead_pages) == (0, 0, 0)
        assert stats.used_pages == stats.total_pages - 2
        assert os.path.getsize(dest) == stats.total_pages * PAGE_SIZE
        assert_fsck(archive, "frozen")
    with Archive.open(src, readonly=True) as source:
        assert source.statistics().allocator.total_pages > stats.total_pages


def test_frozen_archive_opens_read_only_only(frozen: tuple[Path, Path, State]) -> None:
    dest = frozen[1]
    with pytest.raises(ReadOnly):
        Archive.open(dest)
    with Archive.open(dest, readonly=True) as archive:
        with pytest.raises(ReadOnly):
            archive.write_file("/x", b"no")
        for call in (archive.create_snapshot, archive.delete_snapshot):
            with pytest.raises(ReadOnly):
                call("snap")
        with pytest.raises(ReadOnly):
            archive.vacuum()


def test_verify_checks_the_signer(frozen: tuple[Path, Path, State], tmp_path: Path) -> None:
    dest, keys = frozen[1], frozen[1].parent
    result = verify_signature(str(dest), expected_key=load_public_key(str(keys / "k.pub")))
    assert result.pages * PAGE_SIZE == os.path.getsize(dest)
    keygen(str(tmp_path / "other"))
    with pytest.raises(SignatureError, match="different key"):
        verify_signature(str(dest), expected_key=load_public_key(str(tmp_path / "other.pub")))
    with pytest.raises(NotAnArchive, match="not a frozen archive"):
        verify_signature(str(frozen[0]))


def _flip(image: bytes, offset: int, rng: random.Random) -> bytes:
    damaged = bytearray(image)
    damaged[offset] ^= rng.randrange(1, 256)
    return bytes(damaged)


def test_any_changed_byte_fails_verify(frozen: tuple[Path, Path, State],
                                       tmp_path: Path) -> None:
    dest = frozen[1]
    image = dest.read_bytes()
    rng = random.Random(4)
    pages = len(image) // PAGE_SIZE
    sig = (pages - 1) * PAGE_SIZE
    special = [0, 8, 40, 88, 150, 200, 300, 327, 328, 331, 332, 1000, 4095,  # superblock 0
               4096, 4096 + 144, 4096 + 329, 4096 + 400, 8191,  # superblock 1
               8192, sig - 1, sig, sig + 10, sig + 50, sig + 100, sig + 143, sig + 144,
               sig + 2000, len(image) - 1]
    offsets = special + [rng.randrange(len(image)) for _ in range(200 - len(special))]
    work = tmp_path / "damaged.cart"
    for offset in offsets:
        work.write_bytes(_flip(image, offset, rng))
        with pytest.raises(SignatureError):
            verify_signature(str(work))
    # A damaged superblock copy: the reader uses the other copy and sees the same archive,
    # but the file is no longer what was signed (shown above), so verify refuses it.
    for offset in (100, 4096 + 100):
        work.write_bytes(_flip(image, offset, rng))
        assert frozen_state(work) == frozen[2]
    for changed in (image + b"\0", image[:-1]):  # appended or cut: also a change
        work.write_bytes(changed)
        with pytest.raises(SignatureError):
            verify_signature(str(work))
    work.write_bytes(image)
    verify_signature(str(work))  # and the untouched copy still verifies


def test_freeze_of_an_encrypted_archive(tmp_path: Path) -> None:
    src, dest = tmp_path / "enc.cart", tmp_path / "enc-frozen.cart"
    with Archive.create(src, passphrase="pw", kdf=KdfParams.cheap(), chunk_size=4096,
                        options=NEVER) as archive:
        build_rich_tree(archive)
        state = full_state(archive)
        archive.freeze(dest)
    verify_signature(str(dest))  # no passphrase needed
    with pytest.raises(PassphraseRequired):
        Archive.open(dest, readonly=True)
    assert frozen_state(dest, "pw") == state
    with Archive.open(dest, readonly=True, passphrase="pw") as archive:
        assert archive.superblock.encrypted
        assert_fsck(archive, "encrypted frozen")
    assert b"compressible line" not in dest.read_bytes()


def _rewrite_superblocks(path: Path, **changes: Any) -> None:
    """Change superblock fields in both slots, with a valid checksum (what a deliberate
    edit does, unlike a flipped byte)."""
    device = FileDevice(str(path), writable=True)
    try:
        sb = Pager(device, ARCCache(0)).read_superblocks()[0]
        raw = encode_superblock(sb.with_(**changes))
        device.pwrite(raw, 0)
        device.pwrite(raw, PAGE_SIZE)
        device.sync()
    finally:
        device.close()


def test_the_signature_covers_the_authentication_tag(tmp_path: Path) -> None:
    """Regression: the content hash left the superblock's authentication tag out (it is
    computed over the signature reference), so rewriting the tag in both slots with a valid
    checksum passed verify — and the archive no longer opened. The signature now covers
    the superblock as written; the reference carries no CRC of the record instead."""
    src, dest = tmp_path / "enc.cart", tmp_path / "enc-frozen.cart"
    with Archive.create(src, passphrase="pw", kdf=KdfParams.cheap(), options=NEVER) as a:
        a.write_file("/secret", b"s" * 10_000)
        a.freeze(dest)
    result = verify_signature(str(dest))
    assert result.definition == 2 and result.encrypted and result.complete
    with Archive.open(dest, readonly=True, passphrase="pw") as archive:
        assert archive.superblock.signature.checksum == 0
    image = dest.read_bytes()
    tampered = tmp_path / "tampered.cart"
    for changes in ({"auth_tag": bytes(range(32))}, {"committed_ns": 1},
                    {"signature": BlobRef(PageNo(len(image) // PAGE_SIZE - 1),
                                          archive.superblock.txid, 144, 12345)}):
        tampered.write_bytes(image)
        _rewrite_superblocks(tampered, **changes)
        with pytest.raises(SignatureError):
            verify_signature(str(tampered))
    tampered.write_bytes(image)
    _rewrite_superblocks(tampered, auth_tag=bytes(range(32)))
    with pytest.raises(IntegrityError):  # what the signature now protects against
        Archive.open(tampered, readonly=True, passphrase="pw")


FROZEN_V1 = Path(__file__).resolve().parent.parent / "data" / "frozen-v1"


def test_archives_signed_the_v1_way_still_verify(tmp_path: Path) -> None:
    """tests/data/frozen-v1 was frozen by cartfs before the v2 hash (make_frozen_v1.py):
    both still verify against their signer. The encrypted one's signature leaves the tag
    out, which the result says (``complete`` False): only the passphrase settles that."""
    signer = load_public_key(str(FROZEN_V1 / "signer.pub"))
    plain = verify_signature(str(FROZEN_V1 / "plain.cart"), expected_key=signer)
    assert plain.definition == 1 and plain.complete
    encrypted = verify_signature(str(FROZEN_V1 / "encrypted.cart"), expected_key=signer)
    assert encrypted.definition == 1 and encrypted.encrypted and not encrypted.complete
    with Archive.open(FROZEN_V1 / "encrypted.cart", readonly=True,
                      passphrase="frozen v1") as archive:
        assert archive.read_file("/hello.txt") == b"hello, frozen v1\n"
        assert_fsck(archive, "v1 encrypted")
    with Archive.open(FROZEN_V1 / "plain.cart", readonly=True) as archive:
        assert archive.read_file("/dir/data.bin") == bytes(range(256)) * 40
    image = (FROZEN_V1 / "plain.cart").read_bytes()
    for offset in (100, 4096 + 100, 2 * PAGE_SIZE + 5, len(image) - PAGE_SIZE + 12,
                   len(image) - PAGE_SIZE + 60):
        damaged = bytearray(image)
        damaged[offset] ^= 1
        (tmp_path / "damaged.cart").write_bytes(bytes(damaged))
        with pytest.raises(SignatureError):
            verify_signature(str(tmp_path / "damaged.cart"))


def test_freeze_of_a_snapshot(tmp_path: Path) -> None:
    src, dest = tmp_path / "a.cart", tmp_path / "snap.cart"
    with Archive.create(src, chunk_size=4096, options=NEVER) as archive:
        build_rich_tree(archive)
        archive.create_snapshot("s")
        snap = full_state(archive.snapshot("s"))
        archive.remove("/docs", recursive=True)
        archive.write_file("/later", b"not in the snapshot")
        archive.freeze(dest, snapshot="s")
        with pytest.raises(NotFound):
            archive.freeze(tmp_path / "x.cart", snapshot="missing")
    assert frozen_state(dest) == snap
    verify_signature(str(dest))
    assert not (tmp_path / "x.cart").exists()


def _catalog_keys(archive: Archive) -> list[bytes]:
    return [bytes(k) for k, _ in archive._catalog.items()]


def test_freeze_leaves_out_files_unlinked_while_open(tmp_path: Path) -> None:
    """Regression: an orphan (unlinked while open, or left so by a crash) was copied into
    the frozen archive with all its data, where no writable open would ever delete it.
    The copy of the live tree, of a snapshot taken while the orphan existed, and of an
    archive a crash left with orphans all hold exactly the named tree, packed."""
    src = tmp_path / "a.cart"
    rng = random.Random(8)
    with Archive.create(src, chunk_size=4096, options=NEVER) as archive:
        build_rich_tree(archive)
        clean = tmp_path / "clean.cart"
        archive.freeze(clean)
        opened = archive.write_file("/open-then-unlinked", rng.randbytes(300_000))
        archive.setxattr(opened.ino, "user.big", rng.randbytes(5000))  # a blob extent too
        archive.pin(opened.ino)
        archive.remove("/open-then-unlinked")
        anonymous = archive.create_unlinked()  # O_TMPFILE-like: never had a name
        archive.write(anonymous.ino, 0, rng.randbytes(200_000))
        archive.sync()
        state = full_state(archive)  # what has names: the orphans are not in it
        archive.create_snapshot("with-orphans")
        assert archive.read(opened.ino, 0, 10)  # still readable: it is open
        archive.freeze(tmp_path / "live.cart")
        archive.freeze(tmp_path / "snap.cart", snapshot="with-orphans")
        shutil.copyfile(src, tmp_path / "crashed.cart")  # the file as a crash leaves it
        archive.unpin(opened.ino)
    with Archive.open(tmp_path / "crashed.cart", readonly=True) as crashed:
        assert any(k[:9] == bytes(8) + b"\x10" for k in _catalog_keys(crashed))
        crashed.freeze(tmp_path / "from-crash.cart")
    clean_pages = os.path.getsize(clean) // PAGE_SIZE
    for name in ("live.cart", "snap.cart", "from-crash.cart"):
        dest = tmp_path / name
        verify_signature(str(dest))
        with Archive.open(dest, readonly=True) as frozen:
            assert full_state(frozen) == state, name
            keys = _catalog_keys(frozen)
            for ino in (opened.ino, anonymous.ino):
                assert not any(k[:8] == ino.to_bytes(8, "big") for k in keys), name
                with pytest.raises(NotFound):
                    frozen.getattr(ino)
            assert not any(k[:9] == bytes(8) + b"\x10" for k in keys), name  # orphan marks
            assert_fsck(frozen, name)
        # packed: about the size of a freeze made before the orphans existed (the frozen
        # tree's nodes may differ by a few), nowhere near the orphans' 500 kB
        assert os.path.getsize(dest) // PAGE_SIZE <= clean_pages + 4, name


def test_freeze_drops_whole_leaves_of_orphans(tmp_path: Path) -> None:
    """Hundreds of orphans: whole leaves hold nothing but orphan records (the first leaf
    of the tree, too: orphan marks sort before the root inode), so the copy drops nodes
    and re-keys branches; it must still be a valid, packed tree."""
    src = tmp_path / "a.cart"
    with Archive.create(src, chunk_size=4096, options=NEVER) as archive:
        for i in range(40):
            archive.write_file(f"/named/{i}", b"n" * (i * 50), parents=True)
        clean = tmp_path / "clean.cart"
        archive.freeze(clean)
        for i in range(600):
            orphan = archive.create_unlinked()
            archive.write(orphan.ino, 0, b"o" * (i % 7 * 3000))
        archive.write_file("/named/last", b"after the orphans")
        archive.sync()
        state = full_state(archive)
        archive.freeze(tmp_path / "frozen.cart")
    dest = tmp_path / "frozen.cart"
    verify_signature(str(dest))
    with Archive.open(dest, readonly=True) as frozen:
        assert full_state(frozen) == state
        assert_fsck(frozen, "frozen without 600 orphans")
        assert frozen.statistics().allocator.used_pages < \
            os.path.getsize(clean) // PAGE_SIZE + 4
        assert frozen.read_file("/named/last") == b"after the orphans"


def test_freeze_of_an_archive_larger_than_the_cache(tmp_path: Path) -> None:
    """A 64 KiB cache and a 16 MB archive: freeze streams — its memory peak is a few MiB
    of buffers (hashing reads 1 MiB at a time) and its memo of moved extents, not the
    data — and the copy is exact."""
    src, dest = tmp_path / "big.cart", tmp_path / "big-frozen.cart"
    rng = random.Random(6)
    with Archive.create(src, chunk_size=65536, options=NEVER) as archive:
        for i in range(64):
            archive.write_file(f"/d{i % 4}/f{i}", rng.randbytes(256 * 1024), parents=True)
    size = os.path.getsize(src)
    small_cache = OpenOptions(cache_bytes=64 * 1024)
    with Archive.open(src, readonly=True, options=small_cache) as archive:
        expected = full_state(archive)
        seen: list[tuple[int, int]] = []
        tracemalloc.start()
        try:
            archive.freeze(dest, progress=lambda done, total: seen.append((done, total)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert size > 16 * 2**20 and peak < 4 * 2**20, f"freeze peak {peak} B, archive {size} B"
    assert seen and seen[-1][0] == seen[-1][1]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert frozen_state(dest) == expected
    verify_signature(str(dest))


def test_freezing_a_frozen_archive_and_refusing_to_overwrite(frozen: tuple[Path, Path, State],
                                                             tmp_path: Path) -> None:
    dest = frozen[1]
    again = tmp_path / "again.cart"
    key = Ed25519PrivateKey.generate()
    with Archive.open(dest, readonly=True) as archive:
        result = archive.freeze(again, key=key)
        with pytest.raises(CartError, match="already exists"):
            archive.freeze(again)
    assert frozen_state(again) == frozen[2]
    assert verify_signature(str(again)).public_key == result.public_key
    assert [p.name for p in tmp_path.iterdir()] == ["again.cart"]  # no temporary left


def _freeze_child(src: Path, dest: Path, *, tmpfile: bool) -> tuple[int, int]:
    """Fork a freeze of ``src`` that reports its progress on a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        try:
            os.close(read_end)
            freeze_module._TMPFILE = tmpfile
            with Archive.open(src, readonly=True, options=OpenOptions(cache_bytes=0)) as a:
                a.freeze(dest, progress=lambda done, total: os.write(
                    write_end, f"{done} {total}\n".encode()))
            os.write(write_end, b"done\n")
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _kill_halfway(pid: int, fd: int) -> None:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        chunk = os.read(fd, 65536) if ready else b""
        assert chunk, "the freeze ended or hung before it was halfway"
        data += chunk
        last = data.rsplit(b"\n", 2)[-2] if data.count(b"\n") else b""
        assert last != b"done", "the freeze finished before it was halfway"
        if last:
            done, total = map(int, last.split())
            if done * 2 >= total:
                break
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("killed") / "src.cart"
    rng = random.Random(12)
    with Archive.create(src, chunk_size=65536, compression="none", options=NEVER) as archive:
        for i in range(160):
            archive.write_file(f"/f{i}", rng.randbytes(256 * 1024))
    return src


def test_a_killed_freeze_leaves_nothing_behind(big_source: Path, tmp_path: Path) -> None:
    """Regression: SIGKILL left DEST.freezing-PID for good. The output is an unnamed
    O_TMPFILE file, named only when complete: a kill leaves no file at all."""
    dest = tmp_path / "frozen.cart"
    pid, fd = _freeze_child(big_source, dest, tmpfile=True)
    _kill_halfway(pid, fd)
    assert os.listdir(tmp_path) == []
    with Archive.open(big_source, readonly=True) as archive:
        archive.freeze(dest)
    assert os.listdir(tmp_path) == ["frozen.cart"]
    verify_signature(str(dest))


def test_stale_named_temporaries_are_removed_by_the_next_freeze(big_source: Path,
                                                                tmp_path: Path) -> None:
    """Without O_TMPFILE the output is DEST.freezing-PID: a kill leaves it, and the next
    freeze to DEST removes it — but never one whose process still runs or holds it."""
    dest = tmp_path / "frozen.cart"
    pid, fd = _freeze_child(big_source, dest, tmpfile=False)
    _kill_halfway(pid, fd)
    assert os.listdir(tmp_path) == [f"frozen.cart.freezing-{pid}"]
    alive = tmp_path / f"frozen.cart.freezing-{os.getpid()}0"  # not a running pid: locked
    alive.write_bytes(b"")
    locked = os.open(alive, os.O_RDONLY)
    fcntl.flock(locked, fcntl.LOCK_SH)
    other = tmp_path / "other.cart.freezing-1"  # another destination's: not ours to remove
    other.write_bytes(b"")
    try:
        with Archive.open(big_source, readonly=True) as archive:
            freeze_module._TMPFILE = False
            try:
                archive.freeze(dest)
            finally:
                freeze_module._TMPFILE = True
    finally:
        os.close(locked)
    assert sorted(os.listdir(tmp_path)) == sorted(["frozen.cart", alive.name, other.name])
    verify_signature(str(dest))


def test_key_files(tmp_path: Path) -> None:
    key = str(tmp_path / "k")
    keygen(key)
    assert os.stat(key).st_mode & 0o777 == 0o600
    with pytest.raises(CartError, match="already exists"):
        keygen(key)
    with pytest.raises(InvalidArgument, match="not a PEM private key"):
        load_private_key(key + ".pub")
    with pytest.raises(InvalidArgument, match="not a PEM public key"):
        load_public_key(key)
    with pytest.raises(InvalidArgument):
        load_private_key(str(tmp_path / "missing"))
