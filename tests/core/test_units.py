"""Unit tests for the smaller core modules: codec, keys, pager, filedata, namespace rules and
path helpers. Each test names the behaviour it guards; the big machines (model, crash, power
loss) cover how these parts work together."""

from __future__ import annotations

import os
import random

import pytest

from cartfs.core import errors as E
from cartfs.core.archive import Archive
from cartfs.core.cache import ARCCache
from cartfs.core.codec import Sealer, compress, decompress
from cartfs.core.device import MemoryDevice
from cartfs.core.format import (
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_ZSTD,
    FIRST_DATA_PAGE,
    PAGE_SIZE,
    PageHeader,
    PageNo,
    TxnId,
)
from cartfs.core.keys import KDF_SCRYPT, KdfParams, new_key_header, unwrap, wrap
from cartfs.core.pager import Pager
from cartfs.core.paths import TooManySymlinks

# ---- codec -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_LZ4, CODEC_ZSTD])
@pytest.mark.parametrize("size", [0, 1, 700, 4096, 65536])
def test_compress_round_trip(codec: int, size: int) -> None:
    data = (b"abcdefgh" * (size // 8 + 1))[:size]
    used, stored = compress(data, codec)
    assert decompress(used, stored, len(data)) == data


def test_compression_kept_only_when_it_saves_a_page() -> None:
    rng = random.Random(1)
    noise = rng.randbytes(65536)
    assert compress(noise, CODEC_LZ4)[0] == CODEC_NONE, "incompressible data is stored raw"
    assert compress(b"a" * 65536, CODEC_LZ4)[0] == CODEC_LZ4
    almost = b"a" * 300 + rng.randbytes(3796)  # 4096 bytes that compress by < one page
    assert compress(almost, CODEC_ZSTD)[0] == CODEC_NONE
    assert compress(almost, CODEC_ZSTD, inline=True)[0] == CODEC_ZSTD


@pytest.mark.parametrize("codec", [CODEC_LZ4, CODEC_ZSTD])
def test_decompress_rejects_garbage_and_wrong_lengths(codec: int) -> None:
    _, stored = compress(b"hello world " * 500, codec)
    with pytest.raises(E.CorruptArchive):
        decompress(codec, stored, 12 * 500 + 1)
    with pytest.raises(E.CorruptArchive):
        decompress(codec, b"\xff" * 64, 6000)
    with pytest.raises(E.CorruptArchive):
        decompress(99, stored, 6000)


def test_sealer_binds_associated_data() -> None:
    uuid = os.urandom(16)
    sealer = Sealer(os.urandom(32), uuid)
    sealed = sealer.seal(b"secret", b"place-1")
    assert sealer.open(sealed, b"place-1", page=1, kind="x") == b"secret"
    with pytest.raises(E.IntegrityError):
        sealer.open(sealed, b"place-2", page=1, kind="x")
    with pytest.raises(E.IntegrityError):
        Sealer(os.urandom(32), uuid).open(sealed, b"place-1", page=1, kind="x")
    with pytest.raises(E.IntegrityError):
        sealer.open(sealed[:10], b"place-1", page=1, kind="x")
    assert sealer.seal(b"secret", b"p") != sealer.seal(b"secret", b"p"), "nonces repeat"


# ---- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [KdfParams.cheap(), KdfParams(kdf=KDF_SCRYPT, log2_n=10)])
def test_key_wrapping(params: KdfParams) -> None:
    uuid = os.urandom(16)
    header, key = new_key_header("pass", uuid, params)
    assert unwrap(header, "pass", uuid) == key
    assert unwrap(header, b"pass", uuid) == key
    with pytest.raises(E.WrongPassphrase):
        unwrap(header, "Pass", uuid)
    with pytest.raises(E.WrongPassphrase):
        unwrap(header, "pass", os.urandom(16))  # bound to the archive's uuid
    rewrapped = wrap(key, "new", uuid, params)
    assert unwrap(rewrapped, "new", uuid) == key
    assert rewrapped.salt != header.salt


# ---- pager --------------------------------------------------------------------------------


def _pager() -> Pager:
    device = MemoryDevice()
    device.resize(10 * PAGE_SIZE)
    return Pager(device, ARCCache(0))


def test_pager_detects_misdirected_and_stale_node_writes() -> None:
    pager = _pager()
    pager.write_node(PageHeader(1, 0, 1, 0, PageNo(3), TxnId(5), 0, 1), b"\0\1\0\0kv")
    assert pager.read_node(PageNo(3), TxnId(5))[0].page == 3
    raw = pager.device.pread(PAGE_SIZE, 3 * PAGE_SIZE)
    pager.device.pwrite(raw, 4 * PAGE_SIZE)  # the same page, landed at the wrong place
    with pytest.raises(E.CorruptArchive, match="misdirected") as info:
        pager.read_node(PageNo(4), TxnId(5))
    assert info.value.page == 4
    with pytest.raises(E.CorruptArchive, match="stale"):
        pager.read_node(PageNo(3), TxnId(6))


def test_pager_extents_are_checked() -> None:
    pager = _pager()
    ref = pager.write_blob(PageNo(5), TxnId(2), b"owner", b"x" * 5000)
    assert pager.read_blob(ref, b"owner", kind="blob") == b"x" * 5000
    pager.device.pwrite(b"y", 5 * PAGE_SIZE + 4999)
    with pytest.raises(E.CorruptArchive) as info:
        pager.read_blob(ref, b"owner", kind="blob")
    assert info.value.page == 5
    pager.device.resize(6 * PAGE_SIZE)
    with pytest.raises(E.CorruptArchive, match="cut short"):
        pager.read_blob(ref, b"owner", kind="blob")


# ---- file data ------------------------------------------------------------------------------


def _archive(**kwargs: object) -> Archive:
    return Archive.create_on(MemoryDevice(), chunk_size=4096, **kwargs)  # type: ignore[arg-type]


def test_sparse_files_store_no_holes() -> None:
    archive = _archive()
    ino = archive.create_file(archive.root_ino, "sparse").ino
    archive.write(ino, 100 * 4096, b"end")
    archive.write(ino, 0, bytes(3 * 4096))  # zeros written explicitly are holes too
    archive.sync()
    assert archive._chunks.chunk_numbers(ino) == [100]
    assert archive.read(ino, 0, 8192) == bytes(8192)
    assert archive.read(ino, 100 * 4096 - 2, 10) == b"\0\0end"
    assert archive.getattr(ino).size == 100 * 4096 + 3


def test_small_files_are_inline_large_ones_are_extents() -> None:
    archive = _archive()
    small = archive.write_file("/small", b"s" * 100).ino
    big = archive.write_file("/big", os.urandom(3 * 4096 + 1)).ino
    archive.sync()
    assert archive._chunks.pointer(small, 0).inline_data is not None  # type: ignore[union-attr]
    pointers = [archive._chunks.pointer(big, n) for n in range(4)]
    assert all(p is not None and p.inline_data is None for p in pointers[:3])
    assert archive.read_file("/big")[-1:] == archive.read(big, 3 * 4096, 1)


def test_truncate_then_extend_reads_zeros() -> None:
    archive = _archive()
    ino = archive.write_file("/f", b"x" * 10000).ino
    archive.sync()
    archive.truncate(ino, 5000)
    archive.truncate(ino, 10000)
    assert archive.read(ino, 0, 10000) == b"x" * 5000 + bytes(5000)
    archive.sync()
    archive.write(ino, 12000, b"y")
    assert archive.read(ino, 4990, 7100) == b"x" * 10 + bytes(7000) + b"y"


def test_overwrite_in_place_keeps_other_chunks() -> None:
    archive = _archive(compression="none")
    data = bytearray(os.urandom(5 * 4096))
    ino = archive.write_file("/f", bytes(data)).ino
    archive.sync()
    archive.write(ino, 4096 + 10, b"PATCH")
    data[4096 + 10:4096 + 15] = b"PATCH"
    archive.sync()
    assert archive.read_file("/f") == bytes(data)


# ---- namespace rules --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "error"), [
    (b"", E.InvalidArgument), (b"a/b", E.InvalidArgument), (b"a\0b", E.InvalidArgument),
    (b"x" * 256, E.NameTooLong), (b".", E.AlreadyExists), (b"..", E.AlreadyExists),
])
def test_invalid_names(name: bytes, error: type[E.CartError]) -> None:
    archive = _archive()
    with pytest.raises(error):
        archive.mkdir(archive.root_ino, name)
    archive.mkdir(archive.root_ino, b"x" * 255)


def test_dot_and_dotdot_lookups_and_unremovable() -> None:
    archive = _archive()
    sub = archive.make_dir("/a/b", parents=True)
    assert archive.lookup(sub.ino, ".").ino == sub.ino
    assert archive.lookup(sub.ino, "..").ino == archive.resolve("/a").ino
    assert archive.lookup(archive.root_ino, "..").ino == archive.root_ino
    with pytest.raises(E.InvalidArgument):
        archive.rmdir(sub.ino, ".")
    with pytest.raises(E.DirectoryNotEmpty):
        archive.rmdir(sub.ino, "..")
    with pytest.raises(E.InvalidArgument):
        archive.rename(sub.ino, ".", archive.root_ino, "x")


def test_hard_link_to_directory_is_refused() -> None:
    archive = _archive()
    sub = archive.make_dir("/d")
    with pytest.raises(E.NotPermitted):
        archive.link(sub.ino, archive.root_ino, "d2")


def test_sgid_directory_passes_group_on() -> None:
    archive = _archive()
    parent = archive.mkdir(archive.root_ino, "shared", 0o2775, gid=4242)
    child = archive.mkdir(parent.ino, "child", 0o755, gid=1)
    file = archive.create_file(parent.ino, "f", 0o644, gid=1)
    assert child.gid == 4242 and child.mode & 0o2000
    assert file.gid == 4242 and not file.mode & 0o2000


def test_read_only_archive_refuses_changes() -> None:
    device = MemoryDevice()
    Archive.create_on(device).close()
    archive = Archive.open_on(device, readonly=True)
    with pytest.raises(E.ReadOnly):
        archive.mkdir(archive.root_ino, "x")
    with pytest.raises(E.ReadOnly):
        archive.setattr(archive.root_ino, mode=0o700)
    archive.close()
    with pytest.raises(E.ArchiveClosed):
        archive.getattr(archive.root_ino)


# ---- path helpers -------------------------------------------------------------------------


def test_paths_follow_symlinks_and_detect_loops() -> None:
    archive = _archive()
    archive.write_file("/real/file", b"data", parents=True)
    archive.make_symlink("real", "/alias")
    archive.make_symlink("/alias/file", "/abs")
    archive.make_symlink("../real/file", "/real/../rel")
    assert archive.read_file("/alias/file") == b"data"
    assert archive.read_file("/abs") == b"data"
    assert archive.lstat("/abs").is_symlink
    archive.make_symlink("loop2", "/loop1")
    archive.make_symlink("loop1", "/loop2")
    with pytest.raises(TooManySymlinks) as info:
        archive.read_file("/loop1")
    assert info.value.errno == 40
    with pytest.raises(E.NotADirectory):
        archive.resolve("/real/file/x")
    with pytest.raises(E.NotFound):
        archive.resolve("/nope/x")


def test_make_dir_parents_and_remove_recursive() -> None:
    archive = _archive()
    archive.make_dir("/x/y/z", parents=True)
    archive.make_dir("/x/y", parents=True, exist_ok=True)
    with pytest.raises(E.AlreadyExists):
        archive.make_dir("/x/y")
    archive.write_file("/x/y/z/f", b"1")
    with pytest.raises(E.DirectoryNotEmpty):
        archive.remove("/x")
    archive.remove("/x", recursive=True)
    assert archive.listdir("/") == []
    assert archive.getattr(archive.root_ino).nlink == 2
    assert archive.statistics().allocator.total_pages >= FIRST_DATA_PAGE
