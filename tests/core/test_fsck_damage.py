"""fsck finds damage the allocator cannot see: sharing within one tree, records without an
owner, chunks past the end of a file; and a damaged walk does not drown its cause in leaks."""

from __future__ import annotations

import os

from cartfs.core.archive import Archive
from cartfs.core.catalog import chunk_key, inode_key, xattr_key
from cartfs.core.device import MemoryDevice
from cartfs.core.fsck import fsck


def _two_files() -> MemoryDevice:
    device = MemoryDevice()
    with Archive.create_on(device, compression="none") as archive:
        archive.write_file("/a.bin", os.urandom(3 * 65536))
        archive.write_file("/b.bin", os.urandom(3 * 65536))
    return device


def _problems(device: MemoryDevice) -> list[str]:
    with Archive.open_on(device, readonly=True) as archive:
        return [str(p) for p in fsck(archive).problems]


def test_an_extent_shared_by_two_files_of_one_tree_is_damage() -> None:
    """Two files pointing at one extent corrupt each other at the next rewrite; the live
    tree may share with a snapshot, never with itself."""
    device = _two_files()
    with Archive.open_on(device) as archive:
        a, b = archive.stat("/a.bin").ino, archive.stat("/b.bin").ino
        archive._catalog.put(chunk_key(b, 0), archive._catalog.get(chunk_key(a, 0)) or b"")
        archive._meta_dirty = True
    problems = _problems(device)
    assert any("file data reached twice within catalog" in p for p in problems), problems


def test_a_snapshot_sharing_the_live_tree_is_fine() -> None:
    device = _two_files()
    with Archive.open_on(device) as archive:
        archive.create_snapshot("s1")
        archive.create_snapshot("s2")
        archive.write_file("/c.bin", b"later")
    assert _problems(device) == []


def test_records_of_a_missing_inode_are_reported() -> None:
    """The inode and its name gone, its chunks and xattrs left: space nothing would free."""
    device = _two_files()
    with Archive.open_on(device) as archive:
        ino = archive.stat("/b.bin").ino
        archive.setxattr(ino, b"user.k", b"v")
        archive.sync()
        archive._catalog.delete(inode_key(ino))
        archive._catalog.delete(next(k for k, _ in archive._catalog.items()
                                     if k.endswith(b"b.bin")))
        archive._meta_dirty = True
        assert archive._catalog.get(xattr_key(ino, b"user.k")) is not None
    problems = _problems(device)
    assert any(f"records of missing inode {ino}" in p for p in problems), problems


def test_a_chunk_beyond_the_end_of_a_file_is_reported() -> None:
    device = _two_files()
    with Archive.open_on(device) as archive:
        ino = archive.stat("/a.bin").ino
        archive._catalog.put(chunk_key(ino, 9), archive._catalog.get(chunk_key(ino, 2)) or b"")
        archive._catalog.delete(chunk_key(ino, 2))
        archive._meta_dirty = True
    problems = _problems(device)
    assert any(f"inode {ino} stores chunk 9, beyond its size" in p for p in problems), problems


def test_a_damaged_root_reports_the_damage_not_thousands_of_leaks() -> None:
    device = MemoryDevice()
    with Archive.create_on(device, compression="none") as archive:
        for d in range(7):
            archive.make_dir(f"/d{d}")
        for i in range(400):
            archive.write_file(f"/d{i % 7}/f{i}", os.urandom(5000))
    with Archive.open_on(device, readonly=True) as archive:
        root_page = archive.superblock.catalog.page
    image = bytearray(device.data)
    image[root_page * 4096 + 100] ^= 0xFF
    device = MemoryDevice(bytes(image))
    with Archive.open_on(device, readonly=True) as archive:
        report = fsck(archive)
    messages = [str(p) for p in report.problems]
    assert not report.ok
    assert any(f"page {root_page}" in m for m in messages), messages
    assert not any("leaked" in m for m in messages), messages[:5]
    assert any("leak check skipped" in n for n in report.notes), report.notes
