"""Snapshots: pinned copy-on-write roots that nothing the live tree does can change.

The traps of the first implementation: snapshots that were copies of the page cache (so a
crash or a reopen lost them, and a restore did not bring deleted files back), and page reuse
that let new writes land on pages a snapshot still reads. Every test here compares the
*whole* state of a tree — every inode field (all four times, owner, mode, link count, inode
number), content digests, symlink targets and every xattr — before and after.

The helpers at the top (``full_state``, ``build_rich_tree``, ``churn``) are shared with the
other snapshot, vacuum and freeze tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import select
import signal
import time
from pathlib import Path
from typing import Any, Protocol

import pytest

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.btree import BTree, TxnClock
from cartfs.core.catalog import ROOT_INO, Inode
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import (
    AlreadyExists,
    ArchiveBusy,
    InvalidArgument,
    NameTooLong,
    NotFound,
    ReadOnly,
)
from cartfs.core.format import PAGE_SIZE, TreeRef
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams
from cartfs.core.namespace import DirEntry
from cartfs.core.pager import Pager
from cartfs.core.reach import catalog_tree, reachable_starts, runs_of
from cartfs.core.views import Change
from cartfs.testing.workload import random_change

NEVER = OpenOptions(commit_bytes=1 << 40, commit_interval=1e9)
State = dict[str, tuple[Any, ...]]


class ReadTree(Protocol):
    """The read half of the API: the live Archive and a SnapshotView both have it."""

    def getattr(self, ino: int) -> Inode: ...
    def readdir(self, ino: int, after: int = 0, limit: int = 1 << 30) -> list[DirEntry]: ...
    def read(self, ino: int, offset: int, size: int) -> bytes: ...
    def readlink(self, ino: int) -> bytes: ...
    def listxattr(self, ino: int) -> list[bytes]: ...
    def getxattr(self, ino: int, name: str | bytes) -> bytes: ...


# ---- helpers shared with the other snapshot/vacuum/freeze tests ------------------------------



def exclusive_pages(pager: Pager, clock: TxnClock, root: TreeRef,
                    others: list[TreeRef]) -> int:
    """Pages reachable from ``root`` and from none of ``others``: the per-snapshot walk,
    kept here as the reference the one-pass count in list_snapshots must equal."""
    shared = reachable_starts(pager, clock, others)
    seen_nodes: set[int] = set()
    total = 0
    if not root.empty:
        for start, n, _ in runs_of(catalog_tree(pager, clock, root), seen_nodes):
            if start not in shared:
                total += n
    return total


def full_state(tree: ReadTree) -> State:
    """Path -> (whole inode record, content SHA-256, symlink target, xattrs)."""
    out: State = {}
    stack = [("/", ROOT_INO)]
    while stack:
        path, ino = stack.pop()
        inode = tree.getattr(ino)
        digest = ""
        if inode.is_reg:
            digest = hashlib.sha256(tree.read(ino, 0, inode.size)).hexdigest()
        target = tree.readlink(ino) if inode.is_symlink else b""
        xattrs = tuple(sorted((n, tree.getxattr(ino, n)) for n in tree.listxattr(ino)))
        out[path] = (dataclasses.astuple(inode), digest, target, xattrs)
        if inode.is_dir:
            for entry in tree.readdir(ino):
                stack.append((path.rstrip("/") + "/" + os.fsdecode(entry.name), entry.ino))
    return out


def state_digest(state: State) -> str:
    text = json.dumps(sorted(state.items()), default=lambda b: b.hex())
    return hashlib.sha256(text.encode()).hexdigest()


def build_rich_tree(archive: Archive, seed: int = 0) -> None:
    """Every kind of thing a snapshot must keep: inline, multi-chunk and sparse files,
    directories, a symlink, hard links, a FIFO, small and blob-sized xattrs, odd modes,
    owners and times."""
    rng = random.Random(seed)
    archive.make_dir("/docs/deep/er", parents=True)
    archive.write_file("/docs/small.txt", b"tiny")
    archive.write_file("/docs/big.bin", rng.randbytes(70_000))
    archive.write_file("/docs/deep/text", b"compressible line\n" * 5000)
    sparse = archive.write_file("/sparse", b"head")
    archive.write(sparse.ino, 300_000, b"tail")
    archive.write_file("/docs/deep/er/linked", rng.randbytes(9000))
    archive.make_hardlink("/docs/deep/er/linked", "/hardlink")
    archive.make_symlink("docs/small.txt", "/link")
    archive.mknod(ROOT_INO, "fifo", 0o010640)
    big = archive.resolve("/docs/big.bin")
    archive.setxattr(big.ino, "user.small", b"v" * 10)
    archive.setxattr(big.ino, "user.large", rng.randbytes(5000))
    archive.setxattr(archive.resolve("/docs").ino, "user.dir", b"on a directory")
    archive.setattr(big.ino, mode=0o600, uid=1234, gid=5678, atime_ns=111, mtime_ns=222)


def mutate_everything(archive: Archive, seed: int = 1) -> None:
    """Overwrite, delete, rename, truncate, change xattrs and metadata, add files."""
    rng = random.Random(seed)
    big = archive.resolve("/docs/big.bin")
    archive.write(big.ino, 5000, rng.randbytes(20_000))
    archive.truncate(archive.resolve("/docs/deep/text").ino, 1000)
    archive.remove("/docs/small.txt")
    archive.move("/docs/deep", "/moved")
    archive.setxattr(big.ino, "user.large", rng.randbytes(6000))
    archive.removexattr(big.ino, "user.small")
    archive.removexattr(archive.resolve("/docs").ino, "user.dir")
    archive.setattr(big.ino, mode=0o644, uid=1, gid=2, atime_ns=333, mtime_ns=444)
    archive.remove("/hardlink")
    archive.write(archive.resolve("/moved/er/linked").ino, 0, b"changed through one name")
    archive.remove("/link")
    archive.make_symlink("elsewhere", "/link")
    archive.remove("/fifo")
    archive.truncate(archive.resolve("/sparse").ino, 10)
    archive.write_file("/new/file", rng.randbytes(50_000), parents=True)


def churn(archive: Archive, rng: random.Random, steps: int) -> None:
    for _ in range(steps):
        random_change(archive, rng)


def used_and_dead(archive: Archive) -> int:
    stats = archive.statistics().allocator
    return stats.used_pages + stats.dead_pages


def assert_fsck(archive: Archive, label: str = "") -> None:
    report = fsck(archive)
    assert report.ok, f"{label}: " + "\n".join(str(p) for p in report.problems[:10])


def memory_archive(**kwargs: Any) -> Archive:
    return Archive.create_on(MemoryDevice(), chunk_size=4096, options=NEVER, **kwargs)


# ---- a snapshot never changes -----------------------------------------------------------------


def test_snapshot_keeps_content_metadata_and_xattrs(tmp_path: Path) -> None:
    path = tmp_path / "a.cart"
    with Archive.create(path, chunk_size=4096, options=NEVER) as archive:
        build_rich_tree(archive)
        before = full_state(archive)
        archive.create_snapshot("before")
        mutate_everything(archive)
        after = full_state(archive)
        assert after != before
        assert full_state(archive.snapshot("before")) == before
        assert_fsck(archive, "after changes")
    with Archive.open(path) as archive:  # a reopen reads the snapshot from disk
        assert full_state(archive.snapshot("before")) == before
        assert full_state(archive) == after
        changes = {(c.kind, c.path) for c in archive.diff("before")}
    assert ("removed", "/docs/small.txt") in changes
    assert ("removed", "/docs/deep") in changes and ("added", "/moved") in changes
    assert ("changed", "/docs/big.bin") in changes and ("added", "/new/file") in changes
    assert ("removed", "/fifo") in changes and ("changed", "/sparse") in changes


def test_diff_reports_replaced_entries_and_the_root() -> None:
    """Regression: a directory removed and made again under the same name (a new inode)
    was never reported, and neither were changes to the root directory's own attributes.
    Every entry is matched by name; one of the same type whose inode or attributes differ
    is "changed" (a replaced file and a replaced directory alike); a type change is
    "removed" then "added"."""
    archive = memory_archive()
    archive.make_dir("/d")
    archive.write_file("/d/inner", b"x")
    archive.make_dir("/e")
    archive.write_file("/f", b"file")
    archive.write_file("/g", b"same")
    archive.create_snapshot("s1")
    root_before = archive.getattr(ROOT_INO)

    archive.setattr(ROOT_INO, mode=0o40700)  # the root's own metadata only
    assert archive.diff("s1") == [Change("changed", "/")]
    archive.setattr(ROOT_INO, mode=root_before.mode, mtime_ns=root_before.mtime_ns,
                    ctime_ns=root_before.ctime_ns)
    assert archive.diff("s1") == []

    archive.create_snapshot("s2")
    archive.remove("/d", recursive=True)
    archive.mkdir(ROOT_INO, "d", 0o700)
    archive.remove("/e")
    archive.mkdir(ROOT_INO, "e", 0o755)  # same mode: only the inode number differs
    e_old, e_new = archive.snapshot("s2").resolve("/e"), archive.resolve("/e")
    archive.setattr(e_new.ino, mtime_ns=e_old.mtime_ns, ctime_ns=e_old.ctime_ns,
                    atime_ns=e_old.atime_ns, uid=e_old.uid, gid=e_old.gid)
    assert archive.diff("s2") == [Change("changed", "/"), Change("changed", "/d"),
                                  Change("removed", "/d/inner"), Change("changed", "/e")]
    assert archive.diff(None, "s2") == [Change("changed", "/"), Change("changed", "/d"),
                                        Change("added", "/d/inner"), Change("changed", "/e")]

    archive.create_snapshot("s3")
    archive.remove("/f")
    archive.write_file("/f", b"file")  # a new file under the old name
    archive.remove("/g")
    archive.make_dir("/g")  # a file became a directory
    archive.write_file("/g/child", b"c")
    changes = archive.diff("s3")
    assert changes == [Change("changed", "/"), Change("changed", "/f"),
                       Change("removed", "/g"), Change("added", "/g"),
                       Change("added", "/g/child")]
    assert archive.diff("s3", "s3") == []


def test_restore_brings_back_deleted_files_and_keeps_other_snapshots(tmp_path: Path) -> None:
    """The seed's restore did not restore deleted files."""
    path = tmp_path / "a.cart"
    with Archive.create(path, chunk_size=4096, options=NEVER) as archive:
        build_rich_tree(archive)
        first = full_state(archive)
        archive.create_snapshot("first")
        mutate_everything(archive)
        second = full_state(archive)
        archive.create_snapshot("second")
        archive.remove("/docs", recursive=True)
        archive.restore_snapshot("first")
        assert full_state(archive) == first
        assert full_state(archive.snapshot("second")) == second
        assert [s.name for s in archive.list_snapshots()] == ["first", "second"]
        assert_fsck(archive, "after restore")
        archive.write_file("/docs/after-restore", b"x" * 10_000)  # the live tree still works
        assert full_state(archive.snapshot("first")) == first
    with Archive.open(path) as archive:
        assert archive.read_file("/docs/small.txt") == b"tiny"
        archive.restore_snapshot("second")
        assert full_state(archive) == second
        assert_fsck(archive, "after second restore")


def test_restore_is_refused_while_files_are_open() -> None:
    archive = memory_archive()
    inode = archive.write_file("/f", b"data")
    archive.create_snapshot("s")
    archive.pin(inode.ino)
    with pytest.raises(ArchiveBusy):
        archive.restore_snapshot("s")
    archive.unpin(inode.ino)
    archive.restore_snapshot("s")


def test_snapshot_names_and_lifecycle() -> None:
    archive = memory_archive()
    archive.create_snapshot("s")
    with pytest.raises(AlreadyExists):
        archive.create_snapshot("s")
    for bad in ("", "a/b", ".", "..", "nul\0"):
        with pytest.raises(InvalidArgument):
            archive.create_snapshot(bad)
    with pytest.raises(NameTooLong):
        archive.create_snapshot("x" * 256)
    for bad in ("two\nlines", "tab\t", "bell\a", "esc\x1b[2J", "del\x7f", "c1\x85",
                "sep\u2028"):
        with pytest.raises(InvalidArgument, match="control characters"):
            archive.create_snapshot(bad)
    archive.create_snapshot("ünïcode ok")
    archive.delete_snapshot("ünïcode ok")
    assert [s.name for s in archive.list_snapshots()] == ["s"]
    for call in (archive.delete_snapshot, archive.restore_snapshot, archive.snapshot):
        with pytest.raises(NotFound):
            call("missing")
    view = archive.snapshot("s")
    with pytest.raises(ReadOnly):
        view.write(ROOT_INO, 0, b"x")
    archive.delete_snapshot("s")
    with pytest.raises(NotFound):  # a stale view must not read reused pages
        view.readdir(ROOT_INO)


def test_snapshots_of_an_encrypted_archive(tmp_path: Path) -> None:
    path = tmp_path / "enc.cart"
    with Archive.create(path, passphrase="pw", kdf=KdfParams.cheap(), chunk_size=4096,
                        options=NEVER) as archive:
        build_rich_tree(archive)
        before = full_state(archive)
        archive.create_snapshot("s")
        mutate_everything(archive)
    with Archive.open(path, passphrase="pw") as archive:
        assert full_state(archive.snapshot("s")) == before
        assert_fsck(archive, "encrypted")


def test_read_only_archives_refuse_snapshot_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.cart"
    with Archive.create(path) as archive:
        archive.create_snapshot("s")
    with Archive.open(path, readonly=True) as archive:
        assert [s.name for s in archive.list_snapshots(usage=True)] == ["s"]
        for call in (archive.create_snapshot, archive.delete_snapshot,
                     archive.restore_snapshot):
            with pytest.raises(ReadOnly):
                call("s")


# ---- space accounting -------------------------------------------------------------------------


def test_deleting_a_snapshot_frees_exactly_the_pages_only_it_held() -> None:
    """``exclusive_bytes`` is a promise: deleting the snapshot gives back exactly that much
    (used + held-for-snapshots pages drop by it), in any deletion order, and statfs sees
    it. fsck proves the accounting after each deletion."""
    rng = random.Random(7)
    archive = memory_archive()
    names = []
    for i in range(8):
        churn(archive, rng, 40)
        names.append(f"s{i}")
        archive.create_snapshot(names[-1])
    churn(archive, rng, 60)
    live = full_state(archive)
    rng.shuffle(names)
    freed_total = 0
    for name in names:
        usage = {s.name: s.exclusive_bytes for s in archive.list_snapshots(usage=True)}
        before, free_before = used_and_dead(archive), archive.statfs().blocks_free
        archive.delete_snapshot(name)
        dropped = (before - used_and_dead(archive)) * PAGE_SIZE
        assert dropped == usage[name], f"deleting {name}: promised {usage[name]}, freed {dropped}"
        assert (archive.statfs().blocks_free - free_before) * PAGE_SIZE == dropped
        freed_total += dropped
        assert_fsck(archive, f"after deleting {name}")
    assert freed_total > 50 * PAGE_SIZE, "the snapshots held too little to prove anything"
    assert archive.statistics().allocator.dead_pages == 0
    assert full_state(archive) == live


def test_held_only_by_each_snapshot_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """``list_snapshots(usage=True)`` labels every page with the one root that reaches it
    in a single pass; it must give exactly what walking every other root per snapshot gave
    (after restores, deletions, twin snapshots of one root, big xattrs), and load each node
    at most three times however many snapshots there are (the per-snapshot walks made 40
    snapshots of 20k files take 6.6 s)."""
    rng = random.Random(11)
    archive = memory_archive()
    for i in range(150):
        archive.write_file(f"/d{i % 7}/f{i}", rng.randbytes(rng.choice((10, 3000, 20_000))),
                           parents=True)
    for n in range(14):
        churn(archive, rng, 12)
        if n % 4 == 1:
            archive.setxattr(ROOT_INO, "user.big", rng.randbytes(6000))  # a blob extent
        archive.create_snapshot(f"s{n}")
        if n == 5:
            archive.create_snapshot("twin")  # the same root as s5: neither holds anything
        if n == 7:
            archive.restore_snapshot("s3")
        if n == 9:
            archive.delete_snapshot("s4")
    churn(archive, rng, 20)
    archive.sync()
    infos = archive.list_snapshots()
    pager, clock = archive._pager, archive._clock
    expected = {}
    for info in infos:
        others = [archive.superblock.catalog] + [s.root for s in infos if s.id != info.id]
        expected[info.name] = exclusive_pages(pager, clock, info.root, others) * PAGE_SIZE
    loads = 0
    real_load = BTree.load

    def counting_load(self: BTree, *args: Any, **kwargs: Any) -> Any:
        nonlocal loads
        loads += 1
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(BTree, "load", counting_load)
    got = {s.name: s.exclusive_bytes for s in archive.list_snapshots(usage=True)}
    monkeypatch.undo()
    assert got == expected
    assert got["twin"] == got["s5"] == 0 and sum(got.values()) > 20 * PAGE_SIZE
    nodes: set[int] = set()
    for root in [archive.superblock.catalog] + [s.root for s in infos]:
        for _ in runs_of(catalog_tree(pager, clock, root), nodes, nodes=False):
            pass
    assert loads <= 3 * len(nodes), (loads, len(nodes))


def test_snapshot_pages_are_never_reused_by_later_writes() -> None:
    """Heavy writing after a snapshot (with every old page freed by the live tree) must
    allocate around what the snapshot holds."""
    rng = random.Random(3)
    archive = memory_archive()
    churn(archive, rng, 80)
    archive.create_snapshot("s")
    pinned = full_state(archive)
    for path in [p for p, _ in archive.scandir("/")]:
        archive.remove("/" + path, recursive=True)
    archive.sync()
    assert archive.statistics().allocator.dead_pages > 0
    churn(archive, rng, 300)
    archive.sync()
    assert full_state(archive.snapshot("s")) == pinned
    assert_fsck(archive)


def test_snapshot_create_is_constant_work() -> None:
    """O(1): taking a snapshot of a 40 MB, 3,000-file archive writes and reads exactly as
    many pages as of a nearly empty one (pager counters, not timing)."""

    def cost(files: int, size: int) -> tuple[int, int, int]:
        archive = memory_archive()
        blob = random.Random(files).randbytes(max(size, 1))
        for i in range(files):
            archive.write_file(f"/d{i % 20}/f{i}", blob[:(i * 997) % len(blob) + 1],
                               parents=True)
        archive.sync()
        before = archive.statistics().pager
        archive.create_snapshot("s")
        after = archive.statistics().pager
        assert archive.statistics().allocator.used_pages > files // 10
        return (after.pages_written - before.pages_written,
                after.pages_read - before.pages_read, after.syncs - before.syncs)

    small = cost(3, 100)
    large = cost(3000, 26_000)
    assert small == large, f"small archive {small}, large archive {large}"
    assert small[0] <= 4


# ---- crash safety -----------------------------------------------------------------------------


def _child(path: str, seed: int, out: int) -> None:
    """Take a snapshot, report its digest, then keep changing the live tree (and taking
    and deleting other snapshots) until killed."""
    rng = random.Random(seed)
    archive = Archive.open(path, options=NEVER)
    name = f"run{seed}"
    archive.create_snapshot(name)
    os.write(out, f"snap {name} {state_digest(full_state(archive.snapshot(name)))}\n".encode())
    while True:
        churn(archive, rng, rng.randint(1, 4))
        roll = rng.random()
        if roll < 0.3:
            archive.sync()
        elif roll < 0.4:
            archive.create_snapshot(f"tmp{rng.randrange(1 << 30)}")
        elif roll < 0.5:
            temporary = [s.name for s in archive.list_snapshots() if s.name.startswith("tmp")]
            if temporary:
                archive.delete_snapshot(rng.choice(temporary))


def _spawn(path: str, seed: int) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        status = 0
        try:
            os.close(read_end)
            _child(path, seed, write_end)
        except BaseException as exc:
            os.write(write_end, f"error {type(exc).__name__}: {exc}\n".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _read_until(fd: int, word: str, timeout: float) -> list[str]:
    data = b""
    deadline = time.monotonic() + timeout
    while not any(line.startswith(word) for line in data.decode().splitlines()):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


def sigkill_runs(path: str, runs: int, seed: int) -> dict[str, str]:
    """Each run: a child takes a snapshot, reports its digest, and keeps writing (and
    creating/deleting other snapshots) until SIGKILL. Every reported snapshot must be
    exactly intact afterwards, in every later run too; fsck must be clean."""
    with Archive.create(path, chunk_size=4096, options=NEVER) as archive:
        build_rich_tree(archive)
    expected: dict[str, str] = {}
    rng = random.Random(seed)
    for run in range(seed, seed + runs):
        pid, fd = _spawn(path, run)
        try:
            lines = _read_until(fd, "snap", timeout=30)
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
        assert not [x for x in lines if x.startswith("error")], lines
        _, name, digest = next(x for x in lines if x.startswith("snap")).split()
        expected[name] = digest
        with Archive.open(path) as archive:
            assert_fsck(archive, f"run {run}")
            for snap, want in expected.items():
                got = state_digest(full_state(archive.snapshot(snap)))
                assert got == want, f"run {run}: snapshot {snap} changed after SIGKILL"
    return expected


def test_snapshots_survive_sigkill_of_a_writer(tmp_path: Path) -> None:
    expected = sigkill_runs(str(tmp_path / "crash.cart"), runs=8, seed=0)
    assert len(set(expected.values())) >= 4, "the writer hardly changed anything"


@pytest.mark.soak
def test_snapshots_sigkill_soak(tmp_path: Path) -> None:
    sigkill_runs(str(tmp_path / "crash.cart"), runs=150, seed=1000)


# ---- the dead list after a restore --------------------------------------------------------------


def test_fsck_notices_a_page_both_free_and_held_for_snapshots() -> None:
    """fsck's accounting covers the dead list too: a dead run that is also free would be
    freed a second time by the next sweep."""
    archive = memory_archive()
    archive.write_file("/f", b"x" * 20_000)
    archive.create_snapshot("s")
    archive.remove("/f")
    archive.sync()
    start, n = archive._alloc.dead_entries()[0]
    assert_fsck(archive, "before the damage")
    archive._alloc.free_now(start, n)  # the kind of double accounting a bug would cause
    report = fsck(archive)
    assert any("both free and held" in str(p) for p in report.problems), report.problems


STALE_DEAD = "held for snapshots but no snapshot reaches it"


def test_dead_list_stays_exact_after_restore_then_delete() -> None:
    archive = memory_archive()
    archive.write_file("/d/a", b"", parents=True)
    archive.create_snapshot("s1")
    archive.remove("/d", recursive=True)
    archive.create_snapshot("s2")  # newer than s1, on the branch the restore abandons
    archive.restore_snapshot("s1")
    archive.delete_snapshot("s1")
    archive.write(archive.resolve("/d/a").ino, 0, b"changed")
    archive.sync()
    report = fsck(archive)
    assert report.ok, report.problems


def test_live_only_pages_after_restore_are_freed_directly() -> None:
    """After a restore and the deletion of the restored snapshot, the old pages only the
    live tree reaches are recorded as the live tree's: freeing them never parks them on the
    dead list, and later sweeps keep the accounting exact."""
    archive = memory_archive()
    archive.write_file("/d/a", b"x" * 30_000, parents=True)
    archive.create_snapshot("s1")
    archive.remove("/d", recursive=True)
    archive.create_snapshot("s2")
    archive.restore_snapshot("s1")
    archive.delete_snapshot("s1")
    archive.write(archive.resolve("/d/a").ino, 0, b"y" * 30_000)
    archive.sync()
    assert_fsck(archive, "right after freeing live-only pages")
    assert not any(STALE_DEAD in str(p) for p in fsck(archive).problems)
    archive.create_snapshot("s3")
    archive.delete_snapshot("s3")
    assert_fsck(archive, "after the next sweep")
    archive.delete_snapshot("s2")
    assert archive.statistics().allocator.dead_pages == 0
    assert archive.read_file("/d/a") == b"y" * 30_000
