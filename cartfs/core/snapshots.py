"""Snapshots: named, read-only, copy-on-write pins of a committed catalog root.

Theory of operation
-------------------
Creating a snapshot commits, then records ``(name, id, txid, catalog root)`` in the system
tree — O(1) whatever the archive's size — and raises the allocator's *snapshot horizon* to
that txid. From then on, a catalog page or extent the live tree frees is kept (on the dead
list) if it was born at or before the horizon, because a snapshot may still reach it.

Deleting a snapshot removes its record, lowers the horizon to the newest remaining snapshot,
and sweeps the dead list: every dead run that no remaining root (live tree or snapshot)
reaches is freed; runs the live tree reaches again (after a restore) leave the dead list,
since the live tree will free them itself. Marking stops at shared subtrees, so the sweep
costs about one walk of the archive's metadata (never its data).

Restoring makes the snapshot's root the live root. Pages of the old live tree that no
snapshot reaches are freed; those a snapshot still reaches join the dead list. The other
snapshots are untouched.

The system tree (which holds these records) and the allocator state are never part of a
snapshot: restoring does not bring back old snapshots, policies or the manifest.
"""

from __future__ import annotations

import struct
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .btree import BTree
from .catalog import NAME_MAX
from .errors import AlreadyExists, InvalidArgument, NameTooLong, NotFound
from .format import PAGE_SIZE, PageNo, TreeRef, TxnId
from .reach import catalog_tree, leaf_runs, reachable_starts, runs_of

if TYPE_CHECKING:
    from .archive import Archive

SNAP_PREFIX = b"snap/"
SNAP_SEQ_KEY = b"snapseq"
_RECORD = struct.Struct("<QQQQqQ")  # id, txid, root page, root birth, created_ns, next_ino


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot; ``exclusive_bytes`` is filled in only when asked for (it needs a walk)."""

    name: str
    id: int
    txid: int
    created_ns: int
    root: TreeRef
    next_ino: int
    exclusive_bytes: int | None = None


def check_snapshot_name(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or b"/" in raw or b"\0" in raw or raw in (b".", b".."):
        raise InvalidArgument(f"invalid snapshot name {name!r}")
    if len(raw) > NAME_MAX:
        raise NameTooLong("snapshot name longer than 255 bytes")
    return raw


LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
"""Unicode categories refused in new snapshot names: control characters (newline, tab,
escape...) and line/paragraph separators would break ``snapshot list`` and terminals."""


def check_new_snapshot_name(name: str) -> bytes:
    """The rules for a name being created: those of :func:`check_snapshot_name`, and no
    control characters. (Existing snapshots are still found by any name they have, so ones
    made before this rule can be deleted.)"""
    raw = check_snapshot_name(name)
    for char in name:
        if unicodedata.category(char) in LINE_BREAKING:
            raise InvalidArgument(f"invalid snapshot name {name!r}: control characters "
                                  f"(here {char!r}) are not allowed")
    return raw


def _decode(name: bytes, value: bytes) -> SnapshotInfo:
    sid, txid, page, birth, created, next_ino = _RECORD.unpack(value)
    return SnapshotInfo(name.decode("utf-8", "surrogateescape"), sid, txid, created,
                        TreeRef(PageNo(page), TxnId(birth)), next_ino)


def list_snapshots(archive: Archive) -> list[SnapshotInfo]:
    """Every snapshot, oldest first."""
    end = SNAP_PREFIX[:-1] + bytes((SNAP_PREFIX[-1] + 1,))
    found = [_decode(key[len(SNAP_PREFIX):], value)
             for key, value in archive._system.items(SNAP_PREFIX, end)]
    return sorted(found, key=lambda s: (s.txid, s.id))


def get_snapshot(archive: Archive, name: str) -> SnapshotInfo:
    raw = check_snapshot_name(name)
    value = archive._system.get(SNAP_PREFIX + raw)
    if value is None:
        raise NotFound(f"no snapshot named {name!r}")
    return _decode(raw, value)


def horizon(snapshots: list[SnapshotInfo]) -> int:
    return max((s.txid for s in snapshots), default=0)


def create_snapshot(archive: Archive, name: str) -> SnapshotInfo:
    """Pin the current state (committing it first) under ``name``."""
    raw = check_new_snapshot_name(name)
    if archive._system.get(SNAP_PREFIX + raw) is not None:
        raise AlreadyExists(f"snapshot {name!r} exists")
    archive._commit()
    sb = archive.superblock
    seq_raw = archive._system.get(SNAP_SEQ_KEY)
    sid = (int.from_bytes(seq_raw, "little") if seq_raw else 0) + 1
    archive._system.put(SNAP_SEQ_KEY, sid.to_bytes(8, "little"))
    info = SnapshotInfo(name, sid, sb.txid, time.time_ns(), sb.catalog, sb.next_ino)
    archive._system.put(SNAP_PREFIX + raw, _RECORD.pack(
        info.id, info.txid, info.root.page, info.root.birth, info.created_ns, info.next_ino))
    archive._alloc.snapshot_horizon = max(archive._alloc.snapshot_horizon, sb.txid)
    archive._alloc.set_live_owned({})  # the new snapshot reaches all of the live tree
    archive._commit()
    return info


def set_snapshot_root(archive: Archive, info: SnapshotInfo, root: TreeRef) -> None:
    """Vacuum moved a snapshot's tree: record its new root (same content)."""
    archive._system.put(SNAP_PREFIX + check_snapshot_name(info.name), _RECORD.pack(
        info.id, info.txid, root.page, root.birth, info.created_ns, info.next_ino))


def exclusive_usage(archive: Archive, infos: list[SnapshotInfo]) -> dict[int, int]:
    """Bytes that deleting each snapshot would free (by snapshot id), in one pass.

    Every run (node page or extent) gets a label: the one root that reaches it, or SHARED.
    The roots (the live tree first, then every snapshot) are walked one after the other; a
    walk stops at runs already labelled with its own root or SHARED. Meeting a run another
    root labelled makes it SHARED, and everything below it too (that root reached all of
    it). A run is therefore visited at most three times (unlabelled, own, shared), whatever
    the number of snapshots; each snapshot's figure is the pages labelled with it alone.
    (The first version walked every other root once per snapshot: quadratic.)"""
    archive._commit()
    pager, clock = archive._pager, archive._clock
    roots = [archive.superblock.catalog] + [s.root for s in infos]
    label: dict[int, int] = {}  # first page of a run -> root index, or SHARED
    pages: dict[int, int] = {}  # first page of a run -> pages in it
    for index, root in enumerate(roots):
        if not root.empty:
            _label_tree(catalog_tree(pager, clock, root), root, index, label, pages)
    held = [0] * len(roots)
    for start, owner in label.items():
        if owner != SHARED:
            held[owner] += pages[start]
    return {info.id: held[i + 1] * PAGE_SIZE for i, info in enumerate(infos)}


SHARED = -1


def _label_tree(tree: BTree, root: TreeRef, index: int, label: dict[int, int],
                pages: dict[int, int]) -> None:
    """Walk one root for :func:`exclusive_usage` (nodes depth first, explicit stack)."""

    def claim(start: int, shared: bool) -> bool:
        """Label a run reached from ``index`` (``shared``: also from the root that
        labelled its parent); True if what lies below it must be visited."""
        owner = label.get(start)
        if owner is None:
            label[start] = SHARED if shared else index
            return True
        if owner == SHARED or (owner == index and not shared):
            return False
        label[start] = SHARED
        return True

    stack: list[tuple[TreeRef, int | None, bool]] = [(root, None, False)]
    while stack:
        ref, level, shared = stack.pop()
        if not claim(ref.page, shared):
            continue
        pages[ref.page] = 1
        node = tree.load(ref, level=level)
        below = label[ref.page] == SHARED
        if node.is_leaf:
            for start, n, _birth in leaf_runs(node):
                pages[start] = n
                claim(start, below)
        else:
            stack.extend((child, node.level - 1, below) for child in node.vals)


def snapshot_usage(archive: Archive, info: SnapshotInfo) -> int:
    """Bytes that deleting this snapshot would free."""
    return exclusive_usage(archive, [info] + [s for s in list_snapshots(archive)
                                              if s.id != info.id])[info.id]


def delete_snapshot(archive: Archive, name: str) -> None:
    """Forget a snapshot and free the pages only it held."""
    get_snapshot(archive, name)
    archive._commit()
    archive._system.delete(SNAP_PREFIX + check_snapshot_name(name))
    _sweep_dead(archive)
    archive._commit()


def _sweep_dead(archive: Archive) -> None:
    """Free dead runs no root reaches; hand runs the live tree reaches back to it."""
    alloc = archive._alloc
    remaining = list_snapshots(archive)
    alloc.snapshot_horizon = horizon(remaining)
    pager, clock = archive._pager, archive._clock
    held = reachable_starts(pager, clock, [s.root for s in remaining])
    live_runs = list(runs_of(catalog_tree(pager, clock, archive.superblock.catalog), set()))
    live = {start for start, _, _ in live_runs}
    doomed: list[int] = []
    adopted: list[int] = []
    for start, _n in alloc.dead_entries():
        if start in held:
            continue
        (adopted if start in live else doomed).append(start)
    alloc.release_dead(doomed, archive._clock.txid)
    alloc.forget_dead(adopted)
    # Old pages that only the live tree reaches (after a restore) must not be parked on
    # the dead list when the live tree frees them: remember them.
    alloc.set_live_owned({start: n for start, n, birth in live_runs
                          if start not in held and birth <= alloc.snapshot_horizon})


def restore_snapshot(archive: Archive, name: str) -> None:
    """Make the snapshot's tree the live tree; every snapshot stays."""
    info = get_snapshot(archive, name)
    archive._commit()
    old_root = archive.superblock.catalog
    pager, clock, alloc = archive._pager, archive._clock, archive._alloc
    held = reachable_starts(pager, clock, [s.root for s in list_snapshots(archive)])
    txid = clock.txid
    for start, n, _ in runs_of(catalog_tree(pager, clock, old_root), set()):
        if start in held:
            alloc.keep_dead(start, n)
        elif alloc.is_dead(start):
            alloc.release_dead([start], txid)
        else:
            alloc.free(start, n, 0, txid, shared=False)
    alloc.set_live_owned({})  # the snapshot reaches all of its own tree
    archive._replace_catalog_root(info.root)
    archive._commit()
