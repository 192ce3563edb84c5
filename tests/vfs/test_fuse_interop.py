"""The same database file through the VFS and through the FUSE mount with stock sqlite3
(the command-line tool), one after the other, in both directions and in both journal modes.

Skipped cleanly when the machine cannot mount (no /dev/fuse, fusermount3 or sqlite3) or
when ``cartfs mount`` is not part of this checkout. The mount is the real CLI
(``python -m cartfs.cli.main mount ARCHIVE MNT``, which returns once mounted); unmounting
uses ``cartfs umount`` (returns after the daemon's final commit) and falls back to
``fusermount3 -u`` plus waiting for the daemon to release the archive.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cartfs.vfs
from cartfs.core.archive import Archive
from cartfs.core.errors import ArchiveBusy

from .conftest import PYTHON, fsck_ok, subprocess_env

CAN_MOUNT = (os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
             and shutil.which("sqlite3") is not None)
HAS_MOUNT_COMMAND = importlib.util.find_spec("cartfs.fuse") is not None and \
    importlib.util.find_spec("cartfs.fuse.operations") is not None

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(not CAN_MOUNT, reason="needs /dev/fuse, fusermount3 and sqlite3"),
    pytest.mark.skipif(not HAS_MOUNT_COMMAND, reason="cartfs mount is not available"),
]

CLI = [PYTHON, "-m", "cartfs.cli.main"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), check=False)
    if check:
        assert proc.returncode == 0, f"cartfs {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def sqlite3(db: Path, script: str) -> str:
    proc = subprocess.run(["sqlite3", "-bail", str(db)], input=script, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def is_mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return any(line.split()[4] == str(mnt) for line in fh)


def wait_released(archive: Path, timeout: float = 30) -> None:
    """Until the daemon has committed and let go of the archive."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            Archive.open(archive).close()
            return
        except ArchiveBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(archive, mount point); call ``mounted()`` inside the test to mount."""
    archive = tmp_path / "shared.cart"
    Archive.create(archive).close()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        yield archive, mnt
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, check=False)
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True,
                               check=False)


class Mounted:
    """``with Mounted(archive, mnt):`` — mounted inside, unmounted and released after."""

    def __init__(self, archive: Path, mnt: Path) -> None:
        self.archive, self.mnt = archive, mnt

    def __enter__(self) -> Path:
        cli("mount", str(self.archive), str(self.mnt))
        assert is_mounted(self.mnt)
        return self.mnt

    def __exit__(self, *exc: object) -> None:
        if cli("umount", str(self.mnt), check=False).returncode != 0:
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True)
        wait_released(self.archive)


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_vfs_then_stock_sqlite3_then_vfs(mount: tuple[Path, Path], mode: str) -> None:
    archive, mnt = mount
    conn = cartfs.vfs.connect(archive, "/app.db")
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    with conn:
        conn.executemany("INSERT INTO t(who) VALUES (?)", [("vfs",)] * 5000)
    conn.close()

    with Mounted(archive, mnt):
        db = mnt / "app.db"
        assert sqlite3(db, "PRAGMA integrity_check; SELECT count(*) FROM t;") == "ok\n5000"
        assert sqlite3(db, "PRAGMA journal_mode;") == mode
        sqlite3(db, "INSERT INTO t(who) SELECT 'sqlite3' FROM t LIMIT 1000;")

    conn = cartfs.vfs.connect(archive, "/app.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT who, count(*) FROM t GROUP BY who ORDER BY who"
                            ).fetchall() == [("sqlite3", 1000), ("vfs", 5000)]
    finally:
        conn.close()
    fsck_ok(archive)


def test_stock_sqlite3_database_opens_through_the_vfs(mount: tuple[Path, Path]) -> None:
    archive, mnt = mount
    with Mounted(archive, mnt):
        sqlite3(mnt / "made-by-sqlite3.db",
                "CREATE TABLE k(v); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 "
                "FROM c WHERE i < 20000) INSERT INTO k SELECT i FROM c;")
    conn = cartfs.vfs.connect(archive, "/made-by-sqlite3.db", readonly=True)
    try:
        assert conn.execute("SELECT count(*), sum(v) FROM k").fetchall() == \
            [(20000, 20000 * 20001 // 2)]
    finally:
        conn.close()
