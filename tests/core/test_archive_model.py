"""The whole Archive against an in-memory model of a POSIX file tree (hypothesis stateful).

Random sequences of mkdir / create / write (random offsets, sparse gaps, across 4 KiB chunk
boundaries) / truncate (grow and shrink) / unlink / rmdir / rename (replace, NOREPLACE,
EXCHANGE, directory moves, moves into the own subtree) / link / symlink / xattrs / chmod /
utimens / open handles on unlinked files / atomic publish of an unnamed file / readdir resumed
from a cookie / sync / close+reopen — each applied to the archive and to the model. The model
says which error (exact CartError subclass) an operation must raise, and the archive must
raise exactly that; after every step the whole tree (paths, types, modes, link counts, sizes,
contents, symlink targets, xattrs, hard-link groups) must equal the model's. fsck runs at every
close/reopen and at the end.
"""

from __future__ import annotations

import hashlib
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cartfs.core import errors as E
from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.device import MemoryDevice
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams
from cartfs.core.namespace import RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE
from cartfs.testing.tree import EntryState, diff_states, tree_state

CHUNK = 4096
ROOT = 1
PASSPHRASE = "model passphrase"
NAMES = [b"a", b"b", b"c", b"d", b"e"]
XNAMES = [b"user.x", b"user.y", b"trusted.z"]

ErrorType = type[E.CartError] | None


@dataclass
class MInode:
    """One inode of the model."""

    kind: str  # dir | file | symlink
    mode: int  # S_IMODE bits
    data: bytearray = field(default_factory=bytearray)
    target: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    entries: dict[bytes, int] = field(default_factory=dict)  # insertion order = readdir order
    parent: int = 0
    atime: int | None = None  # known only after utimens
    mtime: int | None = None


class Model:
    """The expected file tree; pure Python, no cartfs code."""

    def __init__(self) -> None:
        self.nodes: dict[int, MInode] = {ROOT: MInode("dir", 0o755, parent=ROOT)}
        self.pins: Counter[int] = Counter()

    # ---- queries ----------------------------------------------------------------------------

    def names(self, ino: int) -> int:
        return sum(list(n.entries.values()).count(ino) for n in self.nodes.values()
                   if n.kind == "dir")

    def nlink(self, ino: int) -> int:
        node = self.nodes[ino]
        if node.kind == "dir":
            return 2 + sum(self.nodes[c].kind == "dir" for c in node.entries.values())
        return self.names(ino)

    def is_ancestor(self, ancestor: int, ino: int) -> bool:
        while True:
            if ino == ancestor:
                return True
            if ino == ROOT:
                return False
            ino = self.nodes[ino].parent

    def paths(self) -> dict[str, int]:
        out: dict[str, int] = {}
        stack = [("/", ROOT)]
        while stack:
            path, ino = stack.pop()
            out[path] = ino
            node = self.nodes[ino]
            if node.kind == "dir":
                for name, child in node.entries.items():
                    stack.append((path.rstrip("/") + "/" + name.decode(), child))
        return out

    def state(self) -> dict[str, EntryState]:
        paths = self.paths()
        groups: dict[int, str] = {}
        for path, ino in paths.items():
            groups[ino] = min(path, groups.get(ino, path))
        out = {}
        for path, ino in paths.items():
            node = self.nodes[ino]
            size = len(node.data) if node.kind == "file" else len(node.target)
            out[path] = EntryState(
                type=node.kind, mode=node.mode, nlink=self.nlink(ino), size=size,
                sha256=_sha(node.data) if node.kind == "file" else "",
                target=node.target.hex(), xattrs={k.hex(): v.hex() for k, v in
                                                  node.xattrs.items()},
                link_group=groups[ino] if node.kind != "dir" else "",
            )
        return out

    def dirs(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.kind == "dir")

    def files(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.kind == "file")

    def entries(self) -> list[tuple[int, bytes]]:
        return [(d, name) for d in self.dirs() for name in self.nodes[d].entries]

    # ---- changes ----------------------------------------------------------------------------

    def add(self, parent: int, name: bytes, ino: int, node: MInode) -> None:
        self.nodes[ino] = node
        self.link_name(parent, name, ino)

    def link_name(self, parent: int, name: bytes, ino: int) -> None:
        self.nodes[parent].entries[name] = ino
        self.nodes[parent].mtime = None

    def unlink_name(self, parent: int, name: bytes) -> int:
        ino = self.nodes[parent].entries.pop(name)
        self.nodes[parent].mtime = None
        self.collect(ino)
        return ino

    def collect(self, ino: int) -> None:
        """Forget an inode with no names and no open handle."""
        node = self.nodes.get(ino)
        if node is None or ino == ROOT:
            return
        if node.kind == "dir":
            if not any(ino in n.entries.values() for n in self.nodes.values()):
                del self.nodes[ino]
        elif self.names(ino) == 0 and not self.pins[ino]:
            del self.nodes[ino]

    def drop_all_pins(self) -> None:
        pinned = list(self.pins)
        self.pins.clear()
        for ino in pinned:
            self.collect(ino)


def _sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def _grow(data: bytearray, size: int) -> None:
    if size > len(data):
        data.extend(bytes(size - len(data)))
    else:
        del data[size:]


payloads = st.one_of(
    st.binary(min_size=0, max_size=64),
    st.integers(1, 3 * CHUNK + 7).map(bytes),  # zeros: become holes
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 1500)).map(
        lambda t: (t[0] * t[1])[:3 * CHUNK + 100]),  # compressible, crosses chunks
    st.randoms(use_true_random=False).map(
        lambda r: r.randbytes(r.randrange(1, 2 * CHUNK + 50))),  # incompressible
)


class ArchiveMachine(RuleBasedStateMachine):
    """Drives an Archive and the Model in lockstep."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.device = MemoryDevice()
        self.archive: Archive | None = None
        self.passphrase: str | None = None
        self.options = OpenOptions()
        self.clock = 10**18  # utimens values: distinct, far from "now"

    @initialize(compression=st.sampled_from(["lz4", "zstd", "none"]), encrypted=st.booleans(),
                eager=st.booleans(), chunk_size=st.sampled_from([CHUNK, CHUNK, 4 * CHUNK]))
    def create(self, compression: str, encrypted: bool, eager: bool, chunk_size: int) -> None:
        """4 KiB chunks exercise multi-chunk paths cheaply; 16 KiB ones let compression
        save pages (and so take the compressed-extent paths)."""
        self.passphrase = PASSPHRASE if encrypted else None
        self.options = (OpenOptions(flush_bytes=6000, commit_bytes=20000, commit_interval=1e9)
                        if eager else OpenOptions(commit_interval=1e9))
        self.archive = Archive.create_on(self.device, chunk_size=chunk_size,
                                         compression=compression,
                                         passphrase=self.passphrase, kdf=KdfParams.cheap(),
                                         options=self.options)
        self.model.nodes[ROOT].mode = stat.S_IMODE(self.archive.getattr(ROOT).mode)
        self.seed_tree()

    def seed_tree(self) -> None:
        """A small starting tree (nested directories, files across chunks), so that short
        runs already have something to rename, truncate and move into its own subtree."""
        a, m = self.a, self.model
        for parent, name in ((ROOT, b"a"), (None, b"b"), (ROOT, b"c")):
            pino = parent if parent is not None else m.nodes[ROOT].entries[b"a"]
            inode = a.mkdir(pino, name, 0o755)
            m.add(pino, name, inode.ino, MInode("dir", 0o755, parent=pino))
        for pino, name, size in ((ROOT, b"d", 5000), (m.nodes[ROOT].entries[b"a"], b"e", 9000)):
            content = bytes((i * 7 + size) % 251 for i in range(size))
            inode = a.create_file(pino, name, 0o644)
            a.write(inode.ino, 0, content)
            m.add(pino, name, inode.ino, MInode("file", 0o644, data=bytearray(content)))

    @property
    def a(self) -> Archive:
        assert self.archive is not None
        return self.archive

    # ---- helpers ------------------------------------------------------------------------------

    def expect(self, error: ErrorType, call: Callable[[], Any]) -> Any:
        """Run ``call``; it must raise exactly ``error`` (or succeed when error is None)."""
        try:
            result = call()
        except E.CartError as exc:
            assert error is not None, f"unexpected {type(exc).__name__}: {exc}"
            assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}"
            return None
        assert error is None, f"expected {error.__name__}, the call succeeded"
        return result

    def pick_node(self, data: st.DataObject, kinds: tuple[str, ...] = ("dir", "file",
                                                                       "symlink")) -> int:
        """An inode of one of ``kinds`` — or, one time in eight, of any kind (so that the
        wrong-type errors get their turn)."""
        choices = [i for i, n in sorted(self.model.nodes.items()) if n.kind in kinds]
        if not choices or data.draw(st.integers(0, 7)) == 0:
            choices = sorted(self.model.nodes)
        return data.draw(st.sampled_from(choices))

    def pick_parent(self, data: st.DataObject) -> int:
        """Mostly a directory; sometimes a file (to provoke NotADirectory)."""
        if data.draw(st.integers(0, 9)) == 0:
            return self.pick_node(data)
        return data.draw(st.sampled_from(self.model.dirs()))

    def pick_name(self, data: st.DataObject, parent: int) -> bytes:
        node = self.model.nodes[parent]
        existing = sorted(node.entries) if node.kind == "dir" else []
        if existing and data.draw(st.booleans()):
            return data.draw(st.sampled_from(existing))
        return data.draw(st.sampled_from(NAMES))

    def make_error(self, parent: int, name: bytes) -> ErrorType:
        node = self.model.nodes[parent]
        if node.kind != "dir":
            return E.NotADirectory
        return E.AlreadyExists if name in node.entries else None

    def new_mode(self, parent: int, mode: int, is_dir: bool) -> int:
        if is_dir and self.model.nodes[parent].mode & stat.S_ISGID:
            mode |= stat.S_ISGID
        return mode

    # ---- creating -----------------------------------------------------------------------------

    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        err = self.make_error(parent, name)
        inode = self.expect(err, lambda: self.a.mkdir(parent, name, 0o755))
        if err is None:
            self.model.add(parent, name, inode.ino,
                           MInode("dir", self.new_mode(parent, 0o755, True), parent=parent))

    @rule(data=st.data(), mode=st.sampled_from([0o644, 0o600, 0o755]))
    def create_file(self, data: st.DataObject, mode: int) -> None:
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        err = self.make_error(parent, name)
        inode = self.expect(err, lambda: self.a.create_file(parent, name, mode))
        if err is None:
            self.model.add(parent, name, inode.ino, MInode("file", mode))

    @rule(data=st.data(),
          dest=st.binary(min_size=1, max_size=40).filter(lambda b: 0 not in b))
    def symlink(self, data: st.DataObject, dest: bytes) -> None:
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        err = self.make_error(parent, name)
        inode = self.expect(err, lambda: self.a.symlink(parent, name, dest))
        if err is None:
            self.model.add(parent, name, inode.ino, MInode("symlink", 0o777, target=dest))

    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        ino = self.pick_node(data, ("file", "symlink"))
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        node = self.model.nodes[ino]
        err: ErrorType
        if node.kind == "dir":
            err = E.NotPermitted
        elif self.model.names(ino) == 0:
            return  # an open, unlinked file: covered by publish_unlinked
        else:
            err = self.make_error(parent, name)
        self.expect(err, lambda: self.a.link(ino, parent, name))
        if err is None:
            self.model.link_name(parent, name, ino)

    @rule(data=st.data(), content=payloads)
    def publish_unlinked(self, data: st.DataObject, content: bytes) -> None:
        """create_unlinked + write + link(replace=True) + unpin: the atomic-publish idiom."""
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        inode = self.a.create_unlinked(0o640)
        self.model.nodes[inode.ino] = MInode("file", 0o640)
        self.model.pins[inode.ino] += 1
        if content:
            self.a.write(inode.ino, 0, content)
            self.model.nodes[inode.ino].data[:] = content
        pnode = self.model.nodes[parent]
        existing = pnode.entries.get(name) if pnode.kind == "dir" else None
        err: ErrorType = None
        if pnode.kind != "dir":
            err = E.NotADirectory
        elif existing is not None and self.model.nodes[existing].kind == "dir":
            err = E.IsADirectory
        self.expect(err, lambda: self.a.link(inode.ino, parent, name, replace=True))
        if err is None:
            if existing is not None:
                self.model.unlink_name(parent, name)
            self.model.link_name(parent, name, inode.ino)
        self.a.unpin(inode.ino)
        self.model.pins[inode.ino] -= 1
        self.model.collect(inode.ino)

    # ---- file contents --------------------------------------------------------------------

    @rule(data=st.data(), content=payloads)
    def write(self, data: st.DataObject, content: bytes) -> None:
        ino = self.pick_node(data, ("file",))
        node = self.model.nodes[ino]
        offset = data.draw(st.integers(0, len(node.data) + 3 * CHUNK))
        err = {"dir": E.IsADirectory, "symlink": E.InvalidArgument}.get(node.kind)
        self.expect(err, lambda: self.a.write(ino, offset, content))
        if err is None:
            end = offset + len(content)
            if end > len(node.data):
                _grow(node.data, end)
            node.data[offset:end] = content
            node.mtime = None

    @rule(data=st.data(), regrow=st.booleans())
    def truncate(self, data: st.DataObject, regrow: bool) -> None:
        """Truncate (and, with ``regrow``, extend again: the cut-off bytes must read as
        zeros, never as the old data)."""
        ino = self.pick_node(data, ("file",))
        node = self.model.nodes[ino]
        sizes = [data.draw(st.integers(0, len(node.data) + 2 * CHUNK))]
        if regrow:
            sizes.append(data.draw(st.integers(sizes[0], len(node.data) + 2 * CHUNK)))
        err = {"dir": E.IsADirectory, "symlink": E.InvalidArgument}.get(node.kind)
        for size in sizes:
            self.expect(err, lambda size=size: self.a.truncate(ino, size))  # type: ignore[misc]
            if err is None:
                _grow(node.data, size)
                node.mtime = None

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        ino = self.pick_node(data, ("file",))
        node = self.model.nodes.get(ino)
        if node is None or node.kind != "file":
            return
        offset = data.draw(st.integers(0, len(node.data) + CHUNK))
        size = data.draw(st.integers(0, 3 * CHUNK))
        assert self.a.read(ino, offset, size) == bytes(node.data[offset:offset + size])

    # ---- removing -------------------------------------------------------------------------

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        pnode = self.model.nodes[parent]
        err: ErrorType = None
        if pnode.kind != "dir":
            err = E.NotADirectory
        elif name not in pnode.entries:
            err = E.NotFound
        elif self.model.nodes[pnode.entries[name]].kind == "dir":
            err = E.IsADirectory
        self.expect(err, lambda: self.a.unlink(parent, name))
        if err is None:
            self.model.unlink_name(parent, name)

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        parent = self.pick_parent(data)
        name = self.pick_name(data, parent)
        pnode = self.model.nodes[parent]
        err: ErrorType = None
        if pnode.kind != "dir":
            err = E.NotADirectory
        elif name not in pnode.entries:
            err = E.NotFound
        elif self.model.nodes[pnode.entries[name]].kind != "dir":
            err = E.NotADirectory
        elif self.model.nodes[pnode.entries[name]].entries:
            err = E.DirectoryNotEmpty
        self.expect(err, lambda: self.a.rmdir(parent, name))
        if err is None:
            self.model.unlink_name(parent, name)

    # ---- rename -----------------------------------------------------------------------------

    def rename_error(self, sp: int, sn: bytes, dp: int, dn: bytes, flags: int) -> ErrorType:
        m = self.model
        if m.nodes[sp].kind != "dir" or m.nodes[dp].kind != "dir":
            return E.NotADirectory
        src = m.nodes[sp].entries.get(sn)
        dst = m.nodes[dp].entries.get(dn)
        if src is None:
            return E.NotFound
        if flags == RENAME_EXCHANGE:
            if dst is None:
                return E.NotFound
            if sp != dp and ((m.nodes[src].kind == "dir" and m.is_ancestor(src, dp))
                             or (m.nodes[dst].kind == "dir" and m.is_ancestor(dst, sp))):
                return E.InvalidArgument
            return None
        if dst is not None and flags == RENAME_NOREPLACE:
            return E.AlreadyExists
        if dst == src:
            return None
        s, d = m.nodes[src], (m.nodes[dst] if dst is not None else None)
        if s.kind == "dir" and m.is_ancestor(src, dp):
            return E.InvalidArgument
        if d is not None:
            if s.kind == "dir" and d.kind != "dir":
                return E.NotADirectory
            if d.kind == "dir" and s.kind != "dir":
                return E.IsADirectory
            if d.kind == "dir" and d.entries:
                return E.DirectoryNotEmpty
        return None

    @rule(data=st.data(), flags=st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    def rename(self, data: st.DataObject, flags: int) -> None:
        sp = self.pick_parent(data)
        sn = self.pick_name(data, sp)
        dp = self.pick_parent(data)
        dn = self.pick_name(data, dp)
        err = self.rename_error(sp, sn, dp, dn, flags)
        self.expect(err, lambda: self.a.rename(sp, sn, dp, dn, flags))
        if err is not None:
            return
        m = self.model
        src, dst = m.nodes[sp].entries[sn], m.nodes[dp].entries.get(dn)
        if flags == RENAME_EXCHANGE:
            assert dst is not None
            m.nodes[sp].entries[sn], m.nodes[dp].entries[dn] = dst, src
            for ino, parent in ((src, dp), (dst, sp)):
                if m.nodes[ino].kind == "dir":
                    m.nodes[ino].parent = parent
            m.nodes[sp].mtime = m.nodes[dp].mtime = None
            return
        if dst == src:
            return
        del m.nodes[sp].entries[sn]
        m.nodes[sp].mtime = None
        if dst is not None:
            del m.nodes[dp].entries[dn]
        m.link_name(dp, dn, src)
        if m.nodes[src].kind == "dir":
            m.nodes[src].parent = dp
        if dst is not None:
            m.collect(dst)

    @rule(data=st.data(), exchange=st.booleans())
    def move_into_own_subtree(self, data: st.DataObject, exchange: bool) -> None:
        """A directory renamed below itself must fail with EINVAL and change nothing."""
        m = self.model
        pairs = [(d, p) for d in m.dirs() if d != ROOT for p in m.dirs()
                 if m.is_ancestor(d, p)]
        if not pairs:
            return
        moving, into = data.draw(st.sampled_from(pairs))
        parent = m.nodes[moving].parent
        name = next(n for n, i in m.nodes[parent].entries.items() if i == moving)
        dest = self.pick_name(data, into)
        flags = RENAME_EXCHANGE if exchange else 0
        err = self.rename_error(parent, name, into, dest, flags)
        if not exchange:
            assert err is not None
        self.expect(err, lambda: self.a.rename(parent, name, into, dest, flags))
        if err is None:  # an EXCHANGE with nothing there to exchange with is also an error
            raise AssertionError("the model allowed a move into the own subtree")

    # ---- attributes -------------------------------------------------------------------------

    @rule(data=st.data(), mode=st.sampled_from([0o700, 0o644, 0o2755, 0o4755, 0o1777]))
    def chmod(self, data: st.DataObject, mode: int) -> None:
        ino = self.pick_node(data)
        self.a.setattr(ino, mode=mode)
        self.model.nodes[ino].mode = mode

    @rule(data=st.data())
    def utimens(self, data: st.DataObject) -> None:
        ino = self.pick_node(data)
        self.clock += 1_000_000_007
        atime, mtime = self.clock, self.clock + 12345
        self.a.setattr(ino, atime_ns=atime, mtime_ns=mtime)
        self.model.nodes[ino].atime, self.model.nodes[ino].mtime = atime, mtime

    @rule(data=st.data(), name=st.sampled_from(XNAMES),
          size=st.sampled_from([0, 1, 50, 699, 700, 2000, 65536, 65537]),
          flags=st.sampled_from([0, 0, XATTR_CREATE, XATTR_REPLACE]))
    def setxattr(self, data: st.DataObject, name: bytes, size: int, flags: int) -> None:
        ino = self.pick_node(data)
        value = data.draw(st.binary(min_size=min(size, 8), max_size=8)) * (size // 8 + 1)
        value = value[:size] if size else b""
        exists = name in self.model.nodes[ino].xattrs
        err: ErrorType = None
        if size > 65536:
            err = E.RangeError
        elif flags == XATTR_CREATE and exists:
            err = E.AlreadyExists
        elif flags == XATTR_REPLACE and not exists:
            err = E.NoAttribute
        self.expect(err, lambda: self.a.setxattr(ino, name, value, flags))
        if err is None:
            self.model.nodes[ino].xattrs[name] = value

    @rule(data=st.data(), name=st.sampled_from(XNAMES))
    def removexattr(self, data: st.DataObject, name: bytes) -> None:
        with_xattrs = tuple({n.kind for n in self.model.nodes.values() if n.xattrs})
        ino = self.pick_node(data, with_xattrs or ("file",))
        err = None if name in self.model.nodes[ino].xattrs else E.NoAttribute
        self.expect(err, lambda: self.a.removexattr(ino, name))
        if err is None:
            del self.model.nodes[ino].xattrs[name]

    # ---- open handles -----------------------------------------------------------------------

    @rule(data=st.data())
    def pin(self, data: st.DataObject) -> None:
        ino = self.pick_node(data, ("file",))
        if self.model.nodes[ino].kind == "file":
            self.a.pin(ino)
            self.model.pins[ino] += 1

    @precondition(lambda self: any(self.model.pins.values()))
    @rule(data=st.data())
    def unpin_and_check(self, data: st.DataObject) -> None:
        """Reading through a handle works even after the last name went away."""
        ino = data.draw(st.sampled_from(sorted(i for i, n in self.model.pins.items() if n)))
        node = self.model.nodes[ino]
        assert self.a.read(ino, 0, len(node.data) + 10) == bytes(node.data)
        self.a.unpin(ino)
        self.model.pins[ino] -= 1
        self.model.collect(ino)

    # ---- listing ----------------------------------------------------------------------------

    @rule(data=st.data(), page=st.integers(1, 4), interleave=st.booleans())
    def readdir_resumed(self, data: st.DataObject, page: int, interleave: bool) -> None:
        """Page through a directory by cookie; an entry added mid-listing shows up once."""
        ino = data.draw(st.sampled_from(self.model.dirs()))
        first = self.a.readdir(ino, 0, page)
        listed = [(e.name, e.ino) for e in first]
        if interleave:
            free = [n for n in NAMES if n not in self.model.nodes[ino].entries]
            if free:
                inode = self.a.create_file(ino, free[0])
                self.model.add(ino, free[0], inode.ino, MInode("file", 0o644))
        cookie = first[-1].cookie if first else 0
        expected = list(self.model.nodes[ino].entries.items())
        for _ in range(len(expected) + 2):  # bounded: a cookie bug must not loop forever
            more = self.a.readdir(ino, cookie, page)
            if not more:
                break
            listed += [(e.name, e.ino) for e in more]
            assert more[-1].cookie > cookie, "readdir cookies must increase"
            cookie = more[-1].cookie
        assert listed == expected

    # ---- durability -------------------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.a.sync()

    @rule()
    def close_and_reopen(self) -> None:
        self.a.close()
        self.model.drop_all_pins()
        self.archive = Archive.open_on(self.device, passphrase=self.passphrase,
                                       options=self.options)
        report = fsck(self.a)
        assert report.ok, report.problems

    # ---- checks -----------------------------------------------------------------------------

    @invariant()
    def tree_matches(self) -> None:
        if self.archive is None:
            return
        expected, found = self.model.state(), tree_state(self.a)
        assert found == expected, "\n".join(diff_states(expected, found))
        for ino, node in self.model.nodes.items():
            inode = self.a.getattr(ino)
            if node.atime is not None:
                assert inode.atime_ns == node.atime
            if node.mtime is not None:
                assert inode.mtime_ns == node.mtime
            if node.kind == "dir" and ino != ROOT:
                assert self.a.lookup(ino, "..").ino == node.parent

    def teardown(self) -> None:
        if self.archive is not None and not self.archive.closed:
            report = fsck(self.a)
            self.a.close()
            assert report.ok, report.problems


ArchiveMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestArchiveModel = ArchiveMachine.TestCase
