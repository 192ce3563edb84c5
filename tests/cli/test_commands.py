"""Every command's happy path, through ``cartfs.cli.main.main`` (and the real console
entry where a process matters: ``--help``, pipes)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.cli.main import build_parser
from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck

from .conftest import Result, cartfs_cmd, cartfs_env, run_cartfs

Cli = Callable[..., Result]


@pytest.fixture
def archive(cli: Cli, tmp_path: Path) -> Path:
    """An archive with /docs/a.txt, /docs/sub/b.bin, /link -> docs/a.txt."""
    path = tmp_path / "a.cart"
    assert cli("create", path, "--title", "Test archive", "--author", "me").code == 0
    with Archive.open(path) as a:
        a.write_file("/docs/a.txt", b"hello\n", parents=True)
        a.write_file("/docs/sub/b.bin", bytes(range(256)) * 10, parents=True)
        a.make_symlink("docs/a.txt", "/link")
        a.setattr(a.resolve("/docs/a.txt").ino, mtime_ns=1_700_000_000_000_000_000)
    return path


def registered_commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = registered_commands()
    assert {"create", "info", "ls", "cat", "put", "get", "rm", "mkdir", "mv", "fsck",
            "demo"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: cartfs {command}"), (command, out)


def test_help_through_the_console_entry() -> None:
    result = run_cartfs("--help")
    assert result.code == 0
    assert "put" in result.out and "fsck" in result.out
    assert run_cartfs("ls", "--help").code == 0


def test_create_options(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "z.cart"
    result = cli("create", path, "--compression", "zstd", "--level", "9", "--chunk-size",
                 "128K", "--slug", "zz", "--description", "a test")
    assert result.code == 0, result
    with Archive.open(path, readonly=True) as a:
        assert a.compression == "zstd"
        assert a.superblock.chunk_size == 128 * 1024
        assert a.superblock.codec_level == 9
        assert a.manifest()["slug"] == "zz"
        assert a.manifest()["description"] == "a test"


def test_info(cli: Cli, archive: Path) -> None:
    result = cli("info", archive)
    assert result.code == 0
    assert "compression:  lz4, chunk size 64.0 KiB" in result.out
    assert "contents:     2 files, 3 directories, 1 symlink" in result.out
    assert "title:        Test archive" in result.out
    assert "encrypted:    no" in result.out
    details = json.loads(cli("info", archive, "--json").out)
    assert details["files"] == 2
    assert details["logical_bytes"] == 6 + 2560
    assert details["manifest"]["author"] == "me"
    assert details["used_pages"] + details["free_pages"] == details["total_pages"]
    assert details["txid"] >= 1
    with Archive.open(archive) as a:  # pages only a snapshot holds are in use too
        a.create_snapshot("s")
        a.remove("/docs", recursive=True)
    details = json.loads(cli("info", archive, "--json").out)
    assert details["snapshot_pages"] > 0
    with Archive.open(archive, readonly=True) as a:
        report = fsck(a)
    assert details["used_pages"] == report.reachable_pages  # info and fsck agree
    assert (report.files, report.other) == (0, 1)  # /link is left, and is no file
    assert "of them held only by snapshots" in cli("info", archive).out


def test_ls(cli: Cli, archive: Path) -> None:
    assert cli("ls", archive).out == "docs\nlink\n"
    assert cli("ls", archive, "/docs").out == "a.txt\nsub\n"
    long = cli("ls", archive, "-l", "/docs").out.splitlines()
    assert long[0].startswith("-rw-r--r-- 1 ")
    assert long[0].endswith(" 6 Nov 14  2023 a.txt")
    assert long[1].startswith("drwxr-xr-x 2 ") and long[1].endswith(" sub")
    assert cli("ls", archive, "-l", "/link").out.rstrip().endswith("/link -> docs/a.txt")
    assert cli("ls", archive, "-l", "-h", "/docs/sub/b.bin").out.split()[4] == "2.5K"
    assert cli("ls", archive, "/docs/a.txt").out == "/docs/a.txt\n"  # a file lists itself
    recursive = cli("ls", archive, "-R").out
    assert recursive == "/:\ndocs\nlink\n\n/docs:\na.txt\nsub\n\n/docs/sub:\nb.bin\n"


def test_cat(cli: Cli, archive: Path) -> None:
    assert cli("cat", archive, "/docs/a.txt", "/link").out == "hello\nhello\n"


def test_cat_binary_through_a_pipe(archive: Path) -> None:
    proc = subprocess.run(cartfs_cmd("cat", archive, "/docs/sub/b.bin"), env=cartfs_env(),
                          capture_output=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout == bytes(range(256)) * 10


def test_cat_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``cartfs cat a.cart /big | head -c 10``: no traceback when head goes away."""
    path = tmp_path / "big.cart"
    with Archive.create(path) as a:
        a.write_file("/big", os.urandom(8 << 20))
    cat = subprocess.Popen(cartfs_cmd("cat", path, "/big"), env=cartfs_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert cat.stdout is not None and cat.stderr is not None
    head = subprocess.run(["head", "-c", "10"], stdin=cat.stdout, capture_output=True,
                          check=False)
    cat.stdout.close()
    _, err = cat.communicate(timeout=30)
    assert len(head.stdout) == 10
    assert err == b""
    assert cat.returncode in (0, 141)


def test_mkdir_rm_mv(cli: Cli, archive: Path) -> None:
    assert cli("mkdir", archive, "/new").code == 0
    assert cli("mkdir", archive, "-p", "/x/y/z", "/docs").code == 0
    assert cli("mkdir", archive, "-m", "700", "/private").code == 0
    assert cli("mv", archive, "/docs/a.txt", "/new").code == 0  # into a directory
    assert cli("mv", archive, "/new/a.txt", "/new/renamed.txt").code == 0
    assert cli("mv", archive, "/x", "/moved").code == 0
    assert cli("rm", archive, "/link").code == 0
    assert cli("rm", archive, "-r", "/docs").code == 0
    assert cli("rm", archive, "-f", "/not-there").code == 0
    with Archive.open(archive, readonly=True) as a:
        assert a.listdir("/") == ["moved", "new", "private"]
        assert a.read_file("/new/renamed.txt") == b"hello\n"
        assert a.exists("/moved/y/z")
        assert a.stat("/private").mode & 0o7777 == 0o700


def test_fsck_clean(cli: Cli, archive: Path) -> None:
    result = cli("fsck", archive)
    assert result.code == 0
    assert "result:    OK, no problems found" in result.out
    assert "contents:  7 inodes: 3 files, 4 directories" in result.out or \
        "inodes" in result.out


def test_fsck_finds_damage(cli: Cli, tmp_path: Path) -> None:
    """A flipped byte inside file data: fsck says where and exits 1."""
    path = tmp_path / "d.cart"
    with Archive.create(path, compression="none") as a:
        a.write_file("/victim", b"V" * 200_000)
    raw = bytearray(path.read_bytes())
    spot = raw.index(b"V" * 4096) + 100
    raw[spot] ^= 0xFF
    path.write_bytes(bytes(raw))
    result = cli("fsck", path)
    assert result.code == 1
    assert "PROBLEM:   page" in result.out
    assert "problem(s) found" in result.out


def test_verbose_after_the_command(cli: Cli, archive: Path) -> None:
    assert cli("ls", "-v", archive).code == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_one_line(archive: Path) -> None:
    for args in (["cat", archive, "/docs/a.txt"], ["ls", "-R", archive],
                 ["info", archive]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(cartfs_cmd(*args), env=cartfs_env(), stdout=full,
                                  stderr=subprocess.PIPE, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert err.strip() == "cartfs: standard output: No space left on device"


def test_rm_reports_a_missing_path_and_removes_the_others(cli: Cli, archive: Path) -> None:
    """As rm(1): one bad operand does not keep the others from going."""
    result = cli("rm", archive, "/docs/a.txt", "/nope", "/link")
    assert result.code == 1
    assert result.err.strip() == "cartfs: /nope: no such file or directory"
    with Archive.open(archive, readonly=True) as a:
        assert not a.exists("/docs/a.txt") and not a.exists("/link")
        assert a.exists("/docs/sub/b.bin")


def test_rm_r_and_walk_handle_a_tree_deeper_than_the_recursion_limit(cli: Cli,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "deep.cart"
    depth = 1500
    with Archive.create(path) as a:
        ino = a.getattr(1).ino
        for i in range(depth):
            ino = a.mkdir(ino, f"d{i}").ino
        a.create_file(ino, "leaf")
        walked = sum(1 for _ in a.walk("/d0"))
    assert walked == depth
    result = cli("rm", "-r", path, "/d0")
    assert result.code == 0, result.err
    with Archive.open(path, readonly=True) as a:
        assert a.listdir("/") == []
    assert cli("fsck", path).code == 0


def test_put_reads_to_the_end_of_a_file_whose_size_lies(cli: Cli, tmp_path: Path) -> None:
    """/proc files report size 0; cp copies what they hold, and so does put."""
    path = tmp_path / "p.cart"
    assert cli("create", path).code == 0
    assert cli("put", path, "/proc/self/status", "/status").code == 0
    with Archive.open(path, readonly=True) as a:
        text = a.read_file("/status")
    assert text.startswith(b"Name:\t") and len(text) > 100
