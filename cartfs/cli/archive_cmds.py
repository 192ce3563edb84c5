"""``cartfs create | info | fsck``: make an archive, describe it, prove it whole.

``info`` and ``fsck`` open the archive read-only: they change nothing (an interrupted
``put`` leaves an unnamed half-written file that only the next writable open reclaims, and
fsck reports such orphans as fine) and may run beside other readers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Any

from cartfs.cli.common import (
    PASSPHRASE_ENV,
    Progress,
    UsageError,
    add_archive_argument,
    add_command,
    add_passphrase_options,
    add_verbose_option,
    human_size,
    open_archive,
    parse_size,
    quiet_broken_pipe,
    read_passphrase,
    write_out,
)
from cartfs.core.archive import Archive
from cartfs.core.catalog import ROOT_INO
from cartfs.core.errors import CartError, CorruptArchive, PassphraseRequired
from cartfs.core.format import DEFAULT_CHUNK_SIZE, PAGE_SIZE
from cartfs.core.fsck import FsckReport, fsck

ORDER = 10

# ---- create --------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    """Create a new, empty archive (never overwriting a file)."""
    folder = os.path.dirname(os.path.abspath(args.archive))
    if not os.path.isdir(folder):
        raise UsageError(f"{args.archive}: folder {folder} does not exist")
    passphrase = None
    if args.encrypt or args.key_file:
        try:
            passphrase = read_passphrase(args, confirm=True)
        except PassphraseRequired:
            raise UsageError("--encrypt needs a passphrase: give --key-file FILE or set "
                             f"${PASSPHRASE_ENV} (or run it in a terminal)") from None
        if not passphrase:
            raise UsageError("an empty passphrase would not protect anything")
    with Archive.create(args.archive, compression=args.compression, level=args.level,
                        chunk_size=args.chunk_size, title=args.title, slug=args.slug,
                        description=args.description, author=args.author,
                        passphrase=passphrase):
        pass
    enc = ", encrypted" if passphrase else ""
    print(f"created {args.archive} ({args.compression}, chunk size "
          f"{human_size(args.chunk_size)}{enc})")
    return 0


# ---- info ----------------------------------------------------------------------------------


def count_tree(archive: Archive) -> dict[str, int]:
    """Files, directories, symlinks, others and logical bytes of the live tree (each
    hard-linked inode once) — what the archive holds, before compression."""
    counts = {"files": 0, "directories": 1, "symlinks": 0, "other": 0, "logical_bytes": 0}
    seen: set[int] = set()
    stack = [ROOT_INO]
    while stack:
        for entry in archive.readdir(stack.pop()):
            if entry.ino in seen:
                continue
            seen.add(entry.ino)
            inode = archive.getattr(entry.ino)
            if inode.is_dir:
                counts["directories"] += 1
                stack.append(inode.ino)
            elif inode.is_reg:
                counts["files"] += 1
                counts["logical_bytes"] += inode.size
            elif inode.is_symlink:
                counts["symlinks"] += 1
            else:
                counts["other"] += 1
    return counts


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def describe(archive: Archive) -> dict[str, Any]:
    """Everything ``cartfs info`` reports, as plain data (its --json output)."""
    sb = archive.superblock
    alloc = archive.statistics().allocator
    counts = count_tree(archive)
    # In use = not free: the live tree, what only snapshots hold, the superblocks — the
    # figure fsck proves page by page.
    in_use = alloc.total_pages - alloc.free_pages - alloc.pending_pages
    used = in_use * PAGE_SIZE
    file_size = os.stat(archive.path).st_size if archive.path else alloc.total_pages * PAGE_SIZE
    return {
        "path": archive.path,
        "format_version": sb.format_version,
        "uuid": sb.uuid.hex(),
        "encrypted": sb.encrypted,
        "frozen": sb.frozen,
        "compression": archive.compression,
        "compression_level": sb.codec_level,
        "chunk_size": sb.chunk_size,
        "page_size": PAGE_SIZE,
        "txid": sb.txid,
        "created": _iso(sb.created_ns),
        "committed": _iso(sb.committed_ns),
        "file_bytes": file_size,
        "total_pages": alloc.total_pages,
        "used_pages": in_use,
        "free_pages": alloc.free_pages + alloc.pending_pages,
        "snapshot_pages": alloc.dead_pages,
        "used_bytes": used,
        **counts,
        "compression_ratio": round(counts["logical_bytes"] / used, 3) if used else None,
        "snapshots": [s.name for s in archive.list_snapshots()],
        "manifest": archive.manifest(),
    }


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def info_lines(d: dict[str, Any]) -> list[str]:
    """The human form of :func:`describe`."""
    level = f" level {d['compression_level']}" if d["compression_level"] else ""
    ratio = f"{d['compression_ratio']:.2f}x" if d["compression_ratio"] else "-"
    lines = [
        f"archive:      {d['path']}",
        f"format:       version {d['format_version']}, uuid {d['uuid']}"
        + (", frozen (read-only)" if d["frozen"] else ""),
        f"encrypted:    {'yes (AES-256-GCM)' if d['encrypted'] else 'no'}",
        f"compression:  {d['compression']}{level}, chunk size {human_size(d['chunk_size'])}",
        f"file size:    {human_size(d['file_bytes'])} ({d['total_pages']} pages of "
        f"{human_size(d['page_size'])})",
        f"pages:        {d['used_pages']} in use ({human_size(d['used_bytes'])}"
        + (f", {d['snapshot_pages']} of them held only by snapshots"
           if d["snapshot_pages"] else "") + f"), {d['free_pages']} free",
        f"contents:     {_count(d['files'], 'file')}, {_count(d['directories'], 'directory')}"
        f", {_count(d['symlinks'], 'symlink')}"
        + (f", {d['other']} other" if d["other"] else ""),
        f"data:         {human_size(d['logical_bytes'])} in files; compression ratio "
        f"{ratio} (file sizes, holes included, / pages in use)",
        f"snapshots:    {', '.join(d['snapshots']) if d['snapshots'] else 'none'}",
        f"transaction:  {d['txid']} (committed {d['committed']}; created {d['created']})",
    ]
    manifest = {k: v for k, v in d["manifest"].items() if k != "created" and v}
    for key, value in manifest.items():
        lines.append(f"{key + ':':<13} {value}")
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    """Describe an archive: sizes, pages, compression, contents, manifest."""
    with open_archive(args, readonly=True) as archive:
        try:
            details = describe(archive)
        except CorruptArchive as exc:  # opened fine, damaged further in: say which archive
            raise CartError(f"{args.archive}: {exc} (run 'cartfs fsck' for the full "
                            "picture)") from None
    with quiet_broken_pipe():
        if args.json:
            print(json.dumps(details, indent=2, sort_keys=True))
        else:
            write_out("\n".join(info_lines(details)) + "\n")
    return 0


# ---- fsck ----------------------------------------------------------------------------------


def run_fsck(archive: Archive, *, label: str = "checking") -> FsckReport:
    """fsck with a progress bar (pages) on a terminal."""
    with Progress(label, archive.superblock.total_pages, unit="pages") as bar:
        report = fsck(archive, bar.update)
        bar.update(bar.total)  # free pages are counted, not read: the bar ends full
        return report


def fsck_lines(report: FsckReport) -> list[str]:
    """Summary, then each problem (page, kind, message) and note."""
    lines = [
        f"pages:     {report.total_pages} ({report.reachable_pages} in use, "
        f"{report.free_pages} free); {report.node_pages} B-tree nodes, "
        f"{report.extents} extents read and checked",
        f"contents:  {report.inodes} inodes: {report.files} files, "
        f"{report.directories} directories, {report.other} other; "
        f"{report.snapshots} snapshots",
    ]
    lines += [f"note:      {note}" for note in report.notes]
    lines += [f"PROBLEM:   {problem}" for problem in report.problems]
    lines.append("result:    OK, no problems found" if report.ok else
                 f"result:    {len(report.problems)} problem(s) found")
    return lines


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check every page, checksum, chunk and link count; exit 0 only if all is well."""
    with open_archive(args, readonly=True) as archive:
        try:
            report = run_fsck(archive)
        except CartError as exc:
            raise CartError(f"{args.archive}: check stopped: {exc}") from None
    with quiet_broken_pipe():
        write_out("\n".join(fsck_lines(report)) + "\n")
    return 0 if report.ok else 1


# ---- registration ----------------------------------------------------------------------------


def _chunk_size(text: str) -> int:
    size = parse_size(text)
    if size & (size - 1) or not 4096 <= size <= 1 << 20:
        raise argparse.ArgumentTypeError("chunk size must be a power of two, 4K to 1M")
    return size


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add create, info and fsck to the ``cartfs`` command (found by cli.main)."""
    p = add_command(sub, "create", help="create a new, empty archive",
                       description="Create a new, empty archive (refuses to overwrite).")
    p.add_argument("archive", metavar="ARCHIVE", help="the .cart file to create")
    add_verbose_option(p)
    p.add_argument("--compression", choices=("lz4", "zstd", "none"), default="lz4",
                   help="codec for file data (default lz4)")
    p.add_argument("--level", type=int, default=0,
                   help="compression level (0 = the codec's default)")
    p.add_argument("--chunk-size", type=_chunk_size, default=DEFAULT_CHUNK_SIZE,
                   metavar="SIZE", help="unit of compression, 4K..1M (default 64K)")
    for name in ("title", "slug", "description", "author"):
        p.add_argument(f"--{name}", default="", help=f"manifest {name}")
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt with a passphrase (asked twice, or --key-file, or "
                        "$CARTFS_PASSPHRASE)")
    add_passphrase_options(p)
    p.set_defaults(func=cmd_create)

    p = add_command(sub, "info", help="describe an archive",
                       description="Sizes, pages used and free, compression, contents, "
                                   "transaction id and manifest.")
    add_archive_argument(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = add_command(sub, "fsck", help="check an archive completely",
                       description="Read and check every page, checksum and chunk, the "
                                   "allocator and the namespace. Exit 0 only if all is well.")
    add_archive_argument(p)
    p.set_defaults(func=cmd_fsck)
