"""``cartfs ls | cat | mkdir | rm | mv``: look at and rearrange the tree inside an archive.

Paths inside the archive are absolute (``/docs/a.txt``; a relative path is taken from the
root). Reading commands open the archive read-only (so several can run at once); changing
commands take the writer's lock and commit once at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from cartfs.cli.common import (
    STREAMING,
    add_archive_argument,
    add_command,
    core_reason,
    open_archive,
    path_error,
    quiet_broken_pipe,
    write_out,
    writing,
)
from cartfs.cli.listing import listing, long_lines, row_for, short_lines
from cartfs.core.archive import Archive
from cartfs.core.errors import (
    CartError,
    DirectoryNotEmpty,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from cartfs.core.paths import split_path

ORDER = 30
READ_PIECE = 1 << 20


@contextlib.contextmanager
def about(path: str) -> Iterator[None]:
    """Core errors raised while working on ``path`` name the whole path."""
    try:
        yield
    except CartError as exc:
        raise path_error(path, exc) from None


# ---- ls ------------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    """List a directory (or show one file), like ls."""
    with open_archive(args, readonly=True) as archive, quiet_broken_pipe():
        first = True
        for path in args.paths or ["/"]:
            if not first:
                write_out("\n")
            first = False
            with about(path):
                for line in _ls_one(archive, path, args, header=len(args.paths) > 1):
                    write_out(line + "\n")
    return 0


def _ls_one(archive: Archive, path: str, args: argparse.Namespace, *,
            header: bool) -> Iterator[str]:
    inode = archive.lstat(path)
    if inode.is_symlink and not args.long:
        with contextlib.suppress(CartError):
            inode = archive.stat(path)  # ls follows a named link to a directory
    if not inode.is_dir:
        row = row_for(archive, path, inode)
        yield from long_lines([row], human=args.human) if args.long else short_lines([row])
        return
    shown = "/" + "/".join(os.fsdecode(p) for p in split_path(path))
    if header and not args.recursive:
        yield f"{shown}:"
    yield from listing(archive, shown, long=args.long, recursive=args.recursive,
                       human=args.human)


# ---- cat -----------------------------------------------------------------------------------


def cmd_cat(args: argparse.Namespace) -> int:
    """Raw bytes of files to stdout, streamed (a file larger than RAM is fine)."""
    with open_archive(args, readonly=True, options=STREAMING) as archive, \
            quiet_broken_pipe():
        out = sys.stdout.buffer
        for path in args.paths:
            with about(path):
                inode = archive.stat(path)
                if inode.is_dir:
                    raise IsADirectory("is a directory")
                for offset in range(0, inode.size, READ_PIECE):
                    out.write(archive.read(inode.ino, offset, READ_PIECE))
        out.flush()
    return 0


# ---- mkdir / rm / mv -------------------------------------------------------------------------


def cmd_mkdir(args: argparse.Namespace) -> int:
    """Create directories (-p: with parents, and no error if they exist)."""
    with writing(args) as (archive, stop):
        for path in args.paths:
            stop.check()
            with about(path):
                archive.make_dir(path, args.mode, parents=args.parents,
                                 exist_ok=args.parents)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove files; directories only with -r (everything below them too). Like rm(1), a
    path that cannot be removed is reported and the others are still removed."""
    status = 0
    with writing(args) as (archive, stop):
        for path in args.paths:
            stop.check()
            try:
                _remove_one(archive, path, args)
            except (NotFound, IsADirectory, DirectoryNotEmpty, NotADirectory,
                    PermissionDenied) as exc:
                print(f"cartfs: {path_error(path, exc)}", file=sys.stderr)
                status = 1
            except CartError as exc:  # damage, a full disk, a failed commit: stop here
                raise path_error(path, exc) from None
    return status


def _remove_one(archive: Archive, path: str, args: argparse.Namespace) -> None:
    if not split_path(path):
        raise CartError("refusing to remove the root directory")
    try:
        inode = archive.lstat(path)
    except NotFound:
        if args.force:
            return
        raise
    if inode.is_dir and not args.recursive:
        raise IsADirectory("is a directory (use -r to remove it and its contents)")
    archive.remove(path, recursive=args.recursive)


def cmd_mv(args: argparse.Namespace) -> int:
    """Rename or move (into DST when DST is a directory); O(1) even for big directories."""
    with writing(args) as (archive, _stop):
        try:
            archive.move(args.src, args.dst)
        except CartError as exc:
            reason = core_reason(args.src, exc)
            raise CartError(f"cannot move {args.src} to {args.dst}: {reason}") from None
    return 0


def _mode(text: str) -> int:
    try:
        return int(text, 8) & 0o7777
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ls, cat, mkdir, rm and mv to the ``cartfs`` command (found by cli.main)."""
    p = add_command(sub, "ls", add_help=False, help="list a directory inside the archive",
                       description="List PATHs inside the archive (default /), like ls -A.")
    p.add_argument("--help", action="help", help="show this help message and exit")
    add_archive_argument(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="paths inside the archive")
    p.add_argument("-l", dest="long", action="store_true", help="long listing, as ls -l")
    p.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="with -l, sizes like 1.5 MiB")
    p.set_defaults(func=cmd_ls)

    p = add_command(sub, "cat", help="write files from the archive to stdout",
                       description="Write the raw bytes of PATHs to stdout.")
    add_archive_argument(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files inside the archive")
    p.set_defaults(func=cmd_cat)

    p = add_command(sub, "mkdir", help="make directories inside the archive",
                       description="Make directories inside the archive.")
    add_archive_argument(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="directories to create")
    p.add_argument("-p", "--parents", action="store_true",
                   help="make parents as needed; no error if it exists")
    p.add_argument("-m", "--mode", type=_mode, default=0o755, help="octal mode (755)")
    p.set_defaults(func=cmd_mkdir)

    p = add_command(sub, "rm", help="remove files or directories inside the archive",
                       description="Remove PATHs inside the archive.")
    add_archive_argument(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="paths to remove")
    p.add_argument("-r", "-R", "--recursive", dest="recursive", action="store_true",
                   help="remove directories and their contents")
    p.add_argument("-f", "--force", action="store_true", help="ignore missing paths")
    p.set_defaults(func=cmd_rm)

    p = add_command(sub, "mv", help="move or rename inside the archive",
                       description="Move SRC to DST, or into DST if it is a directory.")
    add_archive_argument(p)
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.set_defaults(func=cmd_mv)
