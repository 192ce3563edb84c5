"""Group commit: many writes share one transaction; a commit comes from sync()/close or a
size or time threshold, never from a write itself. And one writer beside many readers."""

from __future__ import annotations

import os
import threading
import time

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.catalog import chunk_key
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import NotFound
from cartfs.core.format import CODEC_NONE, CODEC_ZSTD, decode_chunk_ptr
from cartfs.core.fsck import fsck


def _fresh(options: OpenOptions) -> tuple[MemoryDevice, Archive]:
    device = MemoryDevice()
    Archive.create_on(device).close()
    return device, Archive.open_on(device, options=options)


def test_writes_do_not_sync_until_asked() -> None:
    device, archive = _fresh(OpenOptions(commit_interval=3600))
    with archive:
        ino = archive.create_file(1, "log").ino
        before = device.syncs
        for i in range(1000):
            archive.write(ino, i * 100, b"x" * 100)
        assert device.syncs == before
        assert archive.statistics().commits == 0
        archive.sync()
        assert device.syncs == before + 2  # data and nodes, then the superblock
        assert archive.statistics().commits == 1


def test_the_size_threshold_commits() -> None:
    device, archive = _fresh(OpenOptions(commit_interval=3600, commit_bytes=1 << 20,
                                         flush_bytes=256 << 10))
    with archive:
        ino = archive.create_file(1, "big").ino
        for i in range(40):  # 2.5 MiB in 64 KiB writes: two thresholds crossed
            archive.write(ino, i * 65536, os.urandom(65536))
        assert archive.statistics().commits == 2
    with Archive.open_on(device, readonly=True) as reopened:
        assert reopened.getattr(ino).size == 40 * 65536


def test_the_time_threshold_commits_and_commit_if_due_sees_it() -> None:
    _device, archive = _fresh(OpenOptions(commit_interval=0.2))
    with archive:
        ino = archive.create_file(1, "slow").ino
        assert archive.commit_if_due() is False  # nothing due yet
        time.sleep(0.25)
        assert archive.commit_if_due() is True
        archive.write(ino, 0, b"a")
        assert archive.statistics().commits == 1
        time.sleep(0.25)
        archive.write(ino, 1, b"b")  # a write after the interval carries the commit
        assert archive.statistics().commits == 2
        assert archive.commit_if_due() is False  # nothing pending


def test_readers_in_threads_beside_one_writer_see_whole_files() -> None:
    """Each file is written whole in one call, with a fixed pattern per version, so a reader
    sees some complete version or the file absent, never a mix."""
    device, archive = _fresh(OpenOptions(commit_interval=0.05))
    names = [f"/f{i}" for i in range(8)]
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def body(version: int, size: int) -> bytes:
        return bytes([version % 251]) * size

    def writer() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            archive.write_file(names[version % len(names)], body(version, 70_000 + version))

    def reader() -> None:
        try:
            while not stop.is_set():
                for name in names:
                    try:
                        data = archive.read_file(name)
                    except NotFound:
                        continue
                    assert data == data[:1] * len(data), f"{name}: mixed versions"
                    reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    with archive:
        threads = [threading.Thread(target=reader) for _ in range(4)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert reads[0] > 50
    with Archive.open_on(device, readonly=True) as reopened:
        assert fsck(reopened).ok


def test_a_per_file_codec_override_applies_to_new_writes() -> None:
    text = b"".join(b"row %d, a compressible line of text\n" % i for i in range(4000))
    device = MemoryDevice()
    with Archive.create_on(device, compression="none") as archive:
        plain = archive.write_file("/plain.txt", text)
        squeezed = archive.create_file(1, "squeezed.txt")
        archive.set_codec(squeezed.ino, "zstd")
        archive.write(squeezed.ino, 0, text)
        archive.sync()
        assert archive.getattr(squeezed.ino).codec != archive.getattr(plain.ino).codec
    with Archive.open_on(device, readonly=True) as archive:
        assert archive.read_file("/squeezed.txt") == text == archive.read_file("/plain.txt")
        codecs = {path: decode_chunk_ptr(archive._catalog.get(chunk_key(
            archive.stat(path).ino, 0)) or b"").codec for path in ("/plain.txt", "/squeezed.txt")}
        assert codecs == {"/plain.txt": CODEC_NONE, "/squeezed.txt": CODEC_ZSTD}
