"""Mounting an encrypted archive: the passphrase from --key-file, -o key_file=, or
$CARTFS_PASSPHRASE; files written through the kernel land sealed in the archive; a missing or
wrong passphrase is one line and mounts nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams
from cartfs.fuse.mount import find_mount

from .conftest import Mounts, run_cli

PASSPHRASE = "mount passphrase 7"
SECRET = b"SEALED-THROUGH-FUSE-" * 500


def sealed_archive(mounts: Mounts) -> Path:
    return mounts.archive("sealed.cart", passphrase=PASSPHRASE, kdf=KdfParams.cheap())


def key_file(tmp: Path, text: str = PASSPHRASE) -> Path:
    path = tmp / "passphrase.key"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def mount_with(mounts: Mounts, archive: Path, *extra: str,
               env: dict[str, str] | None = None) -> Path:
    mnt = mounts.mountpoint()
    mounts.mountpoints.append(mnt)
    run_cli("mount", str(archive), str(mnt), "--log-file", str(mounts.log), *extra, env=env)
    assert find_mount(str(mnt)) is not None
    return mnt


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CARTFS_PASSPHRASE"}
    env.update(extra)
    return env


def use_and_check(mounts: Mounts, archive: Path, mnt: Path) -> None:
    """Write through the mount, unmount, and look at what reached the file."""
    (mnt / "Private Folder").mkdir()
    (mnt / "Private Folder" / "plans.txt").write_bytes(SECRET)
    os.symlink("Private Folder/plans.txt", mnt / "shortcut")
    assert (mnt / "shortcut").read_bytes() == SECRET
    mounts.unmount(mnt)
    raw = archive.read_bytes()
    for needle in (b"SEALED-THROUGH-FUSE", b"Private Folder", b"plans.txt", b"shortcut"):
        assert needle not in raw, needle
    with Archive.open(archive, passphrase=PASSPHRASE, readonly=True) as opened:
        assert opened.read_file("/Private Folder/plans.txt") == SECRET
        assert fsck(opened).ok


@pytest.mark.parametrize("how", ["--key-file", "-o key_file", "environment"])
def test_mount_encrypted(mounts: Mounts, tmp_path: Path, how: str) -> None:
    archive = sealed_archive(mounts)
    if how == "--key-file":
        mnt = mount_with(mounts, archive, "--key-file", str(key_file(tmp_path)),
                         env=clean_env())
    elif how == "-o key_file":
        mnt = mount_with(mounts, archive, "-o", f"key_file={key_file(tmp_path)}",
                         env=clean_env())
    else:
        mnt = mount_with(mounts, archive, env=clean_env(CARTFS_PASSPHRASE=PASSPHRASE))
    use_and_check(mounts, archive, mnt)


@pytest.mark.parametrize(("extra", "env", "needle"), [
    ((), {}, "CARTFS_PASSPHRASE"),
    ((), {"CARTFS_PASSPHRASE": "wrong"}, "wrong passphrase"),
    (("-o", "key_file=/nonexistent/key"), {}, "/nonexistent/key"),
])
def test_mount_refused_without_the_right_passphrase(mounts: Mounts, extra: tuple[str, ...],
                                                    env: dict[str, str], needle: str) -> None:
    archive = sealed_archive(mounts)
    mnt = mounts.mountpoint()
    proc = run_cli("mount", str(archive), str(mnt), *extra, check=False,
                   env=clean_env(**env))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert find_mount(str(mnt)) is None


def test_read_only_mount_of_a_frozen_encrypted_archive(mounts: Mounts, tmp_path: Path) -> None:
    archive = sealed_archive(mounts)
    with Archive.open(archive, passphrase=PASSPHRASE) as opened:
        opened.write_file("/report.txt", SECRET)
        opened.freeze(tmp_path / "frozen.cart")
    mnt = mount_with(mounts, tmp_path / "frozen.cart", "--key-file", str(key_file(tmp_path)),
                     env=clean_env())
    assert (mnt / "report.txt").read_bytes() == SECRET
    with pytest.raises(OSError):
        (mnt / "new.txt").write_bytes(b"x")
    mounts.unmount(mnt)
