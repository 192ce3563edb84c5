"""``cartfs snapshot create | list | delete | restore | diff`` as real processes: what they
print, what they change, and one clear line (never a traceback) for every mistake. Also
the mounted path: while the mount daemon holds the archive, create/list/delete go through
``MOUNT/.snapshots`` and restore/diff ask for an unmount.

Independent commands run a few at a time (each is a Python process start), so the whole file
stays quick.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cartfs.cli.common import human_size
from cartfs.cli.snapshot_cmds import MountedSnapshots, _table, find_archive_mount
from cartfs.core.archive import Archive
from cartfs.core.errors import AlreadyExists, CartError, NotFound
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams

from .conftest import Result, assert_one_line_error, cartfs_env, run_cartfs

GONE = random.Random(0).randbytes(50_000)  # incompressible: it holds 13 pages
CAN_MOUNT = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def run_all(*commands: tuple[str | os.PathLike[str], ...],
            env: dict[str, str] | None = None) -> list[Result]:
    """Run independent ``cartfs`` command lines concurrently; results in order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda argv: run_cartfs(*argv, env=env), commands))


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.err, result.err
    return result


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "a.cart"
    with Archive.create(path) as a:
        a.write_file("/keep.txt", b"kept\n")
        a.write_file("/docs/gone.txt", GONE, parents=True)
    return path


def test_snapshot_commands(archive: Path) -> None:
    ok(run_cartfs("snapshot", "create", archive, "first"))
    with Archive.open(archive) as a:
        a.remove("/docs/gone.txt")
        a.write_file("/keep.txt", b"changed\n")
        a.write_file("/new.txt", b"new\n")
    created = ok(run_cartfs("snapshot", "create", archive, "second"))
    assert "created snapshot second" in created.out
    listed, as_json, diff, diff_live, diff_json = run_all(
        ("snapshot", "list", archive), ("snapshot", "list", archive, "--json"),
        ("snapshot", "diff", archive, "first", "second"),
        ("snapshot", "diff", archive, "@live", "first"),
        ("snapshot", "diff", archive, "first", "@live", "--json"))
    lines = ok(listed).out.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "TXID", "HELD", "ONLY", "BY", "IT"]
    assert [line.split()[0] for line in lines[1:]] == ["first", "second"]
    rows = json.loads(ok(as_json).out)
    assert [r["name"] for r in rows] == ["first", "second"]
    assert rows[0]["exclusive_bytes"] >= 50_000 and rows[0]["txid"] < rows[1]["txid"]
    assert ok(diff).out.splitlines() == ["changed  /", "changed  /docs",
                                         "removed  /docs/gone.txt",
                                         "changed  /keep.txt", "added    /new.txt"]
    assert ("added", "/docs/gone.txt") in {tuple(x.split()) for x in ok(diff_live).out
                                           .splitlines()}
    assert {"kind": "removed", "path": "/docs/gone.txt"} in json.loads(ok(diff_json).out)

    restored = ok(run_cartfs("snapshot", "restore", archive, "first"))
    assert "restored snapshot first" in restored.out
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/docs/gone.txt") == GONE
        assert not a.exists("/new.txt")
    deleted = ok(run_cartfs("snapshot", "delete", archive, "first"))
    assert "deleted snapshot first" in deleted.out
    left = json.loads(ok(run_cartfs("snapshot", "list", archive, "--json")).out)
    assert [r["name"] for r in left] == ["second"]
    with Archive.open(archive, readonly=True) as a:
        assert fsck(a).ok
        assert a.snapshot("second").read_file("/new.txt") == b"new\n"


def test_list_of_an_archive_without_snapshots(archive: Path) -> None:
    empty, as_json = run_all(("snapshot", "list", archive),
                             ("snapshot", "list", archive, "--json"))
    assert ok(empty).out.strip() == "no snapshots"
    assert json.loads(ok(as_json).out) == []


def test_deleting_a_snapshot_shows_up_in_info(archive: Path) -> None:
    ok(run_cartfs("snapshot", "create", archive, "s"))
    with Archive.open(archive) as a:
        a.remove("/docs/gone.txt")
    held = json.loads(ok(run_cartfs("info", archive, "--json")).out)["snapshot_pages"]
    assert held * 4096 >= 50_000
    deleted = ok(run_cartfs("snapshot", "delete", archive, "s"))
    assert f"{human_size(held * 4096)} freed" in deleted.out
    info = json.loads(ok(run_cartfs("info", archive, "--json")).out)
    assert info["snapshot_pages"] == 0 and info["snapshots"] == []


def test_every_mistake_is_one_line(archive: Path, tmp_path: Path) -> None:
    ok(run_cartfs("snapshot", "create", archive, "s"))
    encrypted = tmp_path / "enc.cart"
    Archive.create(encrypted, passphrase="pw", kdf=KdfParams.cheap()).close()
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello\n" * 2000)
    missing = tmp_path / "missing.cart"
    cases: list[tuple[tuple[str | os.PathLike[str], ...], tuple[str, ...]]] = [
        (("snapshot", "create", missing, "s"), ("missing.cart", "no such file")),
        (("snapshot", "list", missing), ("missing.cart",)),
        (("snapshot", "delete", missing, "s"), ("missing.cart",)),
        (("snapshot", "restore", missing, "s"), ("missing.cart",)),
        (("snapshot", "diff", missing, "s", "@live"), ("missing.cart",)),
        (("snapshot", "create", not_archive, "s"), ("not a Cartridge archive",)),
        (("snapshot", "create", archive, "s"), ("'s' exists",)),
        (("snapshot", "delete", archive, "nope"), ("no snapshot named 'nope'",)),
        (("snapshot", "restore", archive, "nope"), ("no snapshot named 'nope'",)),
        (("snapshot", "diff", archive, "s", "nope"), ("no snapshot named 'nope'",)),
        (("snapshot", "create", archive, "a/b"), ("invalid snapshot name",)),
        (("snapshot", "create", archive, ".."), ("invalid snapshot name",)),
        (("snapshot", "create", archive, ""), ("invalid snapshot name",)),
        (("snapshot", "create", archive, "x" * 256), ("longer than 255",)),
        (("snapshot", "create", archive, "@live"), ("reserved",)),
        (("snapshot", "delete", archive, "a/b"), ("invalid snapshot name",)),
        (("snapshot", "create", archive, "two\nlines"), ("control characters", "'\\n'")),
        (("snapshot", "create", archive, "tab\there"), ("control characters",)),
        (("snapshot", "create", archive, "esc\x1b[31m"), ("control characters",)),
        (("snapshot", "create", encrypted, "s"), ("encrypted", "--key-file")),
        (("snapshot",), ("give a subcommand",)),
    ]
    # Each case gets its own copy: commands that open for writing exclude each other.
    for i, (argv, _) in enumerate(cases):
        if archive in argv:
            copy = tmp_path / f"case{i}.cart"
            shutil.copyfile(archive, copy)
            cases[i] = (tuple(copy if a == archive else a for a in argv), cases[i][1])
    results = run_all(*(argv for argv, _ in cases))
    for (argv, needles), result in zip(cases, results, strict=True):
        try:
            assert_one_line_error(result, *needles)
        except AssertionError as exc:
            raise AssertionError(f"cartfs {' '.join(map(str, argv))}: {exc}") from None
    with Archive.open(archive, readonly=True) as a:
        assert [s.name for s in a.list_snapshots()] == ["s"]  # nothing changed


def test_list_table_escapes_control_characters_of_old_names() -> None:
    """Names with a newline could be made before they were refused: the table still shows
    one row per snapshot."""
    row = {"name": "old\nname\x1b", "created": "2024-01-01 00:00:00 +0000", "txid": 3,
           "exclusive_bytes": 0}
    lines = _table([row])
    assert len(lines) == 2 and lines[1].startswith("old\\nname\\x1b  ")


def test_encrypted_archive_with_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "enc.cart"
    Archive.create(path, passphrase="secret", kdf=KdfParams.cheap()).close()
    key = tmp_path / "pass"
    key.write_text("secret\n")
    ok(run_cartfs("snapshot", "create", path, "s", "--key-file", key))
    env = cartfs_env(CARTFS_PASSPHRASE="secret")
    listed = ok(run_cartfs("snapshot", "list", path, env=env))
    assert listed.out.splitlines()[1].startswith("s ")


def test_help_for_every_snapshot_command() -> None:
    results = run_all(("snapshot", "--help"), *(("snapshot", cmd, "--help") for cmd in
                                                 ("create", "list", "delete", "restore",
                                                  "diff")))
    for result in results:
        assert ok(result).out.startswith("usage: cartfs snapshot")
    assert "@live" in results[-1].out


# ---- mounted archives --------------------------------------------------------------------------


def test_find_archive_mount_reads_mountinfo(tmp_path: Path) -> None:
    archive = tmp_path / "my archive.cart"
    archive.write_bytes(b"")
    escaped = str(archive).replace(" ", "\\040")
    info = tmp_path / "mountinfo"
    info.write_text(
        f"36 25 0:32 / /mnt/other rw - fuse.cartfs /elsewhere.cart rw\n"
        f"37 25 0:33 / /mnt/with\\040space rw,nosuid - fuse.cartfs {escaped} rw\n"
        f"38 25 0:34 / /mnt/ext4 rw - ext4 {escaped} rw\n")
    assert find_archive_mount(str(archive), str(info)) == "/mnt/with space"
    assert find_archive_mount(str(tmp_path / "none.cart"), str(info)) is None


def test_mounted_snapshots_map_directory_errors(tmp_path: Path) -> None:
    """The ``.snapshots`` protocol on a plain directory: mkdir creates, rmdir deletes,
    EEXIST/ENOENT become the same errors as without a mount."""
    (tmp_path / ".snapshots").mkdir()
    snaps = MountedSnapshots(str(tmp_path))
    snaps.create("b")
    snaps.create("a")
    assert snaps.names() == ["a", "b"]
    with pytest.raises(AlreadyExists, match="'a' exists"):
        snaps.create("a")
    snaps.delete("a")
    with pytest.raises(NotFound, match="no snapshot named 'a'"):
        snaps.delete("a")
    (tmp_path / ".snapshots" / "b" / "inside").mkdir()
    with pytest.raises(CartError, match="b"):
        snaps.delete("b")  # ENOTEMPTY from a real directory: one line naming the path


class Mount:
    """One background ``cartfs mount`` for a test; always unmounted afterwards."""

    def __init__(self, archive: Path, mountpoint: Path) -> None:
        self.archive, self.mountpoint = archive, mountpoint
        mountpoint.mkdir()
        ok(run_cartfs("mount", archive, mountpoint, "--log-file", mountpoint.parent / "log"))

    def close(self) -> None:
        if find_archive_mount(str(self.archive)) is None:
            return
        if run_cartfs("umount", self.mountpoint).code != 0:
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False,
                           capture_output=True)
        deadline = time.monotonic() + 30
        while find_archive_mount(str(self.archive)) is not None and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def mounted(archive: Path, tmp_path: Path) -> Iterator[Mount]:
    if not CAN_MOUNT:
        pytest.skip("needs /dev/fuse and fusermount3")
    mount = Mount(archive, tmp_path / "mnt")
    try:
        yield mount
    finally:
        mount.close()


@pytest.mark.fuse
def test_restore_and_diff_of_a_mounted_archive_ask_for_an_unmount(mounted: Mount) -> None:
    """Restore and diff need the archive itself; vacuum goes through the mount."""
    restore, diff, vacuum = run_all(
        ("snapshot", "restore", mounted.archive, "s"),
        ("snapshot", "diff", mounted.archive, "s", "@live"), ("vacuum", mounted.archive))
    assert_one_line_error(restore, "mounted at", str(mounted.mountpoint), "unmount")
    assert_one_line_error(diff, "mounted at", "unmount")
    assert "through the mount" in ok(vacuum).out  # the daemon vacuums (tests/fuse)
    assert (mounted.mountpoint / ".snapshots").is_dir()  # create/list/delete go through it


@pytest.mark.fuse
def test_snapshots_of_a_mounted_archive_go_through_dot_snapshots(mounted: Mount) -> None:
    snapdir = mounted.mountpoint / ".snapshots"
    assert snapdir.is_dir()
    (mounted.mountpoint / "while-mounted.txt").write_bytes(b"written through the mount")
    created = ok(run_cartfs("snapshot", "create", mounted.archive, "live1"))
    assert "through the mount" in created.out
    assert (snapdir / "live1" / "while-mounted.txt").read_bytes() == \
        b"written through the mount"
    (mounted.mountpoint / "while-mounted.txt").write_bytes(b"changed")
    assert (snapdir / "live1" / "while-mounted.txt").read_bytes() == \
        b"written through the mount"
    listed = ok(run_cartfs("snapshot", "list", mounted.archive, "--json"))
    assert "live1" in [r["name"] for r in json.loads(listed.out)]
    assert_one_line_error(run_cartfs("snapshot", "create", mounted.archive, "live1"),
                          "exists")
    ok(run_cartfs("snapshot", "delete", mounted.archive, "live1"))
    assert not (snapdir / "live1").exists()
    assert_one_line_error(run_cartfs("snapshot", "delete", mounted.archive, "live1"),
                          "no snapshot named")
    mounted.close()
    with Archive.open(mounted.archive, readonly=True) as a:
        assert [s.name for s in a.list_snapshots()] == []
        assert a.read_file("/while-mounted.txt") == b"changed"
        assert fsck(a).ok
