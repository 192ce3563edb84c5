"""File-system workloads, timed, and a driver that runs them on every target of peers.py.

Each workload takes a directory (on the file system under test) and returns a
:class:`Result` (seconds, and bytes where a throughput makes sense). Real tools are used
where they matter: GNU ``tar`` to unpack a real source tree, ``ls -lR``, ``du -s``, the stock
``sqlite3`` shell.

Run everything (native dir, tmpfs, cartfs when ready, JuiceFS, fuse-zip, archivemount,
ratarmount) and print a table with ratios against the native directory::

    python benchmarks/workloads.py                      # 64 MiB, medians of 3 (~2.5 min)
    python benchmarks/workloads.py --quick              # one run each (~1-1.5 min)
    python benchmarks/workloads.py --size-mib 256 --json /var/tmp/bench.json
    BENCH_TARGETS=native,tmpfs,juicefs python benchmarks/workloads.py
    python benchmarks/workloads.py --list               # targets, availability, versions

Settings (argument / environment variable, default):
  --size-mib  BENCH_SIZE_MIB  64      size of the sequential write/read file
  --repeat    BENCH_REPEAT    3       repetitions; the median is reported
  --files     BENCH_FILES     5000    small files to create and stat
  --rows      BENCH_ROWS      100000  rows for the sqlite3 insert (one transaction)
  --data      BENCH_DATA      random  payload: random (incompressible), text, zeros
  --targets   BENCH_TARGETS   all     comma-separated target names (see peers.py)
  --scratch   BENCH_SCRATCH   /var/tmp/cartfs-bench        work directories (removed after)
  --cache     BENCH_CACHE     /var/tmp/cartfs-bench-cache  stdlib tarball, SQL script
  --sqlite-timeout BENCH_SQLITE_TIMEOUT 600  kill sqlite3 after this, report '>N s'
  --quick     = --repeat 1 --files 1000 --sqlite-timeout 10
  --keep (keep work directories), --json PATH (write results), --list
  BENCH_SLOW_SECONDS 2: a workload whose first run is slower is not repeated
  BENCH_MOUNT_TIMEOUT 60, BENCH_UNMOUNT_TIMEOUT 900 (peers.py)
Only one run at a time: runs drop the machine-wide page cache and share the scratch dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# peers.py sits beside this file; benchmarks/ is not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

MiB = 1 << 20
KiB = 1 << 10
TOOL_TIMEOUT = 3600.0
SQLITE_TIMEOUT = float(os.environ.get("BENCH_SQLITE_TIMEOUT", "600"))
"""Seconds after which the sqlite3 shell is killed and the workload reported as '>N s'
(plain JuiceFS needs 30-70 s). Set by --sqlite-timeout."""


class WorkloadTimeout(RuntimeError):
    """An external tool ran longer than its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"longer than {seconds:g} s")
        self.seconds = seconds


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Result:
    """One measurement: ``seconds`` is the median of ``samples``."""

    seconds: float
    nbytes: int = 0
    samples: list[float] = field(default_factory=list)
    timed_out: bool = False  # seconds is then the time limit: the real time is longer

    @property
    def mb_per_s(self) -> float | None:
        if not self.nbytes or self.seconds <= 0:
            return None
        return self.nbytes / self.seconds / 1e6


SLOW_SECONDS = float(os.environ.get("BENCH_SLOW_SECONDS", "2.0"))
"""A workload whose first run takes longer than this is not repeated."""


def median_of(repeat: int, run: Callable[[int], Result], slow: float | None = None) -> Result:
    """Run ``run(i)`` for i in range(repeat) and report the median time; stop after the
    first run if it took longer than ``slow`` seconds (default SLOW_SECONDS)."""
    limit = SLOW_SECONDS if slow is None else slow
    results = [run(0)]
    if results[0].seconds <= limit:
        results += [run(i) for i in range(1, repeat)]
    samples = [r.seconds for r in results]
    return Result(statistics.median(samples), results[0].nbytes, samples)


def _timed_tool(
    argv: Sequence[str], *, stdin_path: Path | None = None, timeout: float | None = None
) -> float:
    """Run a command with stdout discarded; return its wall time; raise on failure
    (:class:`WorkloadTimeout` after ``timeout`` seconds, default TOOL_TIMEOUT)."""
    limit = TOOL_TIMEOUT if timeout is None else timeout
    stdin = open(stdin_path, "rb") if stdin_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        proc = subprocess.run(
            list(argv),
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=limit,
            check=False,
        )
        elapsed = time.perf_counter() - start
    except subprocess.TimeoutExpired:
        raise WorkloadTimeout(limit) from None
    finally:
        if not isinstance(stdin, int):
            stdin.close()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {err}")
    return elapsed


# --------------------------------------------------------------------------------------------
# inputs


def make_payload(size_mib: int, kind: str = "random") -> bytes:
    """``size_mib`` MiB of data: random (incompressible), text (Python sources, compresses
    ~4x) or zeros."""
    size = size_mib * MiB
    if kind == "random":
        return os.urandom(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "text":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        chunks: list[bytes] = []
        have = 0
        while have < size:
            for src in sorted(stdlib.glob("*.py")):
                data = src.read_bytes()
                chunks.append(data)
                have += len(data)
                if have >= size:
                    break
        return b"".join(chunks)[:size]
    raise ValueError(f"unknown payload kind {kind!r} (random, text, zeros)")


def stdlib_tarball(cache_dir: Path) -> tuple[Path, int]:
    """A tar of this interpreter's standard library, made once into ``cache_dir``: ~2,400
    files, ~55 MiB (without site-packages, __pycache__ and config-*/, whose 45 MB static
    libpython is no source). Returns (path, number of files)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    tag = f"stdlib-{platform.python_implementation()}-{platform.python_version()}-v2"
    tarball = cache_dir / f"{tag}.tar"
    count_file = cache_dir / f"{tag}.count"
    if not tarball.exists() or not count_file.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = tarball.with_suffix(".tmp")
        _timed_tool(
            [
                "tar",
                "-cf",
                str(tmp),
                "--exclude=site-packages",
                "--exclude=__pycache__",
                f"--exclude={stdlib.name}/config-*",
                "-C",
                str(stdlib.parent),
                stdlib.name,
            ]
        )
        listing = subprocess.run(
            ["tar", "-tf", str(tmp)], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        count_file.write_text(str(sum(1 for name in listing if not name.endswith("/"))))
        tmp.rename(tarball)
    return tarball, int(count_file.read_text())


def sqlite_script(cache_dir: Path, rows: int) -> Path:
    """SQL for the sqlite3 shell: rollback journal (DELETE), one table with an index, and
    ``rows`` separate INSERT statements in one transaction (made once, cached)."""
    script = cache_dir / f"insert-{rows}.sql"
    if script.exists():
        return script
    cache_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "PRAGMA journal_mode=DELETE;",
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT);",
        "CREATE INDEX items_name ON items(name);",
        "BEGIN;",
    ]
    state = 0x2545F491
    for i in range(rows):
        state = (state * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        key = state >> 24
        lines.append(
            f"INSERT INTO items(name, qty, note) VALUES"
            f"('item-{key:012x}', {i}, 'note {i} for item {key:x} in the benchmark table');"
        )
    lines += ["COMMIT;", ""]
    tmp = script.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.rename(script)
    return script


# --------------------------------------------------------------------------------------------
# workloads


def seq_write(directory: Path, payload: bytes, block_size: int, name: str = "seq.bin") -> Result:
    """Write ``payload`` to a new file with os.write calls of ``block_size`` bytes, then
    fsync and close (all timed)."""
    path = directory / name
    view = memoryview(payload)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        offset = 0
        total = len(view)
        while offset < total:
            offset += os.write(fd, view[offset : offset + block_size])
        os.fsync(fd)
    finally:
        os.close(fd)
    return Result(time.perf_counter() - start, len(payload))


def seq_write_dd(directory: Path, source: Path, block_size: int, name: str = "seq.bin") -> Result:
    """The same with ``dd bs=<block_size> conv=fsync`` copying ``source`` (keep it cached)."""
    elapsed = _timed_tool(
        [
            "dd",
            f"if={source}",
            f"of={directory / name}",
            f"bs={block_size}",
            "conv=fsync",
            "status=none",
        ]
    )
    return Result(elapsed, source.stat().st_size)


def seq_read(path: Path, block_size: int = MiB) -> Result:
    """Read a whole file with ``block_size`` reads into one buffer."""
    buf = bytearray(block_size)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            total += n
    return Result(time.perf_counter() - start, total)


def untar(tarball: Path, directory: Path) -> Result:
    """``tar -xf`` into ``directory`` followed by syncfs (timed together)."""
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _timed_tool(["tar", "-xf", str(tarball), "-C", str(directory)])
    peers.syncfs(directory)
    return Result(time.perf_counter() - start, tarball.stat().st_size)


def ls_lr(directory: Path) -> Result:
    """``ls -lR`` (output discarded)."""
    return Result(_timed_tool(["ls", "-lR", str(directory)]))


def du_s(directory: Path) -> Result:
    """``du -s``."""
    return Result(_timed_tool(["du", "-s", str(directory)]))


def sqlite_insert(
    directory: Path, script: Path, name: str = "bench.db", timeout: float | None = None
) -> Result:
    """Stock ``sqlite3`` shell running ``script`` (see :func:`sqlite_script`) on a new
    database file in ``directory``; killed after ``timeout`` (default SQLITE_TIMEOUT)."""
    db = directory / name
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    limit = SQLITE_TIMEOUT if timeout is None else timeout
    elapsed = _timed_tool(["sqlite3", str(db)], stdin_path=script, timeout=limit)
    return Result(elapsed, db.stat().st_size)


def create_files(directory: Path, count: int, size: int = 100) -> Result:
    """Create ``count`` files of ``size`` bytes in one new directory, then syncfs."""
    data = b"x" * size
    start = time.perf_counter()
    directory.mkdir()
    for i in range(count):
        fd = os.open(directory / f"f{i:05d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    peers.syncfs(directory)
    return Result(time.perf_counter() - start, count * size)


def stat_files(directory: Path, count: int) -> Result:
    """``os.stat`` of the ``count`` files made by :func:`create_files`."""
    names = [directory / f"f{i:05d}" for i in range(count)]
    start = time.perf_counter()
    for name in names:
        os.stat(name)
    return Result(time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# driver

# (key, label, unit): unit "MB/s" shows throughput, "s" seconds, "MiB" a size.
ROWS: list[tuple[str, str, str]] = [
    ("mount", "mount", "s"),
    ("write_1m", "seq write, 1 MiB blocks +fsync", "MB/s"),
    ("write_4k", "seq write, 4 KiB blocks +fsync", "MB/s"),
    ("read_cold", "seq read, cold (remount/drop)", "MB/s"),
    ("read_warm", "seq read, warm", "MB/s"),
    ("untar", "untar stdlib +syncfs", "s"),
    ("untar_flush", "unmount after untar (flush)", "s"),
    ("ls_cold", "ls -lR tree, cold", "s"),
    ("ls_warm", "ls -lR tree, warm", "s"),
    ("du_warm", "du -s tree, warm", "s"),
    ("sqlite", "sqlite3 insert, 1 txn, DELETE", "s"),
    ("create", "create small files +syncfs", "s"),
    ("stat", "stat small files", "s"),
    ("unmount", "unmount (flush)", "s"),
    ("storage", "storage used after unmount", "MiB"),
]


@dataclass
class Config:
    size_mib: int = 64
    repeat: int = 3
    files: int = 5000
    rows: int = 100_000
    data: str = "random"
    targets: list[str] = field(default_factory=list)
    scratch: Path = Path("/var/tmp/cartfs-bench")
    cache: Path = Path("/var/tmp/cartfs-bench-cache")
    keep: bool = False


@dataclass
class TargetRun:
    name: str
    description: str = ""
    version: str = ""
    skipped: str = ""
    results: dict[str, Result] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class _Runner:
    """Runs the workloads on one target, recording each result or error."""

    def __init__(self, run: TargetRun) -> None:
        self.run = run
        self.broken = False

    def measure(self, key: str, fn: Callable[[], Result]) -> Result | None:
        if self.broken:
            return None
        try:
            result = fn()
        except WorkloadTimeout as exc:
            self.run.results[key] = Result(exc.seconds, timed_out=True)
            return None
        except Exception as exc:
            self.run.errors[key] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, peers.MountError):
                self.broken = True
            return None
        self.run.results[key] = result
        return result


def _remove_tree(path: Path) -> None:
    """rmtree that refuses to descend into anything still mounted."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            if peers.is_mounted(Path(root, d)):
                raise peers.MountError(f"{root}/{d} is still mounted; not removing {path}")
    shutil.rmtree(path)


def run_target(target: peers.Target, cfg: Config, inputs: Inputs) -> TargetRun:
    """All workloads on one target (the read-only ones for a read-only target)."""
    run = TargetRun(target.name, target.description)
    avail = target.available()
    if not avail:
        run.skipped = avail.reason
        return run
    run.version = target.version()
    workdir = cfg.scratch / target.name
    _remove_tree(workdir)
    r = _Runner(run)
    started = time.perf_counter()
    try:
        if target.writable:
            _run_writable(target, cfg, inputs, workdir, r)
        else:
            _run_readonly(target, cfg, inputs, workdir, r)
    finally:
        target.unmount()
        run.description = target.description
        run.seconds = time.perf_counter() - started
        if not cfg.keep:
            with contextlib.suppress(peers.MountError, OSError):
                _remove_tree(workdir)
    return run


def _mount(target: peers.Target, workdir: Path) -> Result:
    start = time.perf_counter()
    target.mount(workdir)
    elapsed = time.perf_counter() - start
    if isinstance(target, peers.FuseTarget):
        elapsed = target.last_mount_seconds  # without building the backing store
    return Result(elapsed)


def _unmount(target: peers.Target) -> Result:
    start = time.perf_counter()
    target.unmount()
    return Result(time.perf_counter() - start)


def _checked(result: Result, expected: int) -> Result:
    if result.nbytes != expected:
        raise RuntimeError(f"read {result.nbytes} bytes, wrote {expected}")
    return result


def _storage(target: peers.Target) -> Result:
    nbytes = target.storage_bytes()
    if nbytes is None:
        raise RuntimeError("storage size unknown")
    return Result(0.0, nbytes)


def _run_writable(
    target: peers.Target, cfg: Config, inputs: Inputs, workdir: Path, r: _Runner
) -> None:
    r.measure("mount", lambda: _mount(target, workdir))
    assert target.path is not None
    d = target.path

    def write(i: int, block: int, prefix: str) -> Result:
        # One new file per run; the previous one is removed first (fuse-zip keeps data in
        # RAM). Runs stop early when slow, so the survivor is found afterwards.
        (d / f"{prefix}-{i - 1}.bin").unlink(missing_ok=True)
        return seq_write(d, inputs.payload, block, f"{prefix}-{i}.bin")

    r.measure("write_1m", lambda: median_of(cfg.repeat, lambda i: write(i, MiB, "seq1m")))
    r.measure("write_4k", lambda: median_of(cfg.repeat, lambda i: write(i, 4 * KiB, "seq4k")))
    for leftover in d.glob("seq4k-*.bin"):
        leftover.unlink()
    seq = max(d.glob("seq1m-*.bin"), default=d / "seq1m-0.bin")

    def cold_read(_: int) -> Result:
        target.drop_caches()
        return _checked(seq_read(seq), len(inputs.payload))

    r.measure("read_cold", lambda: median_of(cfg.repeat, cold_read))
    r.measure("read_warm", lambda: median_of(cfg.repeat, lambda _: seq_read(seq)))

    tree = d / "tree"
    r.measure("untar", lambda: untar(inputs.tarball, tree))

    def ls_cold() -> Result:
        target.drop_caches()
        if isinstance(target, peers.FuseTarget):
            # fuse-zip/archivemount write the archive only now
            r.run.results["untar_flush"] = Result(target.last_unmount_seconds)
        return ls_lr(tree)

    r.measure("ls_cold", ls_cold)
    r.measure("ls_warm", lambda: median_of(cfg.repeat, lambda _: ls_lr(tree)))
    r.measure("du_warm", lambda: median_of(cfg.repeat, lambda _: du_s(tree)))

    def sqlite(i: int) -> Result:
        (d / f"bench-{i - 1}.db").unlink(missing_ok=True)
        return sqlite_insert(d, inputs.sql, f"bench-{i}.db")

    r.measure("sqlite", lambda: median_of(cfg.repeat, sqlite))
    r.measure(
        "create", lambda: median_of(cfg.repeat, lambda i: create_files(d / f"small-{i}", cfg.files))
    )
    r.measure("stat", lambda: median_of(cfg.repeat, lambda _: stat_files(d / "small-0", cfg.files)))
    r.broken = False  # always try to unmount
    r.measure("unmount", lambda: _unmount(target))
    r.measure("storage", lambda: _storage(target))


def _run_readonly(
    target: peers.Target, cfg: Config, inputs: Inputs, workdir: Path, r: _Runner
) -> None:
    if isinstance(target, peers.Ratarmount):
        target.source = inputs.fixture()
    r.measure("mount", lambda: _mount(target, workdir))
    assert target.path is not None
    seq = target.path / "seq.bin"
    tree = target.path / "tree"

    def cold_read(_: int) -> Result:
        target.drop_caches()
        return seq_read(seq)

    r.measure("read_cold", lambda: median_of(cfg.repeat, cold_read))
    r.measure("read_warm", lambda: median_of(cfg.repeat, lambda _: seq_read(seq)))

    def ls_cold() -> Result:
        target.drop_caches()
        return ls_lr(tree)

    r.measure("ls_cold", ls_cold)
    r.measure("ls_warm", lambda: median_of(cfg.repeat, lambda _: ls_lr(tree)))
    r.measure("du_warm", lambda: median_of(cfg.repeat, lambda _: du_s(tree)))
    r.broken = False
    r.measure("unmount", lambda: _unmount(target))
    r.measure("storage", lambda: _storage(target))


class Inputs:
    """Payload, stdlib tarball, SQL script, and (for read-only targets) a native tree with
    the same content: seq.bin and tree/."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.payload = make_payload(cfg.size_mib, cfg.data)
        self.tarball, self.tree_files = stdlib_tarball(cfg.cache)
        self.sql = sqlite_script(cfg.cache, cfg.rows)
        self._fixture: Path | None = None

    def fixture(self) -> Path:
        if self._fixture is None:
            root = self.cfg.scratch / "_fixture"
            _remove_tree(root)
            root.mkdir(parents=True)
            (root / "seq.bin").write_bytes(self.payload)
            (root / "tree").mkdir()
            _timed_tool(["tar", "-xf", str(self.tarball), "-C", str(root / "tree")])
            self._fixture = root
        return self._fixture

    def cleanup(self) -> None:
        if self._fixture is not None:
            _remove_tree(self._fixture)
            self._fixture = None


# --------------------------------------------------------------------------------------------
# report


def _cell(unit: str, result: Result | None, base: Result | None) -> str:
    if result is None:
        return ""
    if result.timed_out:
        ratio = f" >{result.seconds / base.seconds:.0f}x" if base and base.seconds > 0 else ""
        return f">{result.seconds:g} s{ratio}"
    if unit == "MB/s":
        mbps = result.mb_per_s
        value = f"{mbps:,.0f} MB/s" if mbps is not None else "?"
    elif unit == "MiB":
        value = f"{result.nbytes / MiB:,.1f} MiB"
    else:
        value = f"{result.seconds:.3f} s"
    ratio = ""
    if unit == "s" and base is not None and base.seconds < 0.002:
        pass  # e.g. mount/unmount of a plain directory: a ratio means nothing
    elif base is not None:
        if unit == "MiB" and base.nbytes:
            ratio = f" {result.nbytes / base.nbytes:.2f}x"
        elif unit != "MiB" and base.seconds > 0 and result.seconds > 0:
            ratio = f" {result.seconds / base.seconds:.2f}x"
    return value + ratio


def format_table(runs: Sequence[TargetRun], baseline: str = "native") -> str:
    """Rows = workloads, columns = targets; each cell is the value and, after it, the
    ratio to the baseline (time ratio: >1 means slower; for storage: size ratio)."""
    shown = [run for run in runs if not run.skipped]
    base = next((run for run in runs if run.name == baseline), None)
    header = ["workload", *[run.name for run in shown]]
    table = [header]
    for key, label, unit in ROWS:
        if not any(key in run.results or key in run.errors for run in shown):
            continue
        row = [label]
        for run in shown:
            if key in run.errors:
                row.append("ERROR")
            elif key in run.results:
                row.append(_cell(unit, run.results[key], base.results.get(key) if base else None))
            else:
                row.append("n/a")
        table.append(row)
    table.append(["total run time", *[f"{run.seconds:.1f} s" for run in shown]])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=int(_env("BENCH_SIZE_MIB", "64")))
    p.add_argument("--repeat", type=int, default=int(_env("BENCH_REPEAT", "3")))
    p.add_argument("--files", type=int, default=int(_env("BENCH_FILES", "5000")))
    p.add_argument("--rows", type=int, default=int(_env("BENCH_ROWS", "100000")))
    p.add_argument(
        "--data", default=_env("BENCH_DATA", "random"), choices=["random", "text", "zeros"]
    )
    p.add_argument("--targets", default=_env("BENCH_TARGETS", ""), help="comma-separated names")
    p.add_argument(
        "--scratch", type=Path, default=Path(_env("BENCH_SCRATCH", "/var/tmp/cartfs-bench"))
    )
    p.add_argument(
        "--cache", type=Path, default=Path(_env("BENCH_CACHE", "/var/tmp/cartfs-bench-cache"))
    )
    p.add_argument(
        "--sqlite-timeout",
        type=float,
        default=float(_env("BENCH_SQLITE_TIMEOUT", "600")),
        help="kill the sqlite3 workload after this many seconds and report '>N s'",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="quick preset: --repeat 1 --files 1000 --sqlite-timeout 10",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--list", action="store_true", help="list targets and exit")
    args = p.parse_args(argv)
    if args.quick:
        # Keep 100k sqlite rows: below ~60k, sqlite never spills its 2 MiB page cache
        # mid-transaction and the small-random-write cliff (JuiceFS: 0.9 s -> 34 s) is hidden.
        args.repeat, args.files = 1, 1000
        args.sqlite_timeout = min(args.sqlite_timeout, 10.0)
    cfg = Config(
        size_mib=args.size_mib,
        repeat=args.repeat,
        files=args.files,
        rows=args.rows,
        data=args.data,
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        scratch=args.scratch.absolute(),
        cache=args.cache.absolute(),
        keep=args.keep,
    )
    return cfg, args


def main(argv: Sequence[str] | None = None) -> int:
    global SQLITE_TIMEOUT
    cfg, args = parse_args(argv)
    SQLITE_TIMEOUT = args.sqlite_timeout
    # SIGTERM -> SystemExit, so that the finally blocks and atexit unmount everything.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    targets = peers.all_targets()
    if args.list:
        return peers.main()
    if cfg.targets:
        known = {t.name: t for t in targets + peers.extra_targets()}
        unknown = [name for name in cfg.targets if name not in known]
        if unknown:
            print(f"unknown targets: {', '.join(unknown)}; see --list", file=sys.stderr)
            return 2
        targets = [known[name] for name in cfg.targets]

    inputs = Inputs(cfg)
    print(
        f"cartfs benchmark: {cfg.size_mib} MiB {cfg.data} payload, median of {cfg.repeat}, "
        f"stdlib tree of {inputs.tree_files} files ({inputs.tarball.stat().st_size / MiB:.0f} MiB"
        f" tar), {cfg.files} small files, {cfg.rows} sqlite rows; kernel "
        f"{platform.release()}, {os.cpu_count()} CPUs; scratch {cfg.scratch}",
        flush=True,
    )
    runs: list[TargetRun] = []
    try:
        for target in targets:
            print(f"  {target.name} ...", end=" ", flush=True)
            try:
                run = run_target(target, cfg, inputs)
            except Exception as exc:
                run = TargetRun(target.name, skipped=f"failed: {exc}")
                traceback.print_exc()
            runs.append(run)
            status = f"skipped ({run.skipped})" if run.skipped else f"{run.seconds:.1f} s"
            print(status, flush=True)
    finally:
        inputs.cleanup()
        for target in targets:
            target.unmount()
    print()
    print(format_table(runs))
    print("\nratio = time / native time (>1 slower; for MB/s rows too); storage: size ratio")
    for run in runs:
        if run.skipped:
            print(f"skipped {run.name}: {run.skipped}")
        elif run.version or run.description:
            print(f"{run.name}: {run.description}" + (f" - {run.version}" if run.version else ""))
        for key, err in run.errors.items():
            print(f"error {run.name}/{key}: {err}")
    json_path: Path | None = args.json
    if json_path is not None:
        payload = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "runs": [
                {**asdict(run), "results": {k: asdict(v) for k, v in run.results.items()}}
                for run in runs
            ],
        }
        json_path.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
