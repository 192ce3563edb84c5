"""``cartfs demo [DIR]``: the first command a new user runs.

It builds ``demo.cart`` from trees that always exist where cartfs is installed — cartfs's
own source and the standard library's ``json`` and ``email`` packages — then shows what the
other commands would show: a recursive long listing (cut short), ``info`` and ``fsck``, and
what to try next. The archive is built under a temporary name and renamed into place, so an
existing ``demo.cart`` is replaced whole (and the user is told).
"""

from __future__ import annotations

import argparse
import email
import json
import os
import sys
from pathlib import Path

import cartfs
from cartfs.cli.archive_cmds import describe, fsck_lines, info_lines, run_fsck
from cartfs.cli.common import (
    DeferredInterrupts,
    Progress,
    UsageError,
    add_command,
    add_verbose_option,
    human_size,
    quiet_broken_pipe,
    write_out,
)
from cartfs.cli.listing import listing
from cartfs.cli.putter import Putter, source_bytes
from cartfs.core.archive import Archive

ORDER = 90
NAME = "demo.cart"
LISTING_LINES = 40
EXCLUDE = ["__pycache__", "*.pyc"]


def demo_sources() -> list[tuple[Path, str]]:
    """(local directory, archive path) pairs the demo copies in."""
    return [
        (Path(cartfs.__file__).parent, "/src/cartfs"),
        (Path(json.__file__).parent, "/stdlib/json"),
        (Path(email.__file__).parent, "/stdlib/email"),
    ]


def build(path: Path) -> int:
    """Create the demo archive at ``path``; returns the number of files copied."""
    sources = demo_sources()
    with DeferredInterrupts() as stop, Archive.create(path, title="cartfs demo",
                                                      slug="demo") as archive:
        archive.make_dir("/src", parents=True)
        archive.make_dir("/stdlib", parents=True)
        bar = Progress("building", 0)
        if bar.enabled:
            bar.update(0, source_bytes([os.fsencode(s) for s, _ in sources], EXCLUDE))
        putter = Putter(archive, stop, bar, EXCLUDE, report=bar.note)
        with bar:
            for local, dest in sources:
                parent = archive.resolve(os.path.dirname(dest))
                putter.copy(os.fsencode(local), parent.ino,
                            os.fsencode(os.path.basename(dest)), os.fsencode(dest))
        archive.make_symlink("stdlib/json", "/json")
        if putter.errors:
            raise UsageError(f"the demo could not copy {putter.errors} entries")
        return putter.files


def cmd_demo(args: argparse.Namespace) -> int:
    """Build demo.cart, show it, check it, and suggest what to try next."""
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    final = folder / NAME
    shown = str(final) if args.dir != "." else NAME
    tmp = folder / f".{NAME}.building-{os.getpid()}"
    replacing = final.exists() or final.is_symlink()
    try:
        files = build(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    with quiet_broken_pipe():
        print(f"{'Replaced the existing' if replacing else 'Built'} {shown}: {files} files "
              "from cartfs's own source and Python's json and email packages.\n")
        _show(final, shown)
    return 0


def _show(final: Path, shown: str) -> None:
    with Archive.open(final, readonly=True) as archive:
        print(f"$ cartfs ls -l -R {shown}")
        lines = listing(archive, "/", long=True, recursive=True, human=False)
        for count, line in enumerate(lines):
            if count == LISTING_LINES:
                rest = sum(1 for _ in lines)
                print(f"... ({rest + 1} more lines)")
                break
            write_out(line + "\n")
        details = describe(archive)
        print(f"\n$ cartfs info {shown}")
        print("\n".join(info_lines(details)))
        print(f"\n$ cartfs fsck {shown}")
        sys.stdout.flush()
        report = run_fsck(archive)
        print("\n".join(fsck_lines(report)))
    print(f"""
{human_size(details['logical_bytes'])} of files in a {human_size(details['file_bytes'])} \
archive. Try next:
  cartfs ls -l {shown} /stdlib/json
  cartfs cat {shown} /json/__init__.py | head
  cartfs put {shown} ~/Documents /docs         # copy a folder in (like cp -a)
  cartfs get {shown} /stdlib ./restored        # and back out
  cartfs mv {shown} /src /source; cartfs rm -r {shown} /stdlib/email
  cartfs fsck {shown}
  mkdir -p /mnt/x && cartfs mount {shown} /mnt/x   # then use it with cp, rsync, sqlite3
  cartfs --help""")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add demo to the ``cartfs`` command (found by cli.main)."""
    p = add_command(sub, "demo", help="build demo.cart from real files and show it around",
                       description="Build demo.cart in DIR (default: here) from cartfs's "
                                   "own source and Python's json and email packages, list "
                                   "it, describe it, check it, and suggest what to try next. "
                                   "An existing demo.cart is replaced.")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR",
                   help="where to write demo.cart (default: the current directory)")
    add_verbose_option(p)
    p.set_defaults(func=cmd_demo)
