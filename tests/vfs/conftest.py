"""Fixtures for the SQLite VFS tests: fresh archives, connections that are always closed,
and a check that no test leaves an archive open in the VFS registry."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import cartfs.vfs
from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.vfs.registry import REGISTRY

REPO = Path(__file__).resolve().parents[2]
URI_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI


def make_archive(path: Path, **kwargs: object) -> Path:
    Archive.create(path, **kwargs).close()  # type: ignore[arg-type]
    return path


def fsck_ok(path: Path) -> None:
    with Archive.open(path, readonly=True) as archive:
        report = fsck(archive)
    assert report.ok, "\n".join(str(p) for p in report.problems)


def archive_files(path: Path) -> dict[str, int]:
    """Every regular file in the archive and its size."""
    out: dict[str, int] = {}
    with Archive.open(path, readonly=True) as archive:
        for top, _dirs, files in archive.walk("/"):
            for name in files:
                full = top.rstrip("/") + "/" + name
                out[full] = archive.stat(full).size
    return out


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("CARTFS_PASSPHRASE", None)
    return env


PYTHON = sys.executable


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A fresh, empty archive."""
    return make_archive(tmp_path / "test.cart")


class Connections:
    """Opens connections for a test and closes whatever the test left open."""

    def __init__(self) -> None:
        self.opened: list[apsw.Connection] = []

    def connect(self, archive: Path, db: str = "/test.db", **kwargs: object
                ) -> apsw.Connection:
        conn = cartfs.vfs.connect(archive, db, **kwargs)  # type: ignore[arg-type]
        self.opened.append(conn)
        return conn

    def uri(self, uri: str, flags: int = URI_FLAGS) -> apsw.Connection:
        conn = apsw.Connection(uri, flags=flags)
        self.opened.append(conn)
        return conn

    def close_all(self) -> None:
        for conn in reversed(self.opened):
            conn.close()


@pytest.fixture
def conns() -> Iterator[Connections]:
    c = Connections()
    try:
        yield c
    finally:
        c.close_all()


@pytest.fixture(autouse=True)
def no_archive_left_open() -> Iterator[None]:
    """Every test closes what it opens: the last file closed closes the archive."""
    yield
    left = REGISTRY.open_entries()
    assert not left, f"archives still open in the VFS: {left}"
