"""Many snapshots against a model (hypothesis stateful testing).

The model is a dict ``path -> entry`` for the live tree, plus a deep copy of it taken at each
snapshot. Random writes, partial overwrites, truncates, deletes, renames and xattr changes
interleave with snapshot creation, deletion (any order), restores and reopens. At every
checkpoint each snapshot's view must equal its copy and the live tree the live model; fsck
runs after every delete and restore (it proves the page accounting: every page free or
reachable, never both, none leaked). At the end every snapshot is deleted and the live tree
emptied: the used pages must come back to exactly those of a new empty archive.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cartfs.core.archive import Archive
from cartfs.core.catalog import ROOT_INO
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import NotFound
from cartfs.core.fsck import fsck
from cartfs.core.views import SnapshotView

from .test_snapshots import NEVER, ReadTree

SMALL_CACHE = dataclasses.replace(NEVER, cache_bytes=16 * 1024)  # reads reach the pages

NAMES = ("a", "b", "c")
DIRS = ("/", "/d", "/e")
DATA = st.binary(max_size=9000) | st.integers(10_000, 40_000).map(lambda n: b"x" * n)


@dataclass
class Entry:
    """A model entry: a directory (data None) or a regular file."""

    data: bytes | None
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


Model = dict[str, Entry]


def model_of(tree: ReadTree) -> Model:
    out: Model = {}
    stack = [("/", ROOT_INO)]
    while stack:
        path, ino = stack.pop()
        inode = tree.getattr(ino)
        xattrs = {n: tree.getxattr(ino, n) for n in tree.listxattr(ino)}
        out[path] = Entry(None if inode.is_dir else tree.read(ino, 0, inode.size), xattrs)
        if inode.is_dir:
            for entry in tree.readdir(ino):
                stack.append((path.rstrip("/") + "/" + os.fsdecode(entry.name), entry.ino))
    return out


def empty_baseline() -> int:
    """Used pages of a brand-new, empty archive (what everything must shrink back to)."""
    archive = Archive.create_on(MemoryDevice(), chunk_size=4096, options=NEVER)
    archive.create_snapshot("x")  # the snapshot sequence record stays once written
    archive.delete_snapshot("x")
    return archive.statistics().allocator.used_pages


def _path(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


class SnapshotMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.device = MemoryDevice()
        self.archive = Archive.create_on(self.device, chunk_size=4096, options=SMALL_CACHE)
        self.live: Model = {"/": Entry(None)}
        self.snaps: dict[str, Model] = {}
        self.views: dict[str, SnapshotView] = {}
        self.counter = 0

    # ---- helpers ----------------------------------------------------------------------------

    def files(self) -> list[str]:
        return sorted(p for p, e in self.live.items() if e.data is not None)

    def check_fsck(self, label: str) -> None:
        """fsck proves the page accounting (free XOR reachable, dead list exact, no leak)."""
        problems = fsck(self.archive).problems
        assert not problems, f"{label}: " + "\n".join(map(str, problems[:5]))

    # ---- changes to the live tree -----------------------------------------------------------

    @rule(directory=st.sampled_from(DIRS), name=st.sampled_from(NAMES), data=DATA)
    def write_file(self, directory: str, name: str, data: bytes) -> None:
        path = _path(directory, name)
        if directory not in self.live and directory != "/":
            self.archive.make_dir(directory)
            self.live[directory] = Entry(None)
        if self.live.get(path, Entry(b"")).data is None:
            return  # a directory of that name
        self.archive.write_file(path, data)
        self.live[path] = Entry(data, self.live[path].xattrs if path in self.live else {})

    @rule(data=st.data(), offset=st.integers(0, 30_000), piece=st.binary(min_size=1,
                                                                          max_size=6000))
    def overwrite(self, data: st.DataObject, offset: int, piece: bytes) -> None:
        if not self.files():
            return
        path = data.draw(st.sampled_from(self.files()))
        self.archive.write(self.archive.resolve(path).ino, offset, piece)
        old = self.live[path].data or b""
        grown = old + bytes(max(0, offset - len(old)))
        self.live[path].data = grown[:offset] + piece + grown[offset + len(piece):]

    @rule(data=st.data(), size=st.integers(0, 25_000))
    def truncate(self, data: st.DataObject, size: int) -> None:
        if not self.files():
            return
        path = data.draw(st.sampled_from(self.files()))
        self.archive.truncate(self.archive.resolve(path).ino, size)
        old = self.live[path].data or b""
        self.live[path].data = old[:size] + bytes(max(0, size - len(old)))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        paths = sorted(p for p in self.live if p != "/")
        if not paths:
            return
        path = data.draw(st.sampled_from(paths))
        self.archive.remove(path, recursive=True)
        for p in [p for p in self.live if p == path or p.startswith(path + "/")]:
            del self.live[p]

    @rule(data=st.data(), directory=st.sampled_from(DIRS), name=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, directory: str, name: str) -> None:
        paths = sorted(p for p in self.live if p != "/")
        if not paths or (directory not in self.live):
            return
        src, dst = data.draw(st.sampled_from(paths)), _path(directory, name)
        if dst in self.live or dst == src or dst.startswith(src + "/"):
            return
        self.archive.move(src, dst)
        for p in sorted(p for p in self.live if p == src or p.startswith(src + "/")):
            self.live[dst + p[len(src):]] = self.live.pop(p)

    @rule(data=st.data(), name=st.sampled_from([b"user.k1", b"user.k2"]),
          value=st.binary(max_size=10), blob=st.booleans())
    def setxattr(self, data: st.DataObject, name: bytes, value: bytes, blob: bool) -> None:
        """Small values live in the leaf; ``blob`` makes one big enough for its own pages."""
        value = value * 500 + b"L" * 5000 if blob else value
        path = data.draw(st.sampled_from(sorted(self.live)))
        self.archive.setxattr(self.archive.resolve(path).ino, name, value)
        self.live[path].xattrs[name] = value

    # ---- snapshots --------------------------------------------------------------------------

    @rule()
    def create_snapshot(self) -> None:
        self.counter += 1
        name = f"s{self.counter}"
        self.archive.create_snapshot(name)
        self.snaps[name] = copy.deepcopy(self.live)
        self.views[name] = self.archive.snapshot(name)  # kept open across later changes

    @precondition(lambda self: bool(self.snaps))
    @rule(data=st.data())
    def delete_snapshot(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.archive.delete_snapshot(name)
        del self.snaps[name]
        with pytest.raises(NotFound):  # a stale view must never read reused pages
            self.views.pop(name).readdir(ROOT_INO)
        self.check_fsck(f"after deleting {name}")

    @precondition(lambda self: bool(self.snaps))
    @rule(data=st.data())
    def restore_snapshot(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.archive.restore_snapshot(name)
        self.live = copy.deepcopy(self.snaps[name])
        self.check_fsck(f"after restoring {name}")
        assert model_of(self.archive) == self.live

    @rule()
    def reopen(self) -> None:
        self.archive.close()
        self.archive = Archive.open_on(self.device, options=SMALL_CACHE)
        self.views = {name: self.archive.snapshot(name) for name in self.snaps}

    @rule()
    def vacuum(self) -> None:
        """Moves the live tree and every snapshot's tree; open views must follow."""
        self.archive.vacuum()
        self.check_fsck("after vacuum")

    @rule()
    def checkpoint(self) -> None:
        assert model_of(self.archive) == self.live
        for name, expected in self.snaps.items():
            assert model_of(self.archive.snapshot(name)) == expected, f"snapshot {name}"
            assert model_of(self.views[name]) == expected, f"open view of snapshot {name}"

    def teardown(self) -> None:
        self.checkpoint()
        for name in sorted(self.snaps, reverse=True):
            self.archive.delete_snapshot(name)
            del self.snaps[name]
            self.check_fsck(f"teardown: after deleting {name}")
        for path in self.archive.listdir("/"):
            self.archive.remove("/" + path, recursive=True)
        for name in self.archive.listxattr(ROOT_INO):
            self.archive.removexattr(ROOT_INO, name)
        self.archive.sync()
        self.archive.sync()  # the second commit releases what the first one freed
        stats = self.archive.statistics().allocator
        assert (stats.dead_pages, stats.pending_pages) == (0, 0), stats
        assert stats.used_pages == BASELINE, f"{stats.used_pages} used, empty is {BASELINE}"
        self.check_fsck("teardown")


BASELINE = empty_baseline()
SnapshotMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
test_snapshots_against_a_model = SnapshotMachine.TestCase


@pytest.mark.soak
def test_snapshots_against_a_model_soak() -> None:
    run_state_machine_as_test(SnapshotMachine, settings=settings(
        max_examples=1500, stateful_step_count=100, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))
