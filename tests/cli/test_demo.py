"""``cartfs demo``: the README's first command must work from a fresh checkout, and the
commands it suggests must work on what it built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck

from .conftest import Result, run_cartfs

Cli = Callable[..., Result]


def test_demo_builds_lists_checks_and_suggests(tmp_path: Path) -> None:
    result = run_cartfs("demo", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    out = result.out
    assert out.startswith("Built demo.cart:")
    assert "$ cartfs ls -l -R demo.cart" in out
    assert "/stdlib/json" in out
    assert "more lines)" in out  # the listing is cut short
    assert "compression:  lz4" in out
    assert "result:    OK, no problems found" in out
    assert "cartfs mount demo.cart /mnt/x" in out
    archive = tmp_path / "demo.cart"
    with Archive.open(archive, readonly=True) as a:
        assert fsck(a).ok
        assert a.exists("/stdlib/email/message.py")
        assert a.exists("/src/cartfs/core/archive.py")
        assert not a.exists("/src/cartfs/__pycache__")
        assert a.read_file("/json/__init__.py").startswith(b'r"""JSON')
    assert not list(tmp_path.glob(".demo.cart.*"))  # no temporary file left


def test_demo_replaces_an_existing_one(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "demo.cart").write_bytes(b"an old, unrelated file")
    result = cli("demo", tmp_path)
    assert result.code == 0
    assert result.out.startswith(f"Replaced the existing {tmp_path / 'demo.cart'}:")
    with Archive.open(tmp_path / "demo.cart", readonly=True) as a:
        assert a.exists("/stdlib/json")


def test_suggested_commands_work(cli: Cli, tmp_path: Path) -> None:
    assert cli("demo", tmp_path).code == 0
    archive = tmp_path / "demo.cart"
    listing = cli("ls", "-l", archive, "/stdlib/json")
    assert listing.code == 0 and "decoder.py" in listing.out
    assert cli("cat", archive, "/json/__init__.py").out.startswith('r"""JSON')
    assert cli("get", archive, "/stdlib", tmp_path / "restored").code == 0
    assert (tmp_path / "restored" / "json" / "decoder.py").exists()
    assert cli("mv", archive, "/src", "/source").code == 0
    assert cli("rm", "-r", archive, "/stdlib/email").code == 0
    assert cli("fsck", archive).code == 0


def test_demo_into_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    result = cli("demo", tmp_path / "nope")
    assert result.code == 2
    assert "not a directory" in result.err
