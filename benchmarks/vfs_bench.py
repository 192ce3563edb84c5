"""SQLite through the cartridge VFS vs apsw's default VFS on a plain file, in one run.

The same workloads run on both, in the same process, on the same disk (a temp directory),
with the same SQLite settings; the table gives seconds and the ratio cartridge/plain
(targets: 100k-row insert <= 3x, point reads <= 2x)::

    python benchmarks/vfs_bench.py                 # 100k rows, medians of 3
    python benchmarks/vfs_bench.py --rows 20000 --repeat 1 --dir /var/tmp

Workloads:
  insert       one transaction inserting --rows rows (id, int, ~30-byte text)
  txn FULL     1,000 single-row transactions, synchronous=FULL   (--txns)
  txn NORMAL   1,000 single-row transactions, synchronous=NORMAL
  point reads  --lookups random primary-key lookups, each its own (autocommit) statement
  range scan   1,000 scans of 100 consecutive rows
  full scan    SELECT count/sum over the whole table, 10 times
  vacuum       VACUUM of the table (after deleting every other row)
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cartfs.vfs
from cartfs.core.archive import Archive

Opener = Callable[[], apsw.Connection]


def _rows(n: int, seed: int = 7) -> list[tuple[int, int, str]]:
    rnd = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    return [(i, rnd.randrange(1 << 30), " ".join(rnd.choices(words, k=5)))
            for i in range(1, n + 1)]


def w_insert(conn: apsw.Connection, rows: list[tuple[int, int, str]]) -> None:
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
    with conn:
        conn.executemany("INSERT INTO t VALUES(?,?,?)", rows)


def w_txns(conn: apsw.Connection, count: int, sync: str) -> None:
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE IF NOT EXISTS s(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(count):
        conn.execute("INSERT INTO s(v) VALUES(?)", (f"row {i}",))


def w_point(conn: apsw.Connection, keys: list[int]) -> None:
    for key in keys:
        conn.execute("SELECT b FROM t WHERE id=?", (key,)).fetchall()


def w_range(conn: apsw.Connection, starts: list[int]) -> None:
    for start in starts:
        conn.execute("SELECT sum(a), count(b) FROM t WHERE id BETWEEN ? AND ?",
                     (start, start + 99)).fetchall()


def w_full(conn: apsw.Connection) -> None:
    for _ in range(10):
        conn.execute("SELECT count(*), sum(length(b)) FROM t").fetchall()


def w_vacuum(conn: apsw.Connection) -> None:
    conn.execute("DELETE FROM t WHERE id % 2 = 0")
    conn.execute("VACUUM")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_target(open_conn: Opener, args: argparse.Namespace) -> dict[str, float]:
    """Every workload once on a fresh database; seconds per workload."""
    rows = _rows(args.rows)
    rnd = random.Random(11)
    keys = [rnd.randrange(1, args.rows + 1) for _ in range(args.lookups)]
    starts = [rnd.randrange(1, max(2, args.rows - 100)) for _ in range(1000)]
    out: dict[str, float] = {}
    conn = open_conn()
    try:
        out["insert"] = _timed(lambda: w_insert(conn, rows))
        out["txn FULL"] = _timed(lambda: w_txns(conn, args.txns, "FULL"))
        out["txn NORMAL"] = _timed(lambda: w_txns(conn, args.txns, "NORMAL"))
        out["point reads"] = _timed(lambda: w_point(conn, keys))
        out["range scan"] = _timed(lambda: w_range(conn, starts))
        out["full scan"] = _timed(lambda: w_full(conn))
        out["vacuum"] = _timed(lambda: w_vacuum(conn))
        check = conn.execute("PRAGMA integrity_check").fetchall()
        assert check == [("ok",)], check
    finally:
        conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--txns", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (default: temp dir)")
    args = parser.parse_args(argv)

    results: dict[str, dict[str, list[float]]] = {"plain": {}, "cartridge": {}}
    for rep in range(args.repeat):
        work = tempfile.mkdtemp(prefix="vfs-bench-", dir=args.dir)
        try:
            plain_path = os.path.join(work, "plain.db")
            cart_path = os.path.join(work, "bench.cart")
            Archive.create(cart_path).close()
            openers: dict[str, Opener] = {
                "plain": functools.partial(apsw.Connection, plain_path),
                "cartridge": functools.partial(cartfs.vfs.connect, cart_path, "/bench.db"),
            }
            order = ["plain", "cartridge"] if rep % 2 == 0 else ["cartridge", "plain"]
            for name in order:
                for workload, secs in run_target(openers[name], args).items():
                    results[name].setdefault(workload, []).append(secs)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(f"SQLite {apsw.sqlite_lib_version()}, apsw {apsw.apsw_version()}; "
          f"{args.rows} rows, {args.txns} txns, {args.lookups} lookups; "
          f"median of {args.repeat}")
    print(f"{'workload':<14}{'plain (s)':>12}{'cartridge (s)':>15}{'ratio':>8}")
    for workload, plain_times in results["plain"].items():
        plain = statistics.median(plain_times)
        cart = statistics.median(results["cartridge"][workload])
        print(f"{workload:<14}{plain:>12.4f}{cart:>15.4f}{cart / plain:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
