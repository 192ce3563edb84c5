"""Helpers for CLI tests: run ``cartfs`` in-process or as a real subprocess, and describe
local trees precisely enough to compare a round trip (contents, modes, owners, ns times,
symlink targets, hard-link identity, extended attributes)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cartfs.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def cartfs_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("CARTFS_PASSPHRASE", None)
    env.update(extra)
    return env


def cartfs_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "cartfs.cli.main", *(os.fspath(a) for a in args)]


def run_cartfs(*args: str | os.PathLike[str], cwd: Path | None = None,
               env: dict[str, str] | None = None, input: bytes | None = None,
               timeout: float = 120) -> Result:
    """``cartfs ARGS`` as a real process (the console entry point's code path)."""
    proc = subprocess.run(cartfs_cmd(*args), cwd=cwd, env=env or cartfs_env(),
                          capture_output=True, input=input, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                  proc.stderr.decode("utf-8", "surrogateescape"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``cartfs ARGS`` in this process (fast), with its exit code and output."""
    def run(*args: str | os.PathLike[str]) -> Result:
        code = main([os.fspath(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


def assert_one_line_error(result: Result, *needles: str) -> None:
    """A user mistake: non-zero exit, exactly one ``cartfs: ...`` line, no traceback."""
    assert result.code != 0, result
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("cartfs: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---- describing trees ------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """What a round trip must preserve about one path."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    target: bytes | None
    xattrs: tuple[tuple[str, bytes], ...]


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names
                        if n.startswith("user.")))


Facts = tuple[dict[bytes, Entry], dict[bytes, int]]


def describe_tree(root: Path) -> Facts:
    """{relative path: Entry} and {relative path: hard-link group} of a local tree.

    Each path is lstat-ed before its directory is read, so listing a directory cannot move
    the access time we record; contents are not read here (see :func:`read_contents`)."""
    entries: dict[bytes, Entry] = {}
    inodes: dict[bytes, tuple[int, int]] = {}
    base = os.fsencode(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        path = os.path.join(base, rel) if rel else base
        st = os.lstat(path)
        kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                else "link" if stat.S_ISLNK(st.st_mode) else "fifo"
                if stat.S_ISFIFO(st.st_mode) else "other")
        entries[rel] = Entry(kind, st.st_mode, st.st_uid, st.st_gid,
                             st.st_size if kind in ("file", "link") else 0, st.st_mtime_ns,
                             st.st_atime_ns, os.readlink(path) if kind == "link" else None,
                             _xattrs(path) if kind != "link" else ())
        if kind == "file" and st.st_nlink > 1:
            inodes[rel] = (st.st_dev, st.st_ino)
        if kind == "dir":
            stack.extend(os.path.join(rel, name) if rel else name for name in os.listdir(path))
    groups: dict[tuple[int, int], int] = {}
    link_group = {rel: groups.setdefault(key, len(groups)) for rel, key in sorted(inodes.items())}
    return entries, link_group


def read_contents(root: Path, entries: dict[bytes, Entry]) -> dict[bytes, bytes]:
    base = os.fsencode(root)
    contents = {}
    for rel, entry in entries.items():
        if entry.kind == "file":
            with open(os.path.join(base, rel), "rb") as fh:
                contents[rel] = fh.read()
    return contents
