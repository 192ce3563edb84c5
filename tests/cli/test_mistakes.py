"""User mistakes: one clear ``cartfs: ...`` line on stderr, a non-zero exit, never a
traceback — for the archive file, for paths inside it, and for local files."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.keys import KdfParams

from .conftest import Result, assert_one_line_error, cartfs_env, run_cartfs

Cli = Callable[..., Result]


def png_bytes() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b""))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "a.cart"
    with Archive.create(path) as a:
        a.write_file("/docs/a.txt", b"hello\n", parents=True)
        a.make_dir("/docs/full/inner", parents=True)
    return path


@pytest.fixture
def not_archives(tmp_path: Path) -> dict[str, Path]:
    png = tmp_path / "photo.png"
    png.write_bytes(png_bytes())
    zipped = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("hello.txt", "hello " * 1000)
    empty = tmp_path / "empty.cart"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.cart"
    folder.mkdir()
    return {"png": png, "zip": zipped, "empty": empty, "dir": folder}


@pytest.mark.parametrize("kind", ["png", "zip", "empty", "dir"])
@pytest.mark.parametrize("command", ["ls", "info", "fsck", "cat", "put"])
def test_not_an_archive(cli: Cli, not_archives: dict[str, Path], kind: str, command: str,
                        tmp_path: Path) -> None:
    target = not_archives[kind]
    extra = {"cat": ["/x"], "put": [str(tmp_path), "/"]}.get(command, [])
    result = cli(command, target, *extra)
    assert_one_line_error(result, target.name)
    assert target.exists() and (kind == "dir" or target.read_bytes() is not None)


def test_not_an_archive_through_the_console_entry(not_archives: dict[str, Path]) -> None:
    result = run_cartfs("fsck", not_archives["png"])
    assert_one_line_error(result, "photo.png", "Cartridge archive")
    assert result.code == 1


def test_missing_archive(cli: Cli, tmp_path: Path) -> None:
    for command, extra in (("ls", []), ("info", []), ("fsck", []), ("get", ["/", "out"])):
        result = cli(command, tmp_path / "missing.cart", *extra)
        assert_one_line_error(result, "missing.cart", "no such file")


def test_truncated_archive(cli: Cli, archive: Path) -> None:
    with Archive.open(archive) as a:
        a.write_file("/big", os.urandom(3 << 20))
    size = archive.stat().st_size
    os.truncate(archive, size // 2)
    for command in ("fsck", "ls", "info"):
        assert_one_line_error(cli(command, archive), "a.cart", "truncated")


def test_info_on_a_damaged_tree_names_the_archive(cli: Cli, archive: Path) -> None:
    with Archive.open(archive, readonly=True) as a:
        root = a.superblock.catalog.page
    raw = bytearray(archive.read_bytes())
    raw[root * 4096 + 200] ^= 0xFF
    archive.write_bytes(bytes(raw))
    result = cli("info", archive)
    assert_one_line_error(result, "a.cart", f"page {root}")
    assert result.code == 1


def test_corrupt_superblocks(cli: Cli, archive: Path) -> None:
    raw = bytearray(archive.read_bytes())
    for slot in (0, 1):
        raw[slot * 4096 + 40] ^= 0xFF
    archive.write_bytes(bytes(raw))
    result = cli("fsck", archive)
    assert_one_line_error(result, "a.cart")


@pytest.mark.parametrize("args, needles", [
    (["cat", "/nope"], ["/nope", "no such file"]),
    (["cat", "/docs/nope/deeper"], ["/docs/nope/deeper", "no such file"]),
    (["cat", "/docs"], ["/docs", "is a directory"]),
    (["ls", "/nope"], ["/nope", "no such file"]),
    (["ls", "/docs/a.txt/x"], ["not a directory"]),
    (["get", "/nope", "OUT"], ["/nope", "no such file"]),
    (["rm", "/nope"], ["/nope", "no such file"]),
    (["rm", "/docs/full"], ["/docs/full", "is a directory", "-r"]),
    (["rm", "-r", "/"], ["root"]),
    (["mkdir", "/docs"], ["/docs", "exists"]),
    (["mkdir", "/a/b/c"], ["/a/b/c", "no such file"]),
    (["mv", "/docs", "/docs/full/x"], ["cannot move /docs", "into itself"]),
    (["mv", "/nope", "/x"], ["cannot move /nope", "no such file"]),
    (["put", "MISSING", "/"], ["MISSING", "No such file"]),
    (["put", "LOCAL", "/no/such/dir/x"], ["/no/such/dir/x", "no such file"]),
    (["get", "/docs", "/nonexistent-folder/x/y"], ["does not exist"]),
])
def test_wrong_paths(cli: Cli, archive: Path, tmp_path: Path, args: list[str],
                     needles: list[str]) -> None:
    local = tmp_path / "local.txt"
    local.write_text("x")
    replace = {"OUT": str(tmp_path / "out"), "MISSING": str(tmp_path / "missing.txt"),
               "LOCAL": str(local)}
    result = cli(args[0], archive, *[replace.get(a, a) for a in args[1:]])
    assert_one_line_error(result, *[replace.get(n, n) for n in needles])


def test_rm_without_r_leaves_the_directory(cli: Cli, archive: Path) -> None:
    cli("rm", archive, "/docs/full")
    with Archive.open(archive, readonly=True) as a:
        assert a.exists("/docs/full/inner")


def test_create_refuses_to_overwrite(cli: Cli, archive: Path) -> None:
    before = archive.read_bytes()
    assert_one_line_error(cli("create", archive), "a.cart", "already exists")
    assert archive.read_bytes() == before


def test_create_in_missing_folder(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("create", tmp_path / "no" / "x.cart"), "does not exist")


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An encrypted archive (with a cheap key derivation: these tests are about the CLI)
    and a file with its passphrase."""
    folder = tmp_path_factory.mktemp("secret")
    path = folder / "secret.cart"
    key = folder / "key"
    key.write_text("right\n")
    Archive.create(path, passphrase="right", kdf=KdfParams.cheap()).close()
    return path, key


def test_wrong_passphrase(secret: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = secret
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    result = run_cartfs("ls", path, "--key-file", wrong)
    assert_one_line_error(result, "secret.cart", "wrong passphrase")
    result = run_cartfs("ls", path, env=cartfs_env(CARTFS_PASSPHRASE="nope"))
    assert_one_line_error(result, "wrong passphrase")


def test_passphrase_needed_without_a_terminal(secret: tuple[Path, Path]) -> None:
    path, key = secret
    result = run_cartfs("info", path, input=b"")
    assert_one_line_error(result, "encrypted", "--key-file")
    assert run_cartfs("info", path, "--key-file", key).code == 0


def test_missing_key_file(secret: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = secret
    result = run_cartfs("ls", path, "--key-file", tmp_path / "nope")
    assert_one_line_error(result, "nope")


def test_archive_in_use(cli: Cli, archive: Path) -> None:
    with Archive.open(archive):
        result = run_cartfs("mkdir", archive, "/x")
    assert_one_line_error(result, "in use")


def test_bad_option_values(cli: Cli, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("create", tmp_path / "x.cart", "--chunk-size", "3000")
    assert exit_info.value.code == 2
    result = run_cartfs("create", tmp_path / "x.cart", "--compression", "gzip")
    assert result.code == 2 and "Traceback" not in result.err


def test_encrypt_without_a_passphrase_source(tmp_path: Path) -> None:
    result = run_cartfs("create", tmp_path / "s.cart", "--encrypt", input=b"")
    assert_one_line_error(result, "--key-file", "CARTFS_PASSPHRASE")
    assert result.code == 2
    assert not (tmp_path / "s.cart").exists()
