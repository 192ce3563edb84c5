"""``put`` then ``get`` of a real tree must give back exactly the tree: contents, modes
(set-user-ID, sticky), owners, mtimes and atimes to the nanosecond, symlinks (dangling ones
too), hard links, extended attributes, empty directories, FIFOs, odd names, sparse and large
files. And the cp -a rules for where things land."""

from __future__ import annotations

import email
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams

from .conftest import Facts, Result, describe_tree, read_contents, run_cartfs

Cli = Callable[..., Result]
RoundTrip = tuple[Path, Path, Facts]  # archive, restored copy, facts about the source
MiB = 1 << 20


def _set_times(path: Path | bytes, atime_ns: int, mtime_ns: int) -> None:
    os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)


def build_tree(root: Path) -> None:
    """A copy of part of the standard library plus every awkward case we know of."""
    shutil.copytree(Path(email.__file__).parent, root / "email", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "empty-dir").mkdir()
    deep = root / "nested"
    for i in range(12):
        deep = deep / f"level{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("deep down\n")
    (root / "zero-bytes").write_bytes(b"")
    suid = root / "setuid-tool"
    suid.write_bytes(b"#!/bin/sh\necho hi\n")
    if os.geteuid() == 0:  # owners are kept only when root runs put/get
        os.chown(suid, 1234, 5678)
        os.chown(root / "email", 4321, 8765)
        os.symlink("setuid-tool", root / "link-owned")
        os.lchown(root / "link-owned", 2468, 1357)
    suid.chmod(0o4755)
    sticky = root / "sticky-tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    readonly_dir = root / "read-only-dir"
    readonly_dir.mkdir()
    (readonly_dir / "inside.txt").write_text("in a 0555 directory\n")
    # names: unicode, spaces, newline, a leading dash, bytes that are not UTF-8
    (root / "héllo wörld ✓.txt").write_text("unicode\n")
    (root / "line\nbreak").write_text("newline in the name\n")
    (root / "-rf").write_text("dash\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9-latin1"), "wb") as fh:
        fh.write(b"not utf-8 name\n")
    # symlinks: relative, absolute, dangling, to a directory
    os.symlink("email/__init__.py", root / "link-relative")
    os.symlink("/etc/hostname", root / "link-absolute")
    os.symlink("does/not/exist", root / "link-dangling")
    os.symlink("email", root / "link-to-dir")
    # hard links, within a directory and across directories
    (root / "hard-a").write_bytes(b"shared inode\n" * 100)
    os.link(root / "hard-a", root / "hard-b")
    os.link(root / "hard-a", root / "empty-dir" / ".." / "nested" / "hard-c")
    # a sparse file: a hole at the start, data, a hole at the end
    with open(root / "sparse", "wb") as fh:
        fh.seek(5 * MiB)
        fh.write(b"island of data")
        fh.truncate(12 * MiB)
    # a large random file (streamed in pieces)
    (root / "random-20M").write_bytes(os.urandom(20 * MiB))
    os.mkfifo(root / "a-fifo", 0o640)
    os.setxattr(root / "hard-a", "user.color", b"blue")
    os.setxattr(root / "email", "user.origin", b"stdlib")
    os.setxattr(root / "zero-bytes", "user.empty", b"")
    # precise times (ns) on files, directories and links
    _set_times(root / "zero-bytes", 1_000_000_001, 1_234_567_890_123_456_789)
    _set_times(root / "link-dangling", 1_111_111_111_111_111_111, 999_999_999_999_999_999)
    # a directory's atime survives being listed only when it is recent and after its mtime
    # (relatime), so give it a recent one, to the nanosecond
    _set_times(root / "empty-dir", time.time_ns() - 1_234_567, 1_500_000_000_000_000_007)
    readonly_dir.chmod(0o555)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src") / "tree"
    root.mkdir()
    build_tree(root)
    _set_times(root, time.time_ns() - 7_654_321, 1_600_000_000_000_000_001)
    describe_tree(root)  # listing once settles directory atimes (relatime), as put would
    return root


@pytest.fixture(scope="module")
def round_trip(source: Path, tmp_path_factory: pytest.TempPathFactory) -> RoundTrip:
    """put the tree in, get it back out; returns (archive, restored copy, source facts)."""
    facts = describe_tree(source)  # before put: reading must not move what we compare
    work = tmp_path_factory.mktemp("rt")
    archive = work / "a.cart"
    assert run_cartfs("create", archive).code == 0
    put = run_cartfs("put", archive, source, "/")
    assert put.code == 0, put
    out = work / "out"
    out.mkdir()
    got = run_cartfs("get", archive, "/tree", out)
    assert got.code == 0, got
    return archive, out / "tree", facts


def test_round_trip_preserves_everything(source: Path, round_trip: RoundTrip) -> None:
    _, restored, (entries, links) = round_trip
    restored_entries, restored_links = describe_tree(restored)
    assert set(restored_entries) == set(entries)
    for rel, expected in entries.items():
        assert restored_entries[rel] == expected, rel
    assert restored_links == links
    assert read_contents(restored, restored_entries) == read_contents(source, entries)


def test_round_trip_specifics(round_trip: RoundTrip) -> None:
    """Spot checks that say what the big comparison means."""
    _, restored, _ = round_trip
    assert stat.S_IMODE((restored / "setuid-tool").stat().st_mode) == 0o4755
    if os.geteuid() == 0:
        assert (restored / "setuid-tool").stat().st_uid == 1234
        assert (restored / "link-owned").lstat().st_gid == 1357
    assert stat.S_IMODE((restored / "sticky-tmp").stat().st_mode) == 0o1777
    assert os.readlink(restored / "link-dangling") == "does/not/exist"
    assert (restored / "hard-a").stat().st_ino == (restored / "nested" / "hard-c").stat().st_ino
    assert (restored / "hard-a").stat().st_nlink == 3
    assert stat.S_ISFIFO((restored / "a-fifo").lstat().st_mode)
    assert os.getxattr(restored / "hard-a", "user.color") == b"blue"
    assert (restored / "zero-bytes").lstat().st_mtime_ns == 1_234_567_890_123_456_789
    sparse = (restored / "sparse").stat()
    assert sparse.st_size == 12 * MiB
    assert sparse.st_blocks * 512 < 2 * MiB  # the holes stayed holes


def test_archive_holds_the_tree(round_trip: RoundTrip) -> None:
    """Looked at through the Archive API (not get), the archive agrees with the source."""
    archive_path, _, (entries, _links) = round_trip
    with Archive.open(archive_path, readonly=True) as archive:
        assert fsck(archive).ok
        for rel, expected in entries.items():
            path = b"/tree/" + rel if rel else b"/tree"
            inode = archive.lstat(path)
            assert inode.mode == expected.mode, rel
            assert inode.mtime_ns == expected.mtime_ns, rel
            assert (inode.uid, inode.gid) == (expected.uid, expected.gid), rel
            if expected.kind == "link":
                assert archive.readlink(inode.ino) == expected.target
        assert archive.lstat("/tree/hard-b").ino == archive.lstat("/tree/hard-a").ino
        assert archive.lstat("/tree/hard-a").nlink == 3
        assert archive.getxattr(archive.lstat("/tree/email").ino, "user.origin") == b"stdlib"
        assert archive.read_file("/tree/sparse")[5 * MiB:5 * MiB + 14] == b"island of data"


# ---- where things land (cp -a rules) ---------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Path:
    src = tmp_path / "dir"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "b.txt").write_text("b\n")
    (tmp_path / "single.txt").write_text("single\n")
    return tmp_path


def test_put_destination_rules(cli: Cli, small: Path) -> None:
    archive = small / "a.cart"
    assert cli("create", archive).code == 0
    assert cli("mkdir", archive, "/exists").code == 0
    assert cli("put", archive, small / "dir", "/exists").code == 0  # into it
    assert cli("put", archive, small / "dir", "/new").code == 0  # becomes it
    assert cli("put", archive, small / "single.txt", small / "dir", "/exists").code == 0
    assert cli("put", archive, small / "single.txt", "/renamed.txt").code == 0
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/exists/dir/sub/b.txt") == b"b\n"
        assert a.read_file("/new/sub/b.txt") == b"b\n"
        assert a.read_file("/exists/single.txt") == b"single\n"
        assert a.read_file("/renamed.txt") == b"single\n"
        assert a.listdir("/exists") == ["dir", "single.txt"]


def test_put_replaces_existing_files_and_merges_directories(cli: Cli, small: Path) -> None:
    archive = small / "a.cart"
    cli("create", archive)
    assert cli("put", archive, small / "dir", "/d").code == 0
    (small / "dir" / "a.txt").write_text("new content\n")
    (small / "dir" / "c.txt").write_text("c\n")
    assert cli("put", archive, small / "dir", "/d").code == 0  # /d exists: goes to /d/dir
    assert cli("put", archive, f"{small}/dir/.", "/d").code == 0  # its contents into /d
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/d/a.txt") == b"new content\n"
        assert a.read_file("/d/c.txt") == b"c\n"
        assert a.read_file("/d/dir/a.txt") == b"new content\n"
        assert fsck(a).ok


def test_get_destination_rules_and_replacement(cli: Cli, small: Path) -> None:
    archive = small / "a.cart"
    cli("create", archive)
    cli("put", archive, small / "dir", "/d")
    out = small / "out"
    out.mkdir()
    assert cli("get", archive, "/d", out).code == 0  # into the existing directory
    assert (out / "d" / "sub" / "b.txt").read_text() == "b\n"
    assert cli("get", archive, "/d/a.txt", out / "copy.txt").code == 0  # becomes it
    assert (out / "copy.txt").read_text() == "a\n"
    (out / "copy.txt").write_text("old and longer content\n")
    assert cli("get", archive, "/d/a.txt", out / "copy.txt").code == 0  # replaced
    assert (out / "copy.txt").read_text() == "a\n"
    assert cli("get", archive, "/", out / "everything").code == 0  # the root: its contents
    assert (out / "everything" / "d" / "a.txt").read_text() == "a\n"
    assert not [p for p in out.rglob(".cartfs-part-*")]  # no temporary files left


def test_put_several_sources_need_a_directory(cli: Cli, small: Path) -> None:
    archive = small / "a.cart"
    cli("create", archive)
    result = cli("put", archive, small / "single.txt", small / "dir", "/nowhere")
    assert result.code == 1
    assert "several sources" in result.err


def test_put_exclude(cli: Cli, small: Path) -> None:
    archive = small / "a.cart"
    cli("create", archive)
    assert cli("put", archive, small / "dir", "/d", "--exclude", "sub").code == 0
    with Archive.open(archive, readonly=True) as a:
        assert a.listdir("/d") == ["a.txt"]


def test_put_conflict_is_reported_and_the_rest_copied(cli: Cli, small: Path) -> None:
    """A file where the archive has a directory: one message, exit 1, other files copied."""
    archive = small / "a.cart"
    cli("create", archive)
    cli("mkdir", archive, "-p", "/d/dir/a.txt")
    result = cli("put", archive, small / "dir", "/d")
    assert result.code == 1
    assert "/d/dir/a.txt: cannot overwrite directory with non-directory" in result.err
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/d/dir/sub/b.txt") == b"b\n"
        assert fsck(a).ok


def test_create_encrypted(cli: Cli, tmp_path: Path) -> None:
    """``create --encrypt`` with a key file (the real, slow key derivation: once here)."""
    archive = tmp_path / "secret.cart"
    key = tmp_path / "key"
    key.write_text("correct horse battery staple\n")
    assert cli("create", archive, "--encrypt", "--key-file", key).code == 0
    info = cli("info", archive, "--key-file", key)
    assert info.code == 0
    assert "encrypted:    yes" in info.out


def test_encrypted_round_trip(cli: Cli, small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = small / "secret.cart"
    marker = b"TOP-SECRET-MARKER-" * 50
    (small / "dir" / "marker").write_bytes(marker)
    Archive.create(archive, passphrase="pass phrase", kdf=KdfParams.cheap()).close()
    monkeypatch.setenv("CARTFS_PASSPHRASE", "pass phrase")
    assert cli("put", archive, small / "dir", "/d").code == 0
    result = cli("cat", archive, "/d/sub/b.txt")
    assert (result.code, result.out) == (0, "b\n")
    assert cli("get", archive, "/d/marker", small / "back").code == 0
    assert (small / "back").read_bytes() == marker
    assert b"TOP-SECRET-MARKER" not in archive.read_bytes()  # sealed, not plain


def test_put_twice_keeps_hard_links_and_frees_the_old_copy(cli: Cli, source: Path,
                                                          tmp_path: Path) -> None:
    """Putting the same tree again replaces every file; the old inodes go away."""
    archive = tmp_path / "twice.cart"
    cli("create", archive)
    assert cli("put", archive, source / "nested", source / "hard-a", source / "hard-b",
               "/").code == 0
    first = json.loads(cli("info", archive, "--json").out)
    assert cli("put", archive, source / "nested", source / "hard-a", source / "hard-b",
               "/").code == 0
    second = json.loads(cli("info", archive, "--json").out)
    assert second["files"] == first["files"]
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
        assert report.ok, report.problems
        assert report.files == first["files"]
        assert a.lstat("/hard-a").nlink == 3
        assert a.lstat("/nested/hard-c").ino == a.lstat("/hard-b").ino


@pytest.mark.skipif(os.geteuid() != 0, reason="needs files owned by someone else")
def test_owners_are_kept_only_by_root(cli: Cli, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """As cp -a: without root, put and get keep the caller's own uid/gid."""
    src = tmp_path / "owned"
    src.write_text("x")
    os.chown(src, 1234, 5678)
    archive = tmp_path / "own.cart"
    cli("create", archive)
    assert cli("put", archive, src, "/as-root").code == 0
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as if an ordinary user ran it
    assert cli("put", archive, src, "/as-user").code == 0
    with Archive.open(archive, readonly=True) as a:
        assert (a.stat("/as-root").uid, a.stat("/as-root").gid) == (1234, 5678)
        assert (a.stat("/as-user").uid, a.stat("/as-user").gid) == (os.getuid(), os.getgid())
    assert cli("get", archive, "/as-root", tmp_path / "back").code == 0
    assert (tmp_path / "back").stat().st_uid == os.getuid()
