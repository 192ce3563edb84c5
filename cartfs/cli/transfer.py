"""``cartfs put`` and ``cartfs get``: copy between the local disk and an archive, like
``cp -a`` (files and whole trees; modes, owners as root, ns times, symlinks, hard links,
extended attributes, FIFOs, empty directories; sparse files stay sparse).

Where things land follows cp: with DEST an existing directory each source goes inside it
under its own name; otherwise the single source becomes DEST. Several sources need an
existing directory. A source named ``.`` or ``/`` copies its contents into DEST.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from cartfs.cli.common import (
    STREAMING,
    Progress,
    add_archive_argument,
    add_command,
    core_reason,
    human_size,
    open_archive,
    parse_size,
    writing,
)
from cartfs.cli.getter import Getter, archive_bytes
from cartfs.cli.putter import Putter, source_bytes
from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.catalog import Inode
from cartfs.core.errors import CartError, NotADirectory, NotFound
from cartfs.core.paths import parent_and_name, split_path

ORDER = 20


def note(text: str) -> None:
    """Warnings go to stderr as one ``cartfs: ...`` line each."""
    print(text, file=sys.stderr, flush=True)


def _resolve(archive: Archive, path: str | bytes) -> Inode | None:
    try:
        return archive.resolve(path)
    except NotFound:
        return None


def _join(parent: bytes, name: bytes) -> bytes:
    return parent.rstrip(b"/") + b"/" + name


# ---- put -----------------------------------------------------------------------------------


def _existing_sources(paths: list[str]) -> tuple[list[bytes], int]:
    """Sources that exist (reporting the others, as cp does), and how many are missing."""
    found, missing = [], 0
    for path in paths:
        try:
            os.lstat(path)
            found.append(os.fsencode(path))
        except OSError as exc:
            note(f"cartfs: cannot read {path}: {exc.strerror}")
            missing += 1
    return found, missing


def cmd_put(args: argparse.Namespace) -> int:
    """Copy local files and trees into the archive (see the module docstring)."""
    sources, failed = _existing_sources(args.sources)
    if not sources:
        return 1
    options = OpenOptions(commit_bytes=args.commit_every) if args.commit_every else None
    dest = os.fsencode(args.dest)
    started = time.monotonic()
    bar = Progress("put", 0)
    if bar.enabled:  # sized before the archive is opened: Ctrl-C here needs no care
        bar.update(0, source_bytes(sources, args.exclude))
    with writing(args, options=options) as (archive, stop):
        putter = Putter(archive, stop, bar, list(args.exclude), report=bar.note)
        try:
            _put_all(archive, putter, sources, dest)
        finally:
            bar.close()
    if bar.stream.isatty():  # after the final commit: the time includes it
        note(f"put {putter.files} files, {human_size(bar.done)} in "
             f"{time.monotonic() - started:.1f} s")
    return 1 if failed or putter.errors else 0


def _put_all(archive: Archive, putter: Putter, sources: list[bytes], dest: bytes) -> None:
    target = _resolve(archive, dest)
    into = target is not None and target.is_dir
    if len(sources) > 1 and not into:
        what = "is not a directory" if target is not None else "does not exist"
        raise CartError(f"{os.fsdecode(dest)}: {what} (several sources need an existing "
                        "directory)")
    for source in sources:
        base = os.path.basename(source.rstrip(b"/"))  # b"" for "/"; "dir/." stays "."
        if into and target is not None:
            if base in (b"", b".", b".."):
                putter.merge(source, target, dest)
            else:
                putter.copy(source, target.ino, base, _join(dest, base))
        else:
            parent, name = _parent_of(archive, dest)
            putter.copy(source, parent.ino, name, dest)


def _parent_of(archive: Archive, dest: bytes) -> tuple[Inode, bytes]:
    parents, name = parent_and_name(dest)
    parent_path = b"/" + b"/".join(parents)
    try:
        parent = archive.resolve(parent_path)
    except CartError as exc:
        raise CartError(f"{os.fsdecode(dest)}: {core_reason(parent_path, exc)}") from None
    if not parent.is_dir:
        raise NotADirectory(f"{os.fsdecode(parent_path)}: not a directory")
    return parent, name


# ---- get -----------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    """Copy files and trees out of the archive (see the module docstring)."""
    dest = os.fsencode(args.dest)
    started = time.monotonic()
    with open_archive(args, readonly=True, options=STREAMING) as archive:
        sources, failed = _archive_sources(archive, args.paths)
        if not sources:
            return 1
        into = os.path.isdir(dest)
        if len(sources) > 1 and not into:
            what = "is not a directory" if os.path.lexists(dest) else "does not exist"
            raise CartError(f"{args.dest}: {what} (several sources need an existing "
                            "directory)")
        if not into:
            folder = os.path.dirname(dest) or b"."
            if not os.path.isdir(folder):
                raise CartError(f"{args.dest}: folder {os.fsdecode(folder)} does not exist")
        bar = Progress("get", 0)
        if bar.enabled:
            bar.update(0, archive_bytes(archive, [inode.ino for _, inode in sources]))
        getter = Getter(archive, bar, report=bar.note)
        try:
            for src, inode in sources:
                parts = split_path(src)
                local = _join(dest, parts[-1]) if into and parts else dest
                getter.copy(inode.ino, b"/" + b"/".join(parts), local)
        finally:
            bar.close()
    if bar.stream.isatty():
        note(f"got {getter.files} files, {human_size(bar.done)} in "
             f"{time.monotonic() - started:.1f} s")
    return 1 if failed or getter.errors else 0


def _archive_sources(archive: Archive, paths: list[str]) -> tuple[list[tuple[bytes, Inode]],
                                                                  int]:
    found, missing = [], 0
    for path in paths:
        raw = os.fsencode(path)
        try:
            found.append((raw, archive.lstat(raw)))
        except CartError as exc:
            note(f"cartfs: {path}: {core_reason(path, exc)}")
            missing += 1
    return found, missing


# ---- registration ----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add put and get to the ``cartfs`` command (found by cli.main)."""
    p = add_command(sub, "put", help="copy local files and trees into the archive (like cp -a)",
        description="Copy LOCAL files and directories into the archive at DEST, like cp -a. "
                    "If DEST is an existing directory, each LOCAL goes inside it. An "
                    "interrupted put leaves every file complete or absent.")
    add_archive_argument(p)
    p.add_argument("sources", nargs="+", metavar="LOCAL", help="local files or directories")
    p.add_argument("dest", metavar="DEST", help="destination path inside the archive")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="skip entries whose name matches PATTERN (shell wildcards; "
                        "repeatable), e.g. --exclude __pycache__")
    p.add_argument("--commit-every", type=parse_size, metavar="SIZE",
                   help="commit at least every SIZE of data (default 512M); smaller loses "
                        "less work if the copy is interrupted")
    p.set_defaults(func=cmd_put)

    p = add_command(sub, "get", help="copy files and trees out of the archive (like cp -a)",
        description="Copy PATHs from the archive to LOCALDEST, like cp -a. If LOCALDEST is "
                    "an existing directory, each PATH goes inside it. Existing files are "
                    "replaced.")
    add_archive_argument(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="paths inside the archive")
    p.add_argument("dest", metavar="LOCALDEST", help="local destination")
    p.set_defaults(func=cmd_get)
