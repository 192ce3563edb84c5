"""The mount commands from a user's side: bad input gets one clear line (never a
traceback), --help works, and the mount(8) helper / `mount -t fuse.cartfs` / fstab path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.fuse.mount import find_mount

from .conftest import Mounts, force_unmount, run_cli


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_bad_input_is_one_line(mounts: Mounts, tmp_path: Path) -> None:
    good = mounts.archive()
    mnt = mounts.mountpoint()
    one_line_error(run_cli("mount", str(tmp_path / "missing.cart"), str(mnt), check=False),
                   "missing.cart")
    corrupt = tmp_path / "corrupt.cart"
    corrupt.write_bytes(b"this is not an archive" * 1000)
    one_line_error(run_cli("mount", str(corrupt), str(mnt), check=False), "corrupt.cart")
    damaged = tmp_path / "damaged.cart"
    damaged.write_bytes(good.read_bytes()[: 4096 * 3])
    one_line_error(run_cli("mount", str(damaged), str(mnt), check=False))
    one_line_error(run_cli("mount", str(good), str(tmp_path / "nodir"), check=False),
                   "does not exist")
    (tmp_path / "afile").write_text("x")
    one_line_error(run_cli("mount", str(good), str(tmp_path / "afile"), check=False),
                   "not a directory")
    full = mounts.mountpoint("full")
    (full / "something").write_text("x")
    one_line_error(run_cli("mount", str(good), str(full), check=False), "not empty")
    one_line_error(run_cli("mount", str(good), str(mnt), "-o", "bogus_option", check=False),
                   "bogus_option")
    one_line_error(run_cli("mount", str(good), str(mnt), "-o", "compress=rar", check=False),
                   "rar")
    one_line_error(run_cli("umount", str(mnt), check=False), "not mounted")

    mounts.mount(good, mnt)
    other = mounts.mountpoint("other")
    one_line_error(run_cli("mount", str(good), str(other), check=False), "in use")
    one_line_error(run_cli("mount", str(good), str(mnt), check=False), "already")
    assert find_mount(str(other)) is None
    mounts.unmount(mnt)


def test_help() -> None:
    for args in (["mount", "--help"], ["umount", "--help"]):
        proc = run_cli(*args)
        assert "usage:" in proc.stdout
    mount_help = run_cli("mount", "--help").stdout
    for option in ("xattr=0", "337 MB/s", "snapdir=visible", "principal=NAME"):
        assert option in mount_help
    out = subprocess.run([sys.executable, "-m", "cartfs.cli.mount_helper", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "mount.fuse.cartfs" in out


def test_other_commands_do_not_load_the_fuse_machinery(tmp_path: Path) -> None:
    """pyfuse3 and trio cost ~0.2 s to import: only mount/umount may pay it."""
    archive = tmp_path / "a.cart"
    Archive.create(archive).close()
    probe = ("import sys\nfrom cartfs.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
             "finally:\n    loaded = sorted({'pyfuse3', 'trio'} & set(sys.modules))\n"
             "    print('LOADED', loaded, file=sys.stderr)\n")
    for argv in (["info", str(archive)], ["ls", str(archive)], ["--help"]):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                              text=True, check=False)
        assert "LOADED []" in proc.stderr, (argv, proc.stderr[-2000:])


def test_frozen_archive_mounts_read_only(mounts: Mounts, tmp_path: Path) -> None:
    source = mounts.archive("source.cart")
    frozen = tmp_path / "frozen.cart"
    with Archive.open(source) as a:
        a.write_file("/hello.txt", b"frozen in time")
        a.freeze(frozen)
    mnt = mounts.mountpoint()
    proc = run_cli("mount", str(frozen), str(mnt), "--log-file", str(mounts.log))
    mounts.mountpoints.append(mnt)
    assert "read-only" in proc.stderr
    assert (mnt / "hello.txt").read_text() == "frozen in time"
    with pytest.raises(OSError) as info:
        (mnt / "new").write_text("x")
    assert info.value.errno == 30  # EROFS
    mounts.unmount(mnt)

    readonly_file = mounts.archive("ro.cart")
    readonly_file.chmod(0o444)
    if os.geteuid() != 0:  # root may write anyway; the permission case is for users
        run_cli("mount", str(readonly_file), str(mnt), "--log-file", str(mounts.log))
        mounts.unmount(mnt)


def test_helper_and_mount_t(mounts: Mounts) -> None:
    """mount.fuse.cartfs as mount(8) calls it, and `mount -t fuse.cartfs` itself."""
    archive = mounts.archive()
    with Archive.open(archive) as a:
        a.write_file("/f.txt", b"via the helper")
    mnt = mounts.mountpoint()
    mounts.mountpoints.append(mnt)
    subprocess.run([sys.executable, "-m", "cartfs.cli.mount_helper", str(archive), str(mnt),
                    "-o", "rw,defaults,noauto,nofail,_netdev,x-systemd.automount,commit=2"],
                   check=True, timeout=60)
    assert (mnt / "f.txt").read_text() == "via the helper"
    mounts.unmount(mnt)

    helper = Path("/sbin/mount.fuse.cartfs")
    # The venv's bin/ is not on PATH when pytest runs as .venv/bin/python -m pytest.
    installed = shutil.which("mount.fuse.cartfs") or shutil.which(
        "mount.fuse.cartfs", path=str(Path(sys.executable).parent))
    if os.geteuid() != 0 or shutil.which("mount") is None or installed is None:
        pytest.skip("mount -t needs root and the installed helper")
    created = False
    if not helper.exists():
        helper.symlink_to(installed)
        created = True
    try:
        subprocess.run(["mount", "-t", "fuse.cartfs", "-o", "allow_other", str(archive),
                        str(mnt)], check=True, timeout=60, capture_output=True)
        assert (mnt / "f.txt").read_text() == "via the helper"
        run_cli("umount", str(mnt))
    finally:
        force_unmount(mnt)
        if created:
            helper.unlink()
