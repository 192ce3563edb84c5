"""fsck: prove an archive is whole.

It walks every root a commit can reach — the live catalog, every snapshot's catalog, the system
tree, the allocator state — reads every node page and every extent, checks every checksum (and,
when encrypted, every authentication tag), decodes every chunk, and colours each page of the
file with what owns it. Then it proves the allocator's accounting: every page is either free
or owned, never both, never by two different things, and none is forgotten (leaked).

Snapshots share pages with the live tree by design; a page may be reached from several roots
as long as it is the *same* thing (the same node, or the same extent) each time. Finally the
namespace itself is checked: every name leads to an inode, link counts equal the number of
names, directories know their parent, readdir indexes match names.

Damage is reported precisely — page, kind, what is wrong — and the walk goes on past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import snapshots
from .btree import TREE_CATALOG, BTree, Node
from .catalog import (
    REC_CHUNK,
    REC_DIRENT,
    REC_INDEX,
    REC_INODE,
    REC_ORPHAN,
    REC_XATTR,
    ROOT_INO,
    decode_dirent,
    decode_index,
    decode_inode,
    decode_xattr,
    split_key,
)
from .codec import decompress
from .errors import CartError, CorruptArchive
from .format import (
    FIRST_DATA_PAGE,
    PAGE_SIZE,
    BlobRef,
    PageNo,
    TreeRef,
    decode_chunk_ptr,
    decode_superblock,
)

if TYPE_CHECKING:
    from .archive import Archive

FREE = "free"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and where."""

    message: str
    page: int | None = None
    kind: str | None = None

    def __str__(self) -> str:
        where = []
        if self.page is not None:
            where.append(f"page {self.page}")
        if self.kind:
            where.append(self.kind)
        return f"{' '.join(where)}: {self.message}" if where else self.message


@dataclass
class FsckReport:
    """What fsck found; ``ok`` only when nothing is wrong."""

    total_pages: int = 0
    reachable_pages: int = 0
    free_pages: int = 0
    node_pages: int = 0
    extents: int = 0
    inodes: int = 0
    files: int = 0  # regular files
    directories: int = 0
    other: int = 0  # symlinks, FIFOs, sockets, devices
    snapshots: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not damage

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str, page: int | None = None, kind: str | None = None) -> None:
        self.problems.append(Problem(message, page, kind))


class _PageMap:
    """Who owns each page: an owner label and the run it belongs to.

    Sharing is legal only *between* roots (a snapshot reaching the live tree's node or
    extent); one tree reaching the same run twice is damage — two files sharing an extent
    would corrupt each other once one of them is rewritten. The roots are walked one after
    another, so remembering the last root that reached a run is enough to tell the two apart.
    """

    def __init__(self, total: int, report: FsckReport) -> None:
        self.owner: dict[int, tuple[str, int]] = {}
        self.reached_by: dict[int, str] = {}  # start of a shareable run -> last root
        self.root = ""
        self.total = total
        self.report = report

    def claim(self, start: int, n: int, what: str, *, shareable: bool) -> bool:
        """Mark pages; returns False if the run was already claimed by the same thing."""
        if start < FIRST_DATA_PAGE or start + n > self.total:
            self.report.add(f"{what} points outside the file (pages {start}..{start + n - 1})",
                            start, what)
            return False
        previous = self.owner.get(start)
        if previous is not None and shareable and previous == (what, start):
            if self.reached_by.get(start) == self.root:
                self.report.add(f"{what} reached twice within {self.root}", start, what)
            self.reached_by[start] = self.root
            return False
        for page in range(start, start + n):
            prior = self.owner.get(page)
            if prior is not None:
                self.report.add(f"page used twice: by {prior[0]} and by {what}", page, what)
            self.owner[page] = (what, start)
        if shareable:
            self.reached_by[start] = self.root
        return True


class Checker:
    """One fsck run over an open archive (the caller holds its lock)."""

    def __init__(self, archive: Archive, progress: Progress | None = None) -> None:
        self.archive = archive
        self.report = FsckReport()
        self.progress = progress
        self.pages = _PageMap(archive._alloc.total_pages, self.report)
        self._done = 0
        self._incomplete = False  # a walk stopped at damage: unreached pages prove nothing

    def run(self) -> FsckReport:
        sb = self.archive.superblock
        self.report.total_pages = sb.total_pages
        self._check_superblock_slots()
        self.pages.owner[0] = ("superblock", 0)
        self.pages.owner[1] = ("superblock", 1)
        if not sb.allocator.empty:
            self.pages.claim(sb.allocator.page, sb.allocator.npages, "allocator state",
                             shareable=False)
        if not sb.signature.empty:
            self.pages.claim(sb.signature.page, sb.signature.npages, "signature",
                             shareable=False)
        self._walk_tree(self.archive._system, "system tree", catalog=False)
        live = self.archive._catalog
        self._walk_tree(live, "catalog", catalog=True)
        self._check_namespace(live)
        try:
            snapshot_roots = self.archive._snapshot_roots()
            self._check_horizon(snapshots.horizon(snapshots.list_snapshots(self.archive)))
        except CorruptArchive as exc:  # the list lives in the (damaged) system tree
            self.report.add(f"snapshot list unreadable: {exc.reason}", exc.page, exc.kind)
            snapshot_roots = []
            self._incomplete = True
        for name, root in snapshot_roots:
            self.report.snapshots += 1
            tree = BTree(self.archive._pager, None, self.archive._clock, TREE_CATALOG, root,
                         writable=False)
            self._walk_tree(tree, f"snapshot {name}", catalog=True)
        self._check_allocator()
        return self.report

    def _check_horizon(self, newest_snapshot: int) -> None:
        """The allocator holds back pages born up to its horizon: below the newest snapshot
        it would free pages a snapshot reaches, above it it leaks every freed page."""
        horizon = self.archive._alloc.snapshot_horizon
        if horizon != newest_snapshot:
            self.report.add(f"snapshot horizon is {horizon}, the newest snapshot is at "
                            f"transaction {newest_snapshot}", kind="allocator")

    def _check_superblock_slots(self) -> None:
        """A torn superblock is normal after a crash (the other one is used), but say so —
        and say what it may cost: a torn slot cannot be told from a damaged one, and a
        damaged slot may have held a newer commit than the one opened."""
        for slot in (0, 1):
            page = self.archive._device.pread(PAGE_SIZE, slot * PAGE_SIZE)
            try:
                decode_superblock(page, slot=slot)
            except CartError as exc:
                txid = self.archive.superblock.txid
                self.report.notes.append(
                    f"superblock slot {slot} is not valid ({exc}); opened the commit of "
                    f"transaction {txid} from the other slot. After a crash during a commit "
                    "this is expected; otherwise the damaged slot may have held a newer "
                    "commit, now lost")

    # ---- trees ------------------------------------------------------------------------------

    def _walk_tree(self, tree: BTree, label: str, *, catalog: bool) -> None:
        def descend(ref: TreeRef) -> bool:
            return self.pages.claim(ref.page, 1, "B-tree node", shareable=True)

        self.pages.root = label
        try:
            for visit in tree.walk(descend):
                self.report.node_pages += 1
                self._tick()
                if catalog and visit.node.is_leaf:
                    self._check_leaf(visit.node, label)
        except CorruptArchive as exc:
            self.report.add(f"{label}: {exc.reason}", exc.page, exc.kind)
            self._incomplete = True

    def _tick(self, n: int = 1) -> None:
        self._done += n
        if self.progress is not None:
            self.progress(min(self._done, self.report.total_pages), self.report.total_pages)

    def _check_leaf(self, node: Node, label: str) -> None:
        for key, value in zip(node.keys, node.vals, strict=True):
            try:
                ino, rec, _ = split_key(key)
                if rec == REC_CHUNK:
                    self._check_chunk(key, value, label)
                elif rec == REC_XATTR:
                    stored = decode_xattr(value)
                    if isinstance(stored, BlobRef):
                        self._check_blob(key, stored, f"xattr of inode {ino}")
                elif rec == REC_INODE:
                    decode_inode(ino, value)
            except CorruptArchive as exc:
                self.report.add(f"{label}: {exc.reason}", exc.page or node.page, exc.kind)

    def _check_chunk(self, key: bytes, value: bytes, label: str) -> None:
        ino, _, suffix = split_key(key)
        chunk_no = int.from_bytes(suffix, "big")
        ptr = decode_chunk_ptr(value)
        what = f"chunk {chunk_no} of inode {ino}"
        if ptr.inline_data is not None:
            decompress(ptr.codec, ptr.inline_data, ptr.logical)
            return
        if not self.pages.claim(ptr.page, ptr.npages, "file data", shareable=True):
            return
        self.report.extents += 1
        self._tick(ptr.npages)
        store = self.archive._chunks
        data = store.load_extent(ino, chunk_no, ptr)
        if len(data) > store.chunk_size:
            self.report.add(f"{label}: {what} is longer than a chunk", ptr.page, what)

    def _check_blob(self, owner: bytes, ref: BlobRef, what: str) -> None:
        if self.pages.claim(ref.page, ref.npages, what, shareable=True):
            self.report.extents += 1
            self.archive._pager.read_blob(ref, owner, kind=what)

    # ---- namespace --------------------------------------------------------------------------

    def _check_namespace(self, tree: BTree) -> None:
        """Names → inodes, link counts, parents, readdir indexes (live tree only)."""
        inodes: dict[int, tuple[int, int, int]] = {}  # ino -> (mode, nlink, parent)
        names: dict[int, int] = {}  # ino -> number of names
        subdirs: dict[int, int] = {}
        dirents: dict[tuple[int, int], tuple[int, bytes]] = {}  # (dir, index) -> (ino, name)
        indexes: dict[tuple[int, int], tuple[int, bytes]] = {}
        orphans: set[int] = set()
        sizes: dict[int, int] = {}
        last_chunk: dict[int, int] = {}  # ino -> highest chunk number stored
        owners: set[int] = set()  # inodes that own chunk or xattr records
        try:
            for key, value in tree.items():
                ino, rec, suffix = split_key(key)
                if rec == REC_INODE:
                    inode = decode_inode(ino, value)
                    inodes[ino] = (inode.mode, inode.nlink, inode.parent)
                    sizes[ino] = inode.size
                elif rec == REC_CHUNK:
                    owners.add(ino)
                    last_chunk[ino] = int.from_bytes(suffix, "big")
                elif rec == REC_XATTR:
                    owners.add(ino)
                elif rec == REC_DIRENT:
                    child, index = decode_dirent(value)
                    names[child] = names.get(child, 0) + 1
                    dirents[(ino, index)] = (child, bytes(suffix))
                elif rec == REC_INDEX:
                    child, name = decode_index(value)
                    indexes[(ino, int.from_bytes(suffix, "big"))] = (child, name)
                elif rec == REC_ORPHAN:
                    orphans.add(int.from_bytes(suffix, "big"))
        except CartError as exc:
            self.report.add(f"catalog scan stopped: {exc}")
            self._incomplete = True
            return
        self.report.inodes = len(inodes)
        self._check_records(inodes, sizes, last_chunk, owners)
        if ROOT_INO not in inodes:
            self.report.add("the root directory is missing", kind="catalog")
        for (directory, _index), (child, name) in dirents.items():
            label = f"entry {name!r} of directory {directory}"
            if child not in inodes:
                self.report.add(f"{label} names missing inode {child}", kind="catalog")
            elif inodes[child][0] & 0o170000 == 0o040000:
                subdirs[directory] = subdirs.get(directory, 0) + 1
                if inodes[child][2] != directory:
                    self.report.add(f"{label}: directory {child} records parent "
                                    f"{inodes[child][2]}", kind="catalog")
        if dirents != indexes:
            self.report.add("readdir index does not match directory entries", kind="catalog")
        for ino, (mode, nlink, _parent) in inodes.items():
            is_dir = mode & 0o170000 == 0o040000
            if is_dir:
                self.report.directories += 1
                expected = 2 + subdirs.get(ino, 0)
            else:
                if mode & 0o170000 == 0o100000:
                    self.report.files += 1
                else:
                    self.report.other += 1  # symlinks, FIFOs, sockets, devices
                expected = names.get(ino, 0)
            if ino in orphans and nlink == 0:
                continue
            if nlink != expected:
                self.report.add(f"inode {ino} has link count {nlink}, expected {expected}",
                                kind="inode")
            elif not is_dir and expected == 0:
                self.report.add(f"inode {ino} has no name and is not an orphan", kind="inode")

    def _check_records(self, inodes: dict[int, tuple[int, int, int]], sizes: dict[int, int],
                       last_chunk: dict[int, int], owners: set[int]) -> None:
        """Chunk and xattr records belong to a live inode, and chunks lie inside the file:
        anything else is space no operation will ever free."""
        for ino in sorted(owners - inodes.keys()):
            self.report.add(f"records of missing inode {ino} (chunks or xattrs)",
                            kind="catalog")
        chunk_size = self.archive._chunks.chunk_size
        for ino, chunk_no in last_chunk.items():
            if ino in sizes and chunk_no * chunk_size >= sizes[ino]:
                self.report.add(f"inode {ino} stores chunk {chunk_no}, beyond its size of "
                                f"{sizes[ino]} bytes", kind="catalog")

    # ---- allocator --------------------------------------------------------------------------

    def _check_allocator(self) -> None:
        alloc = self.archive._alloc
        owner = self.pages.owner
        self.report.reachable_pages = len(owner)
        for start, n in list(alloc.iter_free()) + list(alloc.iter_pending()):
            for page in range(start, start + n):
                if page in owner:
                    self.report.add(f"page is free but used by {owner[page][0]}", page,
                                    "allocator")
                owner[page] = (FREE, start)
                self.report.free_pages += 1
        if self._incomplete:
            self.report.notes.append("leak check skipped: damage stopped a walk, so pages "
                                     "beyond it could not be reached")
            return
        for start, _n in alloc.live_owned_entries():
            if start not in owner:
                self.report.add("page is recorded as the live tree's but nothing reaches it",
                                start, "allocator")
        for start, n in alloc.dead_entries():
            for page in range(start, start + n):
                if page not in owner:
                    self.report.add("page is held for snapshots but no snapshot reaches it",
                                    page, "allocator")
                    owner[page] = ("dead", start)
                elif owner[page][0] == FREE:  # a later sweep would free it a second time
                    self.report.add("page is both free and held for snapshots", page,
                                    "allocator")
        for page in range(FIRST_DATA_PAGE, alloc.total_pages):
            if page not in owner:
                self.report.add("page is neither free nor used (leaked)", PageNo(page),
                                "allocator")


def fsck(archive: Archive, progress: Progress | None = None) -> FsckReport:
    """Check an open archive completely; see the module docstring."""
    with archive._lock:
        if archive.writable:
            archive.sync()  # the walk reads committed pages only
        return Checker(archive, progress).run()
