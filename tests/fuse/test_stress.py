"""Several processes hammering one mount at once must never bring the daemon down: every
failing request is an errno, and afterwards the mount answers and the archive is clean."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import random
import shutil
import subprocess
import time

import pytest

from .conftest import Mounts, fsck_ok

STRESS_SECONDS = 12
EXPECTED = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR,
            errno.EINVAL, errno.ELOOP, errno.EPERM}  # EPERM: hard link to a directory


def _hammer(root: str, seed: int, seconds: float, queue: multiprocessing.Queue[str]) -> None:
    """Random operations on a small shared namespace, so processes collide constantly."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(12)]
    deadline = time.monotonic() + seconds
    ops = 0
    unexpected: list[str] = []
    while time.monotonic() < deadline:
        a = os.path.join(root, rng.choice(names))
        b = os.path.join(root, rng.choice(names), rng.choice(names))
        op = rng.randrange(12)
        try:
            if op == 0:
                os.mkdir(a)
            elif op == 1:
                with open(a, "ab") as fh:
                    fh.write(os.urandom(rng.randrange(1, 200_000)))
            elif op == 2:
                with open(a, "rb") as fh:
                    fh.read()
            elif op == 3:
                os.unlink(a)
            elif op == 4:
                os.rmdir(a)
            elif op == 5:
                os.rename(a, os.path.join(root, rng.choice(names)))
            elif op == 6:
                os.listdir(a if rng.random() < 0.5 else root)
            elif op == 7:
                with open(b, "wb") as fh:
                    fh.write(b"x" * rng.randrange(0, 70_000))
                    fh.flush()
                    os.fsync(fh.fileno())
            elif op == 8:
                os.truncate(a, rng.randrange(0, 300_000))
            elif op == 9:
                os.symlink(rng.choice(names), a)
            elif op == 10:
                os.link(a, os.path.join(root, rng.choice(names)))
            else:
                os.stat(b)
            ops += 1
        except OSError as exc:
            if exc.errno not in EXPECTED:
                unexpected.append(f"op {op}: {exc!r}")
    queue.put(f"{ops} {len(unexpected)} {'; '.join(unexpected[:3])}")


def test_multi_process_hammering(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive, options=["commit=1"])
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(mnt), seed, STRESS_SECONDS, queue))
             for seed in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=STRESS_SECONDS + 120)
    results = [queue.get(timeout=10).split(" ", 2) for _ in procs]
    assert all(int(r[0]) > 0 for r in results), results
    assert all(r[1] == "0" for r in results), results
    # the daemon is alive and consistent
    assert os.path.isdir(mnt)
    (mnt / "after").write_text("still serving")
    assert (mnt / "after").read_text() == "still serving"
    subprocess.run(["ls", "-laR", str(mnt)], check=True, capture_output=True)
    mounts.unmount()
    fsck_ok(archive)


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng is not installed")
def test_stress_ng_short(mounts: Mounts) -> None:
    """stress-ng's file-system stressors (the tool that killed pyfuse3's passthrough example
    in 0.2 s) for a few seconds each."""
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    work = mnt / "stress"
    work.mkdir()
    stressors = ["--hdd", "2", "--hdd-bytes", "8M", "--dir", "1", "--dentry", "1",
                 "--rename", "1", "--link", "1", "--symlink", "1", "--xattr", "1",
                 "--seek", "1", "--seek-size", "16M", "--fallocate", "1",
                 "--fallocate-bytes", "8M", "--lockf", "1", "--mmap", "1", "--mmap-bytes", "8M"]
    proc = subprocess.run(["stress-ng", "--temp-path", str(work), *stressors,
                           "--timeout", "8s", "--metrics-brief"],
                          capture_output=True, text=True, timeout=180, check=False)
    # stress-ng may report a stressor as failed (e.g. a feature FUSE lacks); what matters
    # is that the daemon survived and the archive is consistent
    assert os.path.ismount(mnt), proc.stderr[-2000:]
    (mnt / "after").write_text("still serving")
    with contextlib.suppress(OSError):
        shutil.rmtree(work)
    mounts.unmount()
    fsck_ok(archive)
