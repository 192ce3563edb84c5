#!/usr/bin/env python3
"""Core engine benchmark: the Archive API against the same work on plain files, in one run.

    python benchmarks/core_bench.py                 # 1 GiB, as the issue asks
    python benchmarks/core_bench.py --size 256M     # quicker

Every cartfs figure includes making the data durable (``sync()``), and every plain-file figure
includes ``fsync``, so both sides pay for the disk. Cold reads drop the file's page cache with
``posix_fadvise(DONTNEED)`` (and reopen the archive, so its ARC pool starts empty).
Prints one table: workload, plain, cartfs, and the ratio cartfs/plain (throughput: higher is
better; for time-based rows the ratio is plain time / cartfs time, so again higher is better).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cartfs.core.archive import Archive, OpenOptions
from cartfs.malloc_tuning import tune_malloc

MiB = 1024 * 1024


@dataclass
class Row:
    name: str
    unit: str
    plain: float
    cart: float

    @property
    def ratio(self) -> float:
        if self.unit == "s":
            return self.plain / self.cart if self.cart else float("inf")
        return self.cart / self.plain if self.plain else float("inf")


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Bench:
    def __init__(self, workdir: Path, size: int, small_files: int) -> None:
        self.dir = workdir
        self.size = size
        self.small_files = small_files
        self.rows: list[Row] = []
        self.payload = os.urandom(MiB)  # incompressible, like most bulk data
        self.arc = workdir / "bench.cart"
        self.plain = workdir / "plain.bin"

    def blocks(self, block: int) -> Iterator[memoryview]:
        view = memoryview(self.payload)
        for off in range(0, self.size, block):
            start = off % MiB
            yield view[start : start + block] if start + block <= MiB else view[:block]

    def open_archive(self, **kw: object) -> Archive:
        return Archive.open(self.arc, options=OpenOptions(cache_bytes=512 * MiB), **kw)  # type: ignore[arg-type]

    # ---- sequential -------------------------------------------------------------------------

    def seq_write(self, block: int) -> None:
        def plain() -> None:
            with open(self.plain, "wb", buffering=0) as fh:
                for piece in self.blocks(block):
                    fh.write(piece)
                os.fsync(fh.fileno())

        def cart() -> None:
            with self.open_archive() as arc:
                ino = arc.create_file(1, "big").ino
                off = 0
                for piece in self.blocks(block):
                    arc.write(ino, off, piece)
                    off += len(piece)
                arc.sync()

        self.plain.unlink(missing_ok=True)
        t_plain = timed(plain)
        self._fresh_archive("none")
        t_cart = timed(cart)
        mb = self.size / MiB
        self.rows.append(
            Row(f"seq write {block // 1024} KiB (none)", "MB/s", mb / t_plain, mb / t_cart)
        )

    def seq_read(self, block: int) -> None:
        def plain() -> None:
            with open(self.plain, "rb", buffering=0) as fh:
                while fh.read(block):
                    pass

        def cart(arc: Archive) -> Callable[[], None]:
            ino = arc.resolve("/big").ino

            def run() -> None:
                off = 0
                while off < self.size:
                    off += len(arc.read(ino, off, block)) or self.size

            return run

        drop_cache(self.plain)
        cold_plain = timed(plain)
        warm_plain = timed(plain)
        drop_cache(self.arc)
        with self.open_archive(readonly=True) as arc:
            cold_cart = timed(cart(arc))
            warm_cart = timed(cart(arc))
        mb = self.size / MiB
        kib = block // 1024
        self.rows.append(Row(f"seq read {kib} KiB cold", "MB/s", mb / cold_plain, mb / cold_cart))
        self.rows.append(Row(f"seq read {kib} KiB warm", "MB/s", mb / warm_plain, mb / warm_cart))

    # ---- random -----------------------------------------------------------------------------

    def random_io(self, ops: int = 20000) -> None:
        rnd = random.Random(7)
        offsets = [rnd.randrange(0, self.size // 4096) * 4096 for _ in range(ops)]
        chunk = self.payload[:4096]

        def plain_read() -> None:
            fd = os.open(self.plain, os.O_RDONLY)
            for off in offsets:
                os.pread(fd, 4096, off)
            os.close(fd)

        def plain_write() -> None:
            fd = os.open(self.plain, os.O_RDWR)
            for off in offsets:
                os.pwrite(fd, chunk, off)
            os.fsync(fd)
            os.close(fd)

        with self.open_archive() as arc:
            ino = arc.resolve("/big").ino

            def cart_read() -> None:
                for off in offsets:
                    arc.read(ino, off, 4096)

            def cart_write() -> None:
                for off in offsets:
                    arc.write(ino, off, chunk)
                arc.sync()

            drop_cache(self.plain)
            drop_cache(self.arc)
            t1, t2 = timed(plain_read), timed(cart_read)
            self.rows.append(Row("random 4 KiB read", "kops/s", ops / t1 / 1e3, ops / t2 / 1e3))
            t1, t2 = timed(plain_write), timed(cart_write)
            self.rows.append(
                Row("random 4 KiB write+sync", "kops/s", ops / t1 / 1e3, ops / t2 / 1e3)
            )

    # ---- small files ------------------------------------------------------------------------

    def small_files_bench(self) -> None:
        n = self.small_files
        rnd = random.Random(3)
        bodies = [os.urandom(rnd.randint(100, 4000)) for _ in range(256)]
        tree = self.dir / "small"

        def plain_create() -> None:
            for i in range(n):
                d = tree / f"d{i % 100}"
                if i < 100:
                    d.mkdir(parents=True)
                with open(d / f"f{i}", "wb") as fh:
                    fh.write(bodies[i % 256])
            os.sync()

        def plain_stat_read() -> None:
            for i in range(n):
                p = tree / f"d{i % 100}" / f"f{i}"
                os.stat(p)
                with open(p, "rb") as fh:
                    fh.read()

        self._fresh_archive("lz4")
        with self.open_archive() as arc:

            def cart_create() -> None:
                dirs = [arc.mkdir(1, f"d{j}").ino for j in range(100)]
                for i in range(n):
                    ino = arc.create_file(dirs[i % 100], f"f{i}").ino
                    arc.write(ino, 0, bodies[i % 256])
                arc.sync()

            def cart_stat_read() -> None:
                for i in range(n):
                    parent = arc.lookup(1, f"d{i % 100}").ino
                    inode = arc.lookup(parent, f"f{i}")
                    arc.read(inode.ino, 0, inode.size)

            shutil.rmtree(tree, ignore_errors=True)
            t1, t2 = timed(plain_create), timed(cart_create)
            self.rows.append(Row(f"create {n} small files", "s", t1, t2))
            t1, t2 = timed(plain_stat_read), timed(cart_stat_read)
            self.rows.append(Row(f"stat+read {n} small files", "s", t1, t2))
        shutil.rmtree(tree, ignore_errors=True)

    # ---- compression ------------------------------------------------------------------------

    def corpus(self) -> None:
        src = Path(sysconfig.get_paths()["stdlib"])
        files = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink()]
        data = [(p.relative_to(src), p.read_bytes()) for p in files]
        total = sum(len(d) for _, d in data)
        copy_dir = self.dir / "stdlib-copy"

        def plain() -> None:
            for rel, body in data:
                target = copy_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
            os.sync()

        shutil.rmtree(copy_dir, ignore_errors=True)
        t_plain = timed(plain)
        shutil.rmtree(copy_dir, ignore_errors=True)
        for codec in ("lz4", "zstd"):
            self._fresh_archive(codec)
            with self.open_archive() as arc:

                def cart() -> None:
                    for rel, body in data:
                        arc.write_file("/" + str(rel), body, parents=True)
                    arc.sync()

                t_cart = timed(cart)
                # pages in use, not st_blocks: growth preallocates blocks ahead of need
                stored = arc.statistics().allocator.used_pages * 4096
            self.rows.append(
                Row(
                    f"stdlib {total // MiB} MiB, {codec} (MB/s)",
                    "MB/s",
                    total / MiB / t_plain,
                    total / MiB / t_cart,
                )
            )
            print(
                f"  {codec}: {len(data)} files, {total / MiB:.1f} MiB → archive "
                f"{stored / MiB:.1f} MiB of pages in use (ratio {stored / total:.2f})",
                flush=True,
            )

    def _fresh_archive(self, codec: str) -> None:
        self.arc.unlink(missing_ok=True)
        Archive.create(self.arc, compression=codec).close()

    def run(self, only: set[str] | None) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            (
                "seq",
                lambda: (
                    [self.seq_write(b) or self.seq_read(b) for b in (4096, 65536, MiB)] and None
                ),
            ),
            ("random", self.random_io),
            ("small", self.small_files_bench),
            ("corpus", self.corpus),
        ]
        for name, step in steps:
            if only is None or name in only:
                print(f"running {name} ...", flush=True)
                step()

    def table(self) -> str:
        lines = [f"{'workload':34} {'unit':>7} {'plain':>10} {'cartfs':>10} {'ratio':>7}"]
        for r in self.rows:
            lines.append(f"{r.name:34} {r.unit:>7} {r.plain:10.2f} {r.cart:10.2f} {r.ratio:7.2f}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1G", help="bytes for sequential/random work")
    parser.add_argument("--small-files", type=int, default=100_000)
    parser.add_argument(
        "--dir",
        default=None,
        help="work directory (default: a temp dir in /var/tmp, on a real disk)",
    )
    parser.add_argument("--only", nargs="*", choices=["seq", "random", "small", "corpus"])
    args = parser.parse_args()
    tune_malloc()  # as the cartfs CLI and mount daemon do
    base = Path(args.dir or tempfile.mkdtemp(prefix="cartfs-bench-", dir="/var/tmp"))
    try:
        bench = Bench(base, parse_size(args.size), args.small_files)
        bench.run(set(args.only) if args.only else None)
        print()
        print(bench.table())
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
