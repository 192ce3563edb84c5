#!/usr/bin/env python3
"""Snapshots, freeze, verify and vacuum at size: one table.

    python benchmarks/snapshot_bench.py               # ~1 GiB and ~10 GiB of file data
    python benchmarks/snapshot_bench.py --scale 0.1   # ~100 MiB and ~1 GiB: quick

What it measures, on one real ``.cart`` file:

* **snapshot create** with ~1 GiB and then ~10 GiB of data in the archive (median of 5), and
  the pages each create writes: it pins a committed root, so neither may grow with size;
* **space reclaimed by deleting a snapshot** after a quarter of the files were deleted
  (what ``snapshot list`` promised, what the allocator then freed, as bytes and % of the
  archive), and how long the delete took (a mark pass over the metadata, never the data);
* **vacuum** throughput (bytes moved per second) and the file size before and after;
* **freeze** throughput (archive bytes per second into the packed, signed copy) and
  **verify** throughput (SHA-256 over every page plus the Ed25519 check);
* two native references on the same disk: copying the archive (``copyfile`` + ``fsync``),
  the floor for freeze, and SHA-256 of the file, the floor for verify.

Data: files of 16 MiB written in 64 KiB pieces, half random and half compressible text (so
LZ4 is on the path and the archive is smaller than the data). Before each timed read-heavy
step the archive's page cache is dropped with ``posix_fadvise(DONTNEED)``, so the figures
include reading the disk. Scratch files go to ``--dir`` (default: a temporary directory in
/var/tmp) and are removed unless ``--keep``; the run needs about three times the archive's
size free, which it checks first.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cartfs.core.archive import Archive, verify_signature
from cartfs.core.format import PAGE_SIZE

MiB = 1024 * 1024
GiB = 1024 * MiB
PIECE = 64 * 1024
FILE_BYTES = 16 * MiB
CREATES = 5


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    raise AssertionError("unreachable")


def drop_cache(path: Path) -> None:
    """Make the next read of ``path`` come from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Data:
    """64 KiB pieces: half random, half compressible text; each made unique by a counter."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        text = b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % i
                        for i in range(2000))
        self.pool = [rng.randbytes(PIECE) if i % 2 else text[i * 97:i * 97 + PIECE]
                     for i in range(64)]
        self.count = 0

    def piece(self) -> bytes:
        self.count += 1
        base = self.pool[self.count % len(self.pool)]
        return self.count.to_bytes(16, "little") + base[16:]


def fill(archive: Archive, data: Data, first_file: int, target_bytes: int) -> int:
    """Write 16 MiB files until ``target_bytes`` of file data exist; returns the next file
    number."""
    nfile = first_file
    written = first_file * FILE_BYTES
    last_report = time.monotonic()
    while written < target_bytes:
        folder = f"/data/d{nfile // 64:03d}"
        archive.make_dir(folder, parents=True, exist_ok=True)
        ino = archive.write_file(f"{folder}/f{nfile:05d}", b"").ino
        for offset in range(0, FILE_BYTES, PIECE):
            archive.write(ino, offset, data.piece())
        written += FILE_BYTES
        nfile += 1
        if time.monotonic() - last_report > 5:
            log(f"  ... {human(written)} written")
            last_report = time.monotonic()
    archive.sync()
    return nfile


def snapshot_creates(archive: Archive, label: str) -> tuple[float, int]:
    """Median create time (s) and the most pages one create wrote."""
    times, pages = [], 0
    for i in range(CREATES):
        before = archive.statistics().pager.pages_written
        elapsed, _ = timed(functools.partial(archive.create_snapshot, f"{label}-{i}"))
        pages = max(pages, archive.statistics().pager.pages_written - before)
        times.append(elapsed)
    for i in range(CREATES):
        archive.delete_snapshot(f"{label}-{i}")
    return statistics.median(times), pages


def used_and_dead(archive: Archive) -> int:
    stats = archive.statistics().allocator
    return (stats.used_pages + stats.dead_pages) * PAGE_SIZE


def check_space(folder: Path, logical: int) -> None:
    need = int(logical * 0.6) * 3 + GiB  # archive (~55% of the data) x3: copy, freeze
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SystemExit(f"snapshot_bench: {folder} has {human(free)} free, this run needs "
                         f"about {human(need)}; use --scale to shrink it or --dir elsewhere")


Row = tuple[str, str, str]


def run(folder: Path, scale: float) -> list[Row]:
    small, large = int(GiB * scale), int(10 * GiB * scale)
    check_space(folder, large)
    path = folder / "bench.cart"
    rows: list[Row] = []
    data = Data()
    with Archive.create(path) as archive:
        log(f"writing {human(small)} ...")
        nfile = small_files = fill(archive, data, 0, small)
        t_small, p_small = snapshot_creates(archive, "small")
        size_small = os.path.getsize(path)
        log(f"writing up to {human(large)} ...")
        nfile = fill(archive, data, nfile, large)
        t_large, p_large = snapshot_creates(archive, "large")
        size_large = os.path.getsize(path)
        rows.append((f"snapshot create, {human(small_files * FILE_BYTES)} data",
                     f"{t_small * 1000:.2f} ms",
                     f"median of {CREATES}; {p_small} pages written; archive "
                     f"{human(size_small)}"))
        rows.append((f"snapshot create, {human(nfile * FILE_BYTES)} data",
                     f"{t_large * 1000:.2f} ms",
                     f"median of {CREATES}; {p_large} pages written; archive "
                     f"{human(size_large)}"))

        log("snapshot, delete a quarter of the files, delete the snapshot ...")
        archive.create_snapshot("keep")
        for i in range(0, nfile, 4):
            archive.remove(f"/data/d{i // 64:03d}/f{i:05d}")
        archive.sync()
        promised = next(s.exclusive_bytes for s in archive.list_snapshots(usage=True)
                        if s.name == "keep") or 0
        before = used_and_dead(archive)
        t_delete, _ = timed(lambda: archive.delete_snapshot("keep"))
        reclaimed = before - used_and_dead(archive)
        file_size = os.path.getsize(path)
        rows.append(("space reclaimed by deleting a snapshot", human(reclaimed),
                     f"{reclaimed / file_size * 100:.1f}% of the {human(file_size)} archive; "
                     f"promised {human(promised)}; delete took {t_delete:.2f} s"))

        log("vacuum ...")
        drop_cache(path)
        t_vacuum, result = timed(archive.vacuum)
        moved = result.moved_pages * PAGE_SIZE  # type: ignore[attr-defined]
        rows.append(("vacuum", f"{moved / t_vacuum / MiB:.0f} MiB/s",
                     f"moved {human(moved)} in {t_vacuum:.1f} s; file {human(file_size)} -> "
                     f"{human(os.path.getsize(path))}"))

    archive_bytes = os.path.getsize(path)
    log("native copy ...")
    copy = folder / "copy.cart"
    drop_cache(path)

    def native_copy() -> None:
        shutil.copyfile(path, copy)
        fd = os.open(copy, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    t_copy, _ = timed(native_copy)
    copy.unlink()

    log("freeze ...")
    frozen = folder / "frozen.cart"
    drop_cache(path)
    with Archive.open(path, readonly=True) as archive:
        t_freeze, _ = timed(lambda: archive.freeze(frozen, key=Ed25519PrivateKey.generate()))
    frozen_bytes = os.path.getsize(frozen)
    rows.append(("freeze", f"{archive_bytes / t_freeze / MiB:.0f} MiB/s",
                 f"{human(archive_bytes)} archive -> {human(frozen_bytes)} frozen in "
                 f"{t_freeze:.1f} s"))
    rows.append(("  native reference: copy + fsync", f"{archive_bytes / t_copy / MiB:.0f} MiB/s",
                 "the same file, copyfile on the same disk"))

    log("verify ...")
    drop_cache(frozen)
    t_verify, _ = timed(lambda: verify_signature(str(frozen)))
    drop_cache(frozen)

    def native_hash() -> None:
        digest = hashlib.sha256()
        with open(frozen, "rb") as fh:
            while block := fh.read(MiB):
                digest.update(block)

    t_hash, _ = timed(native_hash)
    rows.append(("verify", f"{frozen_bytes / t_verify / MiB:.0f} MiB/s",
                 f"{human(frozen_bytes)} in {t_verify:.1f} s (every page hashed, signature "
                 "checked)"))
    rows.append(("  native reference: sha256 of the file",
                 f"{frozen_bytes / t_hash / MiB:.0f} MiB/s", "reading 1 MiB blocks"))
    return rows


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in [("measure", "result", "detail"), *rows])
              for i in range(3)]
    header = ("measure", "result", "detail")
    for i, row in enumerate([header, *rows]):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")
        if i == 0:
            print(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * widths[2]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the 1 GiB / 10 GiB data sizes (default 1)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="scratch directory (default: a new one in /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    args = parser.parse_args()
    base = args.dir or Path("/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="cartfs-snapshot-bench-", dir=base))
    try:
        rows = run(folder, args.scale)
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
