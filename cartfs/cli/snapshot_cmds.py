"""``cartfs snapshot create | list | delete | restore | diff``: named, read-only,
copy-on-write pins of an archive's tree.

A snapshot costs O(1) to take (it pins a committed root inside the archive) and holds only
the pages the live tree has since replaced; ``list`` shows, per snapshot, the bytes that
deleting it would give back.

Mounted archives: the mount daemon holds the archive open, so opening it here fails with
ArchiveBusy. ``create``, ``delete`` and ``list`` then find the archive's mount in
/proc/self/mountinfo (type ``fuse.cartfs``, source = the archive's path) and go through the
mount's ``.snapshots`` directory, ZFS-style: ``mkdir .snapshots/NAME`` takes a snapshot,
``rmdir`` deletes one, listing it lists them, and the attributes ``cartfs.id``,
``cartfs.txid``, ``cartfs.created`` and ``cartfs.held`` of ``.snapshots/NAME`` give the
columns of ``list``. ``restore`` and ``diff`` need the archive
itself (a restore replaces the tree under the mount's open files), so they ask for an
unmount.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import errno
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cartfs.cli.common import (
    DeferredInterrupts,
    UsageError,
    add_archive_argument,
    human_size,
    open_archive,
    os_error,
    write_out,
)
from cartfs.core.archive import Archive
from cartfs.core.errors import AlreadyExists, ArchiveBusy, CartError, NotFound
from cartfs.core.format import PAGE_SIZE

ORDER = 40
LIVE = "@live"
SNAPSHOTS_DIR = ".snapshots"
NAME_MAX = 255
MOUNT_TYPES = ("fuse.cartfs", "fuse")
LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})  # Unicode categories refused (as the core does)


# ---- names ----------------------------------------------------------------------------------


def check_name(name: str, *, creating: bool = False) -> str:
    """The same rules as the core (one path component, at most 255 bytes), checked here
    too because through a mount the name becomes part of a path."""
    raw = os.fsencode(name)
    if not raw or b"/" in raw or b"\0" in raw or raw in (b".", b".."):
        raise UsageError(f"invalid snapshot name {name!r} (one non-empty name without '/')")
    if len(raw) > NAME_MAX:
        raise UsageError(f"invalid snapshot name: longer than {NAME_MAX} bytes")
    if creating and name == LIVE:
        raise UsageError(f"{LIVE!r} is reserved: it means the live tree in `snapshot diff`")
    if creating:
        bad = next((c for c in name if unicodedata.category(c) in LINE_BREAKING), None)
        if bad is not None:
            raise UsageError(f"invalid snapshot name {name!r}: control characters (here "
                             f"{bad!r}) are not allowed")
    return name


def shown(name: str) -> str:
    """A name as one table cell: control characters (in snapshots made before they were
    refused) are written as escapes."""
    if not any(unicodedata.category(c) in LINE_BREAKING for c in name):
        return name
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in LINE_BREAKING else c for c in name)


def _local_time(ns: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ns / 1e9).astimezone()
    return stamp.strftime("%Y-%m-%d %H:%M:%S %z")


# ---- finding the mount of a busy archive ----------------------------------------------------


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as three-digit octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def find_archive_mount(archive_path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The mount point serving ``archive_path`` (the last one listed, i.e. the visible one),
    or None. The cartfs daemon mounts with ``fsname=<archive path>`` and ``subtype=cartfs``,
    so the line reads ``... - fuse.cartfs /abs/archive.cart ...``."""
    found = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2 or tail[0] not in MOUNT_TYPES:
            continue
        if _same_file(_unescape(tail[1]), archive_path):
            found = _unescape(fields[4])
    return found


def _syncfs(path: str) -> None:
    """Push what the kernel still caches for the mount (writeback cache) to the daemon, so
    a snapshot taken now holds everything written before it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


@dataclass(frozen=True)
class MountedSnapshots:
    """A mounted archive's ``.snapshots`` directory: the way in while the daemon holds the
    archive."""

    mountpoint: str

    @property
    def folder(self) -> str:
        return os.path.join(self.mountpoint, SNAPSHOTS_DIR)

    def _fail(self, exc: OSError, name: str | None = None) -> CartError:
        if exc.errno == errno.EEXIST:
            return AlreadyExists(f"snapshot {name!r} exists")
        if exc.errno == errno.ENOENT and name is not None:
            return NotFound(f"no snapshot named {name!r}")
        return os_error(exc, os.path.join(self.folder, name) if name else self.folder)

    def create(self, name: str) -> None:
        _syncfs(self.mountpoint)
        try:
            os.mkdir(os.path.join(self.folder, name))
        except OSError as exc:
            raise self._fail(exc, name) from None

    def delete(self, name: str) -> None:
        try:
            os.rmdir(os.path.join(self.folder, name))
        except OSError as exc:
            raise self._fail(exc, name) from None

    def names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.folder))
        except OSError as exc:
            raise self._fail(exc) from None

    def _fact(self, name: str, attribute: str) -> int | None:
        try:
            return int(os.getxattr(os.path.join(self.folder, name), attribute))
        except (OSError, ValueError):  # an older daemon, -o xattr=0, or deleted meanwhile
            return None

    def rows(self) -> list[dict[str, Any]]:
        """``snapshot_rows`` through the mount: the daemon offers each snapshot's id,
        transaction, creation time and held bytes as attributes of ``.snapshots/NAME``
        (``cartfs.id``, ``cartfs.txid``, ``cartfs.created``, ``cartfs.held``); missing
        ones are None (shown as "-"). Oldest first, as without a mount."""
        rows = []
        for name in self.names():
            created = self._fact(name, "cartfs.created")
            rows.append({"name": name, "id": self._fact(name, "cartfs.id"),
                         "txid": self._fact(name, "cartfs.txid"), "created_ns": created,
                         "created": None if created is None else _local_time(created),
                         "exclusive_bytes": self._fact(name, "cartfs.held")})
        return sorted(rows, key=lambda r: (r["txid"] is None, r["txid"] or 0, r["id"] or 0,
                                           r["name"]))


def mounted_snapshots(args: argparse.Namespace, busy: ArchiveBusy) -> MountedSnapshots:
    """The mount behind an ArchiveBusy, if it offers ``.snapshots``; else the error."""
    mountpoint = find_archive_mount(os.path.abspath(args.archive))
    if mountpoint is None:
        raise busy
    if not os.path.isdir(os.path.join(mountpoint, SNAPSHOTS_DIR)):
        raise ArchiveBusy(f"{args.archive}: mounted at {mountpoint}, and that mount does not "
                          f"offer {SNAPSHOTS_DIR}/: unmount it first (cartfs umount "
                          f"{mountpoint})")
    return MountedSnapshots(mountpoint)


def needs_unmount(args: argparse.Namespace, busy: ArchiveBusy, what: str) -> CartError:
    mountpoint = find_archive_mount(os.path.abspath(args.archive))
    if mountpoint is None:
        return busy
    return ArchiveBusy(f"{args.archive}: mounted at {mountpoint}; {what} needs the archive "
                       f"itself: unmount it first (cartfs umount {mountpoint})")


# ---- commands -------------------------------------------------------------------------------


def _writable(args: argparse.Namespace, body: Callable[[Archive], int],
              mounted: Callable[[MountedSnapshots], int] | None, what: str) -> int:
    """Run ``body`` on the archive opened for writing (interrupts wait for it to finish), or
    ``mounted`` through the mount if the daemon holds the archive."""
    try:
        archive = open_archive(args)
    except ArchiveBusy as busy:
        if mounted is None:
            raise needs_unmount(args, busy, what) from None
        return mounted(mounted_snapshots(args, busy))
    with archive, DeferredInterrupts():
        return body(archive)


def cmd_create(args: argparse.Namespace) -> int:
    """Take a snapshot of the current tree."""
    name = check_name(args.name, creating=True)

    def body(archive: Archive) -> int:
        info = archive.create_snapshot(name)
        print(f"created snapshot {name} of {args.archive} (transaction {info.txid})")
        return 0

    def mounted(snaps: MountedSnapshots) -> int:
        snaps.create(name)
        print(f"created snapshot {name} of {args.archive} (through the mount at "
              f"{snaps.mountpoint})")
        return 0

    return _writable(args, body, mounted, "snapshot create")


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a snapshot; the pages only it held become free."""
    name = check_name(args.name)

    def body(archive: Archive) -> int:
        before = archive.statistics().allocator
        archive.delete_snapshot(name)
        after = archive.statistics().allocator
        freed = (before.used_pages + before.dead_pages) - (after.used_pages + after.dead_pages)
        print(f"deleted snapshot {name}; {human_size(max(freed, 0) * PAGE_SIZE)} freed")
        return 0

    def mounted(snaps: MountedSnapshots) -> int:
        snaps.delete(name)
        print(f"deleted snapshot {name} (through the mount at {snaps.mountpoint})")
        return 0

    return _writable(args, body, mounted, "snapshot delete")


def cmd_restore(args: argparse.Namespace) -> int:
    """Make the live tree the snapshot's tree (other snapshots stay)."""
    name = check_name(args.name)

    def body(archive: Archive) -> int:
        info = archive.snapshot(name).info
        archive.restore_snapshot(name)
        print(f"restored snapshot {name}: the live tree is as it was at "
              f"{_local_time(info.created_ns)}")
        return 0

    return _writable(args, body, None, "snapshot restore")


def snapshot_rows(archive: Archive) -> list[dict[str, Any]]:
    """What ``snapshot list`` shows, as plain data (its --json output)."""
    return [{"name": s.name, "id": s.id, "txid": s.txid, "created_ns": s.created_ns,
             "created": _local_time(s.created_ns), "exclusive_bytes": s.exclusive_bytes}
            for s in archive.list_snapshots(usage=True)]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = ("NAME", "CREATED", "TXID", "HELD ONLY BY IT")
    cells = [(shown(r["name"]), r["created"] or "-", "-" if r["txid"] is None else str(r["txid"]),
              "-" if r["exclusive_bytes"] is None else human_size(r["exclusive_bytes"]))
             for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]
    return ["  ".join(c[i].ljust(widths[i]) if i < 2 else c[i].rjust(widths[i])
                      for i in range(4)).rstrip() for c in [header, *cells]]


def cmd_list(args: argparse.Namespace) -> int:
    """Name, creation time, transaction and exclusive bytes of each snapshot."""
    note = ""
    try:
        with open_archive(args, readonly=True) as archive:
            rows = snapshot_rows(archive)
    except ArchiveBusy as busy:
        snaps = mounted_snapshots(args, busy)
        rows = snaps.rows()
        complete = all(r[k] is not None for r in rows for k in ("txid", "created",
                                                                 "exclusive_bytes"))
        note = f"(through the mount at {snaps.mountpoint}" + \
            ("" if complete else ": some details unavailable from this mount") + ")"
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no snapshots {note}".rstrip())
    else:
        write_out("\n".join(_table(rows)) + "\n")
        if note:
            print(note)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Paths added, removed and changed from A to B (``@live`` = the live tree)."""
    old, new = (None if n == LIVE else check_name(n) for n in (args.old, args.new))
    try:
        archive = open_archive(args, readonly=True)
    except ArchiveBusy as busy:
        raise needs_unmount(args, busy, "snapshot diff") from None
    with archive:
        changes = archive.diff(old, new)
    if args.json:
        print(json.dumps([{"kind": c.kind, "path": c.path} for c in changes], indent=2))
    else:
        write_out("".join(f"{c.kind:<8} {c.path}\n" for c in changes))
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    raise UsageError("snapshot: give a subcommand: create, list, delete, restore or diff "
                     "(cartfs snapshot --help)")


# ---- registration ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "snapshot", help="create, list, delete, restore and compare snapshots",
        description="Snapshots are named, read-only, copy-on-write pins of the archive's tree "
                    "inside the archive: taking one is O(1) whatever the archive's size, and "
                    "it holds only what the live tree has changed since. On a mounted "
                    "archive, create/list/delete go through MOUNT/.snapshots/.")
    group.set_defaults(func=cmd_group)
    cmds = group.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND")

    p = cmds.add_parser("create", help="take a snapshot of the current tree",
                        description="Commit and pin the current tree under NAME.")
    add_archive_argument(p)
    p.add_argument("name", metavar="NAME", help="snapshot name (one path component)")
    p.set_defaults(func=cmd_create)

    p = cmds.add_parser("list", help="list snapshots and the space each holds",
                        description="Name, creation time (local), transaction id, and the "
                                    "bytes held only by each snapshot (what deleting it "
                                    "frees).")
    add_archive_argument(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("delete", help="delete a snapshot, freeing what only it held",
                        description="Delete snapshot NAME; pages no other snapshot and not "
                                    "the live tree reach become free.")
    add_archive_argument(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_delete)

    p = cmds.add_parser("restore", help="make the live tree a snapshot's tree",
                        description="Replace the live tree with snapshot NAME's tree. Every "
                                    "snapshot stays; changes made since NAME are lost unless "
                                    "you snapshot them first. The archive must not be "
                                    "mounted.")
    add_archive_argument(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_restore)

    p = cmds.add_parser("diff", help="paths added, removed and changed between two trees",
                        description=f"Compare snapshot A with B; either may be {LIVE} for "
                                    "the live tree. Prints 'added', 'removed' or 'changed' "
                                    "and the path, one per line. Entries are matched by "
                                    "name: one replaced by another of the same type (a new "
                                    "inode) is 'changed', a type change is 'removed' then "
                                    "'added'; '/' is the root directory's own attributes.")
    add_archive_argument(p)
    p.add_argument("old", metavar="A", help=f"snapshot name or {LIVE}")
    p.add_argument("new", metavar="B", help=f"snapshot name or {LIVE}")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_diff)
