"""What create accepts is what every later write can use: levels, manifest sizes, where the
file system has no hard links. A refused option changes nothing; a refused change loses
nothing already written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import InvalidArgument


@pytest.mark.parametrize(("codec", "level"), [
    ("zstd", 23), ("zstd", 1000), ("zstd", -200), ("lz4", 13), ("lz4", -1), ("none", 3),
])
def test_a_level_the_codec_cannot_use_is_refused_at_create(codec: str, level: int) -> None:
    with pytest.raises(InvalidArgument, match="compression level"):
        Archive.create_on(MemoryDevice(), compression=codec, level=level)


@pytest.mark.parametrize(("codec", "level"), [
    ("zstd", 22), ("zstd", -5), ("zstd", 0), ("lz4", 0), ("lz4", 9), ("lz4", 12),
])
def test_every_accepted_level_writes_and_reads_back(codec: str, level: int) -> None:
    text = b"".join(b"line %d of a compressible text\n" % i for i in range(20000))
    device = MemoryDevice()
    with Archive.create_on(device, compression=codec, level=level) as archive:
        archive.write_file("/t.txt", text)
    with Archive.open_on(device, readonly=True) as archive:
        assert archive.read_file("/t.txt") == text
        assert archive.statistics().allocator.used_pages * 4096 < len(text) // 2


def test_lz4_high_compression_levels_shrink_more() -> None:
    core = Path(__file__).parents[2] / "cartfs" / "core"
    text = b"".join(f.read_bytes() for f in sorted(core.glob("*.py")))
    used = {}
    for level in (0, 12):
        device = MemoryDevice()
        with Archive.create_on(device, compression="lz4", level=level,
                               chunk_size=1 << 20) as archive:
            archive.write_file("/t", text)
            archive.sync()
            used[level] = archive.statistics().allocator.used_pages
    assert used[12] < used[0]


def test_an_oversized_manifest_is_refused_and_loses_nothing() -> None:
    device = MemoryDevice()
    with pytest.raises(InvalidArgument, match="manifest too large"):
        Archive.create_on(MemoryDevice(), title="t" * 3000)
    with Archive.create_on(device, title="short") as archive:
        archive.write_file("/important.txt", b"keep me")
        with pytest.raises(InvalidArgument, match="manifest too large"):
            archive.set_manifest(description="x" * 2000)
        archive.set_manifest(description="a paragraph, not a document")
    with Archive.open_on(device, readonly=True) as archive:
        assert archive.read_file("/important.txt") == b"keep me"
        assert archive.manifest()["description"] == "a paragraph, not a document"
        assert archive.manifest()["title"] == "short"


def test_create_without_hard_links_still_never_overwrites(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """FAT and exFAT refuse link(2) with EPERM: create reserves the name instead."""
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "usb.cart"
    with Archive.create(path) as archive:
        archive.write_file("/f", b"on a stick")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usb.cart"]
    with Archive.open(path, readonly=True) as archive:
        assert archive.read_file("/f") == b"on a stick"
    with pytest.raises(Exception, match="already exists"):
        Archive.create(path)
    with Archive.open(path, readonly=True) as archive:
        assert archive.read_file("/f") == b"on a stick"


def test_create_with_an_empty_path_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="no archive path"):
        Archive.create("")
