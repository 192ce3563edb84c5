"""The cartfs mount against tmpfs, a native directory and the peers, in one run.

Same machine, same files, same workloads (``workloads.py``: sequential write/read at 1 MiB
and 4 KiB blocks with cold and warm reads, untar of the Python stdlib, ``ls -lR``, ``du``,
a 100k-row sqlite3 transaction, small-file creation), on every target of ``peers.py``:
native dir, tmpfs, cartfs, JuiceFS (sqlite3 metadata, local storage), fuse-zip, archivemount,
ratarmount. Prints the table with ratios, then checks the issue's targets::

    python benchmarks/mount_bench.py                 # 1 GiB file, median of 3
    python benchmarks/mount_bench.py --quick         # 256 MiB, one run of each
    python benchmarks/mount_bench.py --settings      # cartfs only, one mount setting off
                                                     # at a time (what each one is worth)
    python benchmarks/mount_bench.py --targets native,tmpfs,cartfs --size-mib 512

Install the peers first: ``bash benchmarks/_setup/install_peers.sh``. Run as root, alone
(runs drop the page cache machine-wide).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers
import workloads
from workloads import Config, Inputs, Result, TargetRun

PASSTHROUGH_CREATE_VS_TMPFS = 25.0
"""pyfuse3's passthrough example created 5,000 files ~25x slower than tmpfs here."""

MOUNT = "cartfs mount --foreground {options} {{archive}} {{mountpoint}}"

SETTINGS: list[tuple[str, str]] = [
    ("cartfs", ""),  # the defaults: everything on
    ("cartfs-no-writeback", "-o writeback=0"),
    ("cartfs-threads", "-o threads=1"),
    ("cartfs-no-timeouts", "-o attr_timeout=0,entry_timeout=0,negative_timeout=0"),
    ("cartfs-readahead-128k", "-o read_ahead_kb=128"),
    ("cartfs-zstd", "-o compress=zstd"),
    ("cartfs-no-xattr", "-o xattr=0"),  # the one trade of a feature for speed
]


def cartfs_variants() -> list[peers.Target]:
    """One cartfs target per setting (name, mount options)."""
    return [peers.CartFS(mount_cmd=MOUNT.format(options=opts), name=name)
            for name, opts in SETTINGS]


def _speed(run: TargetRun | None, key: str) -> float | None:
    """Bytes per second (throughput rows) or 1/seconds (time rows): bigger is better."""
    if run is None or key not in run.results:
        return None
    result: Result = run.results[key]
    if result.timed_out or result.seconds <= 0:
        return None
    return (result.nbytes or 1) / result.seconds


def _ratio(runs: dict[str, TargetRun], key: str, name: str, base: str) -> float | None:
    """How fast ``name`` is relative to ``base`` on ``key`` (1.0 = as fast, 0.5 = half)."""
    mine, theirs = _speed(runs.get(name), key), _speed(runs.get(base), key)
    return None if mine is None or theirs is None else mine / theirs


def check_targets(runs: dict[str, TargetRun], name: str = "cartfs") -> list[str]:
    """The issue's performance targets, each as one line: PASS, MISS or n/a."""
    checks = [
        ("warm sequential read >= 0.8x native", "read_warm", "native", 0.8),
        ("cold sequential read >= 0.4x native", "read_cold", "native", 0.4),
        ("cold sequential read faster than ratarmount", "read_cold", "ratarmount", 1.0),
        ("sequential write 1 MiB >= 0.3x native", "write_1m", "native", 0.3),
        ("sequential write 4 KiB >= 0.3x native", "write_4k", "native", 0.3),
        ("sequential write 1 MiB >= JuiceFS", "write_1m", "juicefs", 1.0),
        ("sequential write 4 KiB >= JuiceFS", "write_4k", "juicefs", 1.0),
        ("sqlite3 100k-row transaction <= 3x native", "sqlite", "native", 1 / 3),
        (f"file creation within 2x of pyfuse3 passthrough (<= "
         f"{2 * PASSTHROUGH_CREATE_VS_TMPFS:.0f}x tmpfs)", "create", "tmpfs",
         1 / (2 * PASSTHROUGH_CREATE_VS_TMPFS)),
    ]
    lines = []
    for label, key, base, want in checks:
        ratio = _ratio(runs, key, name, base)
        if ratio is None:
            lines.append(f"  n/a   {label}")
        else:
            verdict = "PASS" if ratio >= want else "MISS"
            lines.append(f"  {verdict}  {label}: {ratio:.2f}x {base}")
    return lines


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data", default="random", choices=["random", "text", "zeros"])
    parser.add_argument("--targets", default="", help="comma-separated target names")
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp/cartfs-bench"))
    parser.add_argument("--cache", type=Path, default=Path("/var/tmp/cartfs-bench-cache"))
    parser.add_argument("--sqlite-timeout", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true",
                        help="256 MiB, one run each, 1000 files, sqlite3 capped at 60 s")
    parser.add_argument("--settings", action="store_true",
                        help="cartfs with each mount setting switched off in turn")
    args = parser.parse_args(argv)
    cfg = Config(size_mib=args.size_mib, repeat=args.repeat, files=args.files,
                 rows=args.rows, data=args.data,
                 targets=[t for t in args.targets.split(",") if t],
                 scratch=args.scratch.absolute(), cache=args.cache.absolute())
    if args.quick:
        cfg = replace(cfg, size_mib=min(cfg.size_mib, 256), repeat=1, files=1000)
        args.sqlite_timeout = min(args.sqlite_timeout, 60.0)
    return cfg, args


def choose_targets(cfg: Config, settings: bool) -> list[peers.Target]:
    if settings:
        chosen: list[peers.Target] = [peers.NativeDir(), peers.Tmpfs(), *cartfs_variants()]
    else:
        chosen = peers.all_targets()
    if cfg.targets:
        known = {t.name: t for t in chosen + cartfs_variants() + peers.all_targets()
                 + peers.extra_targets()}
        missing = [n for n in cfg.targets if n not in known]
        if missing:
            raise SystemExit(f"unknown targets: {', '.join(missing)}")
        chosen = [known[n] for n in cfg.targets]
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    workloads.SQLITE_TIMEOUT = args.sqlite_timeout
    targets = choose_targets(cfg, args.settings)
    inputs = Inputs(cfg)
    print(f"mount benchmark: {cfg.size_mib} MiB {cfg.data} file, median of {cfg.repeat}, "
          f"stdlib tree of {inputs.tree_files} files, {cfg.files} small files, "
          f"{cfg.rows} sqlite rows", flush=True)
    runs: list[TargetRun] = []
    try:
        for target in targets:
            print(f"  {target.name} ...", end=" ", flush=True)
            run = workloads.run_target(target, cfg, inputs)
            runs.append(run)
            print(f"skipped ({run.skipped})" if run.skipped else f"{run.seconds:.1f} s",
                  flush=True)
    finally:
        inputs.cleanup()
        for target in targets:
            target.unmount()
    print()
    print(workloads.format_table(runs))
    print("\ncells: value, then time ratio to native (>1 = slower)")
    for run in runs:
        for key, err in run.errors.items():
            print(f"error {run.name}/{key}: {err}")
    by_name = {run.name: run for run in runs if not run.skipped}
    for name in [n for n in by_name if n.startswith("cartfs")]:
        print(f"\ntargets for {name} (speed relative to the named peer):")
        print("\n".join(check_targets(by_name, name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
