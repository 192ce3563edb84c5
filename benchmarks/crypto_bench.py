#!/usr/bin/env python3
"""Encrypted vs plain archive: what AES-256-GCM sealing costs, on the same data, in one run.

    python benchmarks/crypto_bench.py                  # 256 MiB, medians of 3
    python benchmarks/crypto_bench.py --size 64M --repeat 1
    python benchmarks/crypto_bench.py --profile        # also cProfile the encrypted side

Both archives are made the same way (lz4, 64 KiB chunks) and given the same bytes, half
incompressible, half text-like, so the sealed side pays for compression decisions exactly as
the plain one does. Writes include ``sync()`` (two fsyncs); cold reads reopen the archive (empty
ARC pool) after dropping the file's page cache with ``posix_fadvise(DONTNEED)``; warm reads
run a second pass in the same open archive (the ARC pool serves decoded chunks, so they
show what remains once decryption is cached). The encrypted archive uses the real key
derivation (Argon2id, 64 MiB); its cost is reported once as "open", not folded into reads.

Prints one table: workload, plain, encrypted, ratio encrypted/plain (target >= 0.70).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.keys import KdfParams
from cartfs.malloc_tuning import tune_malloc

MiB = 1 << 20
TARGET = 0.70
PASSPHRASE = "crypto bench passphrase"


@dataclass
class Row:
    name: str
    unit: str
    plain: float
    sealed: float

    @property
    def ratio(self) -> float:
        return self.sealed / self.plain if self.plain else float("inf")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    suffix = text[-1].upper()
    return int(float(text[:-1]) * units[suffix]) if suffix in units else int(text)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def mixed_payload(seed: int = 1) -> bytes:
    """2 MiB: 1 MiB of random bytes, then 1 MiB of text-like lines (compresses ~3x)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(2000)]
    text = bytearray()
    while len(text) < MiB:
        text += (" ".join(rng.choice(words) for _ in range(12)) + "\n").encode()
    return rng.randbytes(MiB) + bytes(text[:MiB])


class Side:
    """One archive (plain or encrypted) and the workloads run on it."""

    def __init__(self, path: Path, passphrase: str | None, size: int, payload: bytes) -> None:
        self.path = path
        self.passphrase = passphrase
        self.size = size
        self.payload = payload
        self.options = OpenOptions(cache_bytes=2 * size + 64 * MiB)

    def create(self) -> None:
        self.path.unlink(missing_ok=True)
        kdf = KdfParams() if self.passphrase else None
        Archive.create(self.path, passphrase=self.passphrase, kdf=kdf,
                       options=self.options).close()

    def open(self, *, readonly: bool = False) -> Archive:
        return Archive.open(self.path, passphrase=self.passphrase, readonly=readonly,
                            options=self.options)

    def blocks(self, block: int) -> Iterator[memoryview]:
        view = memoryview(self.payload)
        span = len(self.payload)
        for offset in range(0, self.size, block):
            start = offset % span
            yield view[start:start + block]

    def seq_write(self, block: int) -> float:
        self.create()
        with self.open() as archive:
            start = time.perf_counter()
            ino = archive.create_file(1, "big").ino
            offset = 0
            for piece in self.blocks(block):
                archive.write(ino, offset, piece)
                offset += len(piece)
            archive.sync()
            return time.perf_counter() - start

    def seq_read(self, block: int) -> tuple[float, float]:
        """(cold seconds, warm seconds) for one pass over /big."""
        drop_cache(self.path)
        with self.open(readonly=True) as archive:
            ino = archive.resolve("/big").ino

            def one_pass() -> float:
                start = time.perf_counter()
                offset = 0
                while offset < self.size:
                    offset += len(archive.read(ino, offset, block)) or self.size
                return time.perf_counter() - start

            return one_pass(), one_pass()

    def random_reads(self, offsets: list[int]) -> float:
        drop_cache(self.path)
        with self.open(readonly=True) as archive:
            ino = archive.resolve("/big").ino
            start = time.perf_counter()
            for offset in offsets:
                archive.read(ino, offset, 4096)
            return time.perf_counter() - start

    def small_files(self, bodies: list[bytes], count: int) -> float:
        self.create()
        with self.open() as archive:
            start = time.perf_counter()
            dirs = [archive.mkdir(1, f"d{j}").ino for j in range(100)]
            for i in range(count):
                ino = archive.create_file(dirs[i % 100], f"file-{i}.txt").ino
                archive.write(ino, 0, bodies[i % len(bodies)])
            archive.sync()
            return time.perf_counter() - start

    def open_seconds(self) -> float:
        start = time.perf_counter()
        self.open(readonly=True).close()
        return time.perf_counter() - start


def paired(repeat: int, run: Callable[[Side], float], plain: Side, sealed: Side
           ) -> tuple[float, float]:
    """Medians of ``run`` on each side, interleaved (plain first, then sealed first, ...) so
    that drifting machine load or disk caches favour neither side."""
    times: dict[int, list[float]] = {id(plain): [], id(sealed): []}
    for i in range(repeat):
        for side in (plain, sealed) if i % 2 == 0 else (sealed, plain):
            times[id(side)].append(run(side))
    return statistics.median(times[id(plain)]), statistics.median(times[id(sealed)])


def run_all(plain: Side, sealed: Side, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    mb = args.size / MiB
    for block in (MiB, 64 * 1024):
        label = f"{block // 1024} KiB" if block < MiB else "1 MiB"
        write = paired(args.repeat, partial(Side.seq_write, block=block), plain, sealed)
        rows.append(Row(f"seq write {label} + sync", "MB/s", mb / write[0], mb / write[1]))
        passes: dict[int, list[tuple[float, float]]] = {id(plain): [], id(sealed): []}
        paired(args.repeat, _reader(block, passes), plain, sealed)
        cold = [statistics.median(c for c, _ in passes[id(s)]) for s in (plain, sealed)]
        warm = [statistics.median(w for _, w in passes[id(s)]) for s in (plain, sealed)]
        rows.append(Row(f"seq read {label} cold", "MB/s", mb / cold[0], mb / cold[1]))
        rows.append(Row(f"seq read {label} warm", "MB/s", mb / warm[0], mb / warm[1]))
    rng = random.Random(7)
    offsets = [rng.randrange(0, args.size // 4096) * 4096 for _ in range(args.random_ops)]
    rand = paired(args.repeat, lambda side: side.random_reads(offsets), plain, sealed)
    ops = args.random_ops / 1000
    rows.append(Row("random 4 KiB read (cold)", "kops/s", ops / rand[0], ops / rand[1]))
    bodies = [rng.randbytes(rng.randint(100, 4000)) for _ in range(256)]
    small = paired(args.repeat, lambda side: side.small_files(bodies, args.files), plain,
                   sealed)
    rows.append(Row(f"create {args.files} small files + sync", "files/s",
                    args.files / small[0], args.files / small[1]))
    return rows


def _reader(block: int, passes: dict[int, list[tuple[float, float]]]
            ) -> Callable[[Side], float]:
    """A run for :func:`paired` that keeps each (cold, warm) pair of seq_read."""
    def run(side: Side) -> float:
        cold_warm = side.seq_read(block)
        passes[id(side)].append(cold_warm)
        return cold_warm[0]
    return run


def print_table(rows: list[Row], open_ms: tuple[float, float]) -> None:
    print(f"{'workload':<34} {'plain':>10} {'encrypted':>10}  {'unit':<7} {'ratio':>6}")
    for row in rows:
        mark = "ok" if row.ratio >= TARGET else "MISS"
        print(f"{row.name:<34} {row.plain:>10.1f} {row.sealed:>10.1f}  {row.unit:<7} "
              f"{row.ratio:>6.2f} {mark}")
    print(f"{'open (encrypted: Argon2id 64 MiB)':<34} {open_ms[0]:>10.1f} {open_ms[1]:>10.1f}"
          "  ms")
    worst = min(rows, key=lambda r: r.ratio)
    print(f"\nworst ratio {worst.ratio:.2f} ({worst.name}); target >= {TARGET:.2f}")


def profile_sealed(sealed: Side, args: argparse.Namespace) -> None:
    """Where the encrypted side spends its time: a 64 KiB write + cold read pass."""
    profiler = cProfile.Profile()
    profiler.enable()
    sealed.seq_write(64 * 1024)
    sealed.seq_read(64 * 1024)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.profile_lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=256 * MiB,
                        help="bytes for the sequential file (default 256M)")
    parser.add_argument("--repeat", type=int, default=3, help="median of N runs (3)")
    parser.add_argument("--files", type=int, default=5000, help="small files (5000)")
    parser.add_argument("--random-ops", type=int, default=20000, help="random reads (20000)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a temporary one under /var/tmp)")
    parser.add_argument("--profile", action="store_true", help="cProfile the encrypted side")
    parser.add_argument("--profile-lines", type=int, default=25)
    args = parser.parse_args()
    tune_malloc()
    payload = mixed_payload()
    with tempfile.TemporaryDirectory(dir=args.dir or "/var/tmp",
                                     prefix="crypto-bench-") as tmp:
        plain = Side(Path(tmp) / "plain.cart", None, args.size, payload)
        sealed = Side(Path(tmp) / "sealed.cart", PASSPHRASE, args.size, payload)
        print(f"{args.size // MiB} MiB, mixed data (half random, half text), lz4, 64 KiB "
              f"chunks, median of {args.repeat}; load average {os.getloadavg()[0]:.1f}\n")
        rows = run_all(plain, sealed, args)
        open_ms = (plain.open_seconds() * 1e3, sealed.open_seconds() * 1e3)
        print_table(rows, open_ms)
        if args.profile:
            profile_sealed(sealed, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
