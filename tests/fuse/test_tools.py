"""Copy a real tree in and out with cp -a and rsync -a; everything must survive exactly:
content, modes, symlinks, hard links, mtimes — and again after unmount and remount."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest

from .conftest import Mounts, fsck_ok

BIG = 120 * 1024 * 1024


def _source_tree(root: Path) -> Path:
    """The Python stdlib (thousands of real files) plus the awkward cases."""
    src = root / "src"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, src / "stdlib", symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "test", "tests"))
    odd = src / "odd"
    odd.mkdir()
    (odd / "big.bin").write_bytes(os.urandom(BIG // 4) * 4)  # compressible, > 100 MiB
    (odd / "empty").write_bytes(b"")
    (odd / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (odd / "script.sh").chmod(0o755)
    (odd / "secret").write_text("x")
    (odd / "secret").chmod(0o600)
    (odd / "sticky").mkdir(mode=0o1777)
    (odd / "sticky").chmod(0o1777)
    os.symlink("script.sh", odd / "link")
    os.symlink("/nonexistent/target", odd / "dangling")
    os.link(odd / "script.sh", odd / "hardlink")
    os.mkfifo(odd / "fifo")
    (odd / "nam e with spaces & ünïcode").write_text("names")
    os.utime(odd / "secret", ns=(1_000_000_000_123_456_789, 1_000_000_000_123_456_789))
    return src


def _signature(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything cp -a / rsync -a promise to keep, per relative path."""
    out: dict[str, tuple[object, ...]] = {}
    names: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            names.setdefault(path.lstat().st_ino, []).append(str(path.relative_to(root)))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            link_to = min(names[st.st_ino]) if st.st_nlink > 1 and \
                not stat.S_ISDIR(st.st_mode) else None
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            mtime = None if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) \
                else st.st_mtime_ns
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
            out[rel] = (st.st_mode, size, mtime, target, link_to)
    return out


def _diff(a: Path, b: Path, *exclude: str) -> None:
    """diff -r, except that diff reports two FIFOs as a difference (the signature checks
    them)."""
    proc = subprocess.run(["diff", "-r", "--no-dereference",
                           *[f"--exclude={name}" for name in exclude], str(a), str(b)],
                          capture_output=True, text=True, check=False)
    real = [line for line in proc.stdout.splitlines()
            if not (line.endswith("is a fifo") and "is a fifo while file" in line)]
    assert proc.returncode in (0, 1) and not real and not proc.stderr, \
        "\n".join(real[-40:]) + proc.stderr[-3000:]


def test_cp_rsync_round_trip(mounts: Mounts, tmp_path: Path) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    src = _source_tree(tmp_path)
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    subprocess.run(["cp", "-a", str(src), str(mnt / "cp")], check=True)
    # rsync gets everything but the big file (cp -a already carries it both ways): the
    # suite stays within its time budget on 2 cores
    subprocess.run(["rsync", "-a", "-H", "--exclude=big.bin", f"{src}/", f"{mnt}/rsync/"],
                   check=True)
    _diff(src, mnt / "cp")
    _diff(src, mnt / "rsync", "big.bin")
    expected = _signature(src)
    small = {k: v for k, v in expected.items() if not k.endswith("big.bin")}
    assert _signature(mnt / "cp") == expected
    assert _signature(mnt / "rsync") == small

    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    assert _signature(mnt / "cp") == expected
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(mnt / "cp"), str(out)], check=True)
    subprocess.run(["rsync", "-a", "-H", f"{mnt}/rsync/", f"{tmp_path}/out-rsync/"],
                   check=True)
    _diff(src, out)
    _diff(src, tmp_path / "out-rsync", "big.bin")
    assert _signature(out) == expected
    assert _signature(tmp_path / "out-rsync") == small
    mounts.unmount()
    fsck_ok(archive)


def test_ls_du_find_on_tree(mounted: Path, tmp_path: Path) -> None:
    """Listing tools agree with the source (resumable readdir over big directories)."""
    src = mounted / "many"
    src.mkdir()
    names = {f"file-{i:05d}-{'x' * (i % 60)}" for i in range(3000)}
    for name in names:
        (src / name).write_bytes(name.encode())
    assert set(os.listdir(src)) == names
    ls = subprocess.run(["ls", "-la", str(src)], capture_output=True, text=True, check=True)
    assert len(ls.stdout.splitlines()) == 3000 + 3  # total, ., ..
    found = subprocess.run(["find", str(src), "-type", "f"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert len(found) == 3000
    du = subprocess.run(["du", "-sb", str(src)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) >= sum(len(n) for n in names)


def test_rsync_big_file_round_trip(mounts: Mounts, tmp_path: Path) -> None:
    """rsync -a of a file over 100 MiB into the mount and back out, checked with diff -r.
    The data repeats a random 1 MiB block: incompressible per chunk, quick to make."""
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    src = tmp_path / "src"
    src.mkdir()
    block = os.urandom(1 << 20)
    with open(src / "big.bin", "wb") as fh:
        for i in range(110):
            fh.write(block[i:] + block[:i])  # shifted: no two MiB alike
    (src / "small.txt").write_text("small")
    os.symlink("big.bin", src / "link")
    os.utime(src / "big.bin", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    subprocess.run(["rsync", "-a", f"{src}/", f"{mnt}/dst/"], check=True)
    _diff(src, mnt / "dst")
    expected = _signature(src)
    assert _signature(mnt / "dst") == expected
    mounts.unmount()
    fsck_ok(archive)
    mnt = mounts.mount(archive)
    subprocess.run(["rsync", "-a", f"{mnt}/dst/", f"{tmp_path}/out/"], check=True)
    _diff(src, tmp_path / "out")
    assert _signature(tmp_path / "out") == expected
    mounts.unmount()
