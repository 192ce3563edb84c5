"""``cartfs keygen | freeze | verify | vacuum`` as real processes: the happy paths, what
they report, and one clear line with a non-zero exit (never a traceback) for every mistake —
including a tampered frozen archive."""

from __future__ import annotations

import json
import os
import random
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cartfs.core.archive import Archive, verify_signature
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams

from .conftest import Result, assert_one_line_error, cartfs_env, run_cartfs

DATA = random.Random(1).randbytes(200_000)


def run_all(*commands: tuple[str | os.PathLike[str], ...],
            env: dict[str, str] | None = None) -> list[Result]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda argv: run_cartfs(*argv, env=env), commands))


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.err, result.err
    return result


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """An archive with a snapshot and later changes, and a freed hole *below* its data, so
    vacuum has to move live pages down."""
    path = tmp_path / "src.cart"
    with Archive.create(path) as a:
        for i in range(20):
            a.write_file(f"/tmp/{i}", random.Random(i).randbytes(100_000), parents=True)
        a.sync()
        a.write_file("/docs/data.bin", DATA, parents=True)
        a.make_symlink("docs/data.bin", "/link")
        a.setxattr(a.resolve("/docs").ino, "user.note", b"kept")
        a.remove("/tmp", recursive=True)
        a.create_snapshot("snap")
        a.write_file("/docs/later.txt", b"after the snapshot")
    return path


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    ok(run_cartfs("keygen", tmp_path / "signer"))
    return tmp_path / "signer"


def test_keygen(tmp_path: Path) -> None:
    key = tmp_path / "k"
    made = ok(run_cartfs("keygen", key))
    assert "mode 0600" in made.out and "public key" in made.out
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again, no_folder = run_all(("keygen", key), ("keygen", tmp_path / "no" / "such" / "k"))
    assert_one_line_error(again, "already exists")
    (tmp_path / "k3.pub").write_text("someone else's")
    assert_one_line_error(run_cartfs("keygen", tmp_path / "k3"), "k3.pub", "already exists")
    assert not (tmp_path / "k3").exists()
    assert_one_line_error(no_folder, "No such file or directory")


def test_freeze_and_verify(source: Path, keys: Path, tmp_path: Path) -> None:
    dest = tmp_path / "frozen.cart"
    froze = ok(run_cartfs("freeze", source, dest, "--sign-key", keys))
    assert f"into {dest}" in froze.out and "live tree" in froze.out
    with Archive.open(source, readonly=True) as a:  # untouched: still has its snapshot
        assert [s.name for s in a.list_snapshots()] == ["snap"]
    verified, bare = run_all(("verify", dest, "--pubkey", f"{keys}.pub"), ("verify", dest))
    out = ok(verified).out
    assert "signature: OK" in out and f"matches {keys}.pub" in out
    assert "fsck:      OK" in out and "result:    OK" in out
    assert "not who signed it" in ok(bare).out
    with Archive.open(dest, readonly=True) as a:
        assert a.superblock.frozen
        assert a.read_file("/docs/data.bin") == DATA
        assert a.read_file("/docs/later.txt") == b"after the snapshot"
        assert a.readlink(a.lstat("/link").ino) == b"docs/data.bin"
        assert a.getxattr(a.resolve("/docs").ino, "user.note") == b"kept"
        assert a.statistics().allocator.free_pages == 0
    info = json.loads(ok(run_cartfs("info", dest, "--json")).out)
    assert info["frozen"] is True


def test_freeze_a_snapshot_with_a_one_time_key(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "snap.cart"
    froze = ok(run_cartfs("freeze", source, dest, "--snapshot", "snap"))
    assert "snapshot snap" in froze.out and "one-time key" in froze.out
    ok(run_cartfs("verify", dest))
    with Archive.open(dest, readonly=True) as a:
        assert not a.exists("/docs/later.txt")
        assert a.read_file("/docs/data.bin") == DATA


def test_verify_fails_on_a_tampered_archive(source: Path, keys: Path, tmp_path: Path) -> None:
    dest = tmp_path / "frozen.cart"
    ok(run_cartfs("freeze", source, dest, "--sign-key", keys))
    image = dest.read_bytes()
    cases = []
    for offset in (100, 4096 + 200, 3 * 4096 + 17, len(image) // 2, len(image) - 4096 + 90,
                   len(image) - 1):
        damaged = bytearray(image)
        damaged[offset] ^= 0x20
        path = tmp_path / f"damaged-{offset}.cart"
        path.write_bytes(bytes(damaged))
        cases.append(path)
    results = run_all(*(("verify", path, "--pubkey", f"{keys}.pub") for path in cases))
    for path, result in zip(cases, results, strict=True):
        assert_one_line_error(result, path.name)
        assert "signature" in result.err or "signed" in result.err or "changed" in result.err


def test_verify_runs_fsck_when_it_can(tmp_path: Path) -> None:
    src, dest = tmp_path / "enc.cart", tmp_path / "enc-frozen.cart"
    with Archive.create(src, passphrase="pw", kdf=KdfParams.cheap()) as a:
        a.write_file("/secret", b"s" * 10_000)
    env = cartfs_env(CARTFS_PASSPHRASE="pw")
    ok(run_cartfs("freeze", src, dest, env=env))
    key_file = tmp_path / "pass"
    key_file.write_text("pw\n")
    bare, with_file, wrong = run_all(
        ("verify", dest), ("verify", dest, "--key-file", key_file),
        ("verify", dest, "--key-file", tmp_path / "missing"))
    assert "skipped: encrypted" in ok(bare).out and "result:    OK" in bare.out
    with_env = run_cartfs("verify", dest, env=env)
    for result in (with_env, with_file):
        assert "fsck:      OK" in ok(result).out and "tag" in result.out
    assert_one_line_error(wrong, "missing")
    assert wrong.out == ""  # the bad key file is noticed before anything is checked


FROZEN_V1 = Path(__file__).resolve().parent.parent / "data" / "frozen-v1"


def test_verify_of_a_rewritten_tag_and_of_old_archives(tmp_path: Path) -> None:
    """A rewritten authentication tag (valid checksum, both slots) fails verify without a
    passphrase. An encrypted archive frozen the v1 way (its signature leaves the tag out)
    is INCOMPLETE, exit 1, without the passphrase, and OK with it; a plain one is OK."""
    src, dest = tmp_path / "enc.cart", tmp_path / "enc-frozen.cart"
    with Archive.create(src, passphrase="pw", kdf=KdfParams.cheap()) as a:
        a.write_file("/secret", b"s" * 10_000)
        a.freeze(dest)
    image = bytearray(dest.read_bytes())
    for slot in (0, 1):  # auth_tag at 296..327, then the CRC of bytes 0..327
        base = slot * 4096
        image[base + 296:base + 328] = bytes(range(32))
        image[base + 328:base + 332] = zlib.crc32(image[base:base + 328]).to_bytes(4, "little")
    tampered = tmp_path / "tampered.cart"
    tampered.write_bytes(bytes(image))
    key_file = tmp_path / "v1.key"
    key_file.write_text("frozen v1\n")
    pub = FROZEN_V1 / "signer.pub"
    bad, old_bare, old_key, old_plain = run_all(
        ("verify", tampered), ("verify", FROZEN_V1 / "encrypted.cart", "--pubkey", pub),
        ("verify", FROZEN_V1 / "encrypted.cart", "--pubkey", pub, "--key-file", key_file),
        ("verify", FROZEN_V1 / "plain.cart", "--pubkey", pub))
    assert_one_line_error(bad, "tampered.cart", "changed")
    assert old_bare.code == 1 and "Traceback" not in old_bare.err
    assert "result:    INCOMPLETE" in old_bare.out and "--key-file" in old_bare.out
    assert "fsck:      OK" in ok(old_key).out and "result:    OK" in old_key.out
    assert "result:    OK" in ok(old_plain).out


def test_vacuum(source: Path) -> None:
    size = os.path.getsize(source)
    with Archive.open(source, readonly=True) as a:
        before = {p: a.read_file(p) for p in ("/docs/data.bin", "/docs/later.txt")}
        snap = a.snapshot("snap").read_file("/docs/data.bin")
    result = ok(run_cartfs("vacuum", source))
    assert "reclaimed" in result.out and "->" in result.out
    assert int(result.out.split("(")[1].split()[0]) > 40  # pages moved
    assert os.path.getsize(source) < size // 2
    with Archive.open(source) as a:
        assert {p: a.read_file(p) for p in before} == before
        assert a.snapshot("snap").read_file("/docs/data.bin") == snap
        assert fsck(a).ok
        a.write_file("/after", b"a" * 300_000)  # writes after vacuum leave old data alone
    with Archive.open(source, readonly=True) as a:
        assert {p: a.read_file(p) for p in before} == before
        assert fsck(a).ok


def test_every_mistake_is_one_line(source: Path, keys: Path, tmp_path: Path) -> None:
    frozen = tmp_path / "frozen.cart"
    ok(run_cartfs("freeze", source, frozen, "--sign-key", keys))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    missing = tmp_path / "missing.cart"
    new = tmp_path / "new.cart"
    cases: list[tuple[tuple[str | os.PathLike[str], ...], tuple[str, ...]]] = [
        (("freeze", missing, new), ("missing.cart",)),
        (("freeze", source, frozen), ("already exists",)),
        (("freeze", source, tmp_path / "no" / "dir.cart"), ("folder does not exist",)),
        (("freeze", source, new, "--sign-key", tmp_path / "nokey"), ("nokey",)),
        (("freeze", source, new, "--sign-key", f"{keys}.pub"), ("not a PEM private key",)),
        (("freeze", source, new, "--sign-key", garbage), ("not a PEM private key",)),
        (("freeze", source, new, "--snapshot", "nope"), ("no snapshot named 'nope'",)),
        (("verify", missing), ("missing.cart",)),
        (("verify", source), ("not a frozen archive",)),
        (("verify", frozen, "--pubkey", keys), ("not a PEM public key",)),
        (("verify", frozen, "--pubkey", tmp_path / "nopub"), ("nopub",)),
        (("vacuum", missing), ("missing.cart",)),
        (("vacuum", frozen), ("frozen", "read-only")),
        (("vacuum", garbage), ("garbage.key",)),
    ]
    results = run_all(*(argv for argv, _ in cases))
    for (argv, needles), result in zip(cases, results, strict=True):
        try:
            assert_one_line_error(result, *needles)
        except AssertionError as exc:
            raise AssertionError(f"cartfs {' '.join(map(str, argv))}: {exc}") from None
    assert not new.exists()
    assert [p.name for p in tmp_path.iterdir() if "freezing" in p.name] == []
    other = tmp_path / "other"
    ok(run_cartfs("keygen", other))
    wrong = run_cartfs("verify", frozen, "--pubkey", f"{other}.pub")
    assert_one_line_error(wrong, "signed by a different key")
    verify_signature(str(frozen))  # none of this changed the frozen archive


def test_help_for_every_command() -> None:
    results = run_all(*(((cmd, "--help")) for cmd in ("freeze", "verify", "keygen", "vacuum")))
    for cmd, result in zip(("freeze", "verify", "keygen", "vacuum"), results, strict=True):
        assert ok(result).out.startswith(f"usage: cartfs {cmd}")


def test_busy_archive(source: Path, tmp_path: Path) -> None:
    """Another process holds the archive for writing (a mount would): one line each."""
    holder = Archive.open(source)
    try:
        freeze, vacuum = run_all(("freeze", source, tmp_path / "x.cart"), ("vacuum", source))
    finally:
        holder.close()
    assert_one_line_error(freeze, "in use", "unmount")
    assert_one_line_error(vacuum, "in use", "unmount")
    assert not (tmp_path / "x.cart").exists()
