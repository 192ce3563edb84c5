"""Process crash: a writer SIGKILLed at random moments never leaves a damaged archive.

A forked child opens a real ``.cart`` file (FileDevice: pwrite, fdatasync, flock), makes random
changes and syncs often. Before each sync it reports ``intent <digest>`` over a pipe and after
the sync returns ``ack <digest> <txid>``; the digest covers the whole tree (paths, types, modes,
link counts, contents, symlink targets, xattrs). The parent kills it with SIGKILL after a random
delay, then opens the archive, runs fsck, and requires the tree to be exactly the last
acknowledged state — or a later one the child had announced (a commit that finished while the
ack was still in the pipe, or whose superblock landed just before the kill).

The same archive file carries on from run to run, so every run also exercises reopening an
archive a crash left behind (with whatever was killed mid-commit).
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.fsck import fsck
from cartfs.testing.tree import state_digest, tree_state
from cartfs.testing.workload import random_change

OPTIONS = OpenOptions(commit_bytes=1 << 40, commit_interval=1e9)


def child_main(path: str, seed: int, out: int) -> None:
    """The writer: random changes, a sync every 1-3 of them, each reported to the parent."""
    rng = random.Random(seed)
    archive = Archive.open(path, options=OPTIONS)
    os.write(out, b"ready\n")
    while True:
        for _ in range(rng.randint(1, 3)):
            random_change(archive, rng, unnamed=True)
        digest = state_digest(tree_state(archive))
        os.write(out, f"intent {digest}\n".encode())
        archive.sync()
        os.write(out, f"ack {digest} {archive.superblock.txid}\n".encode())


def spawn(path: str, seed: int) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        status = 0
        try:
            os.close(read_end)
            child_main(path, seed, write_end)
        except BaseException as exc:
            os.write(write_end, f"error {type(exc).__name__}: {exc}\n".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def read_lines(fd: int, until: float | None) -> list[str]:
    """Lines from the pipe until the deadline (None: until EOF)."""
    data = b""
    while True:
        timeout = None if until is None else max(0.0, until - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


@dataclass
class CrashStats:
    kills: int = 0
    acks: int = 0
    later_than_ack: int = 0
    killed_before_ready: int = 0
    digests: set[str] = field(default_factory=set)


def crash_once(path: str, seed: int, acked: str, stats: CrashStats) -> str:
    """One child run and kill; returns the digest the archive now holds."""
    rng = random.Random(seed ^ 0x5EED)
    pid, fd = spawn(path, seed)
    lines: list[str] = []
    try:
        lines = read_lines(fd, until=time.monotonic() + rng.uniform(0.0, 0.12))
        os.kill(pid, signal.SIGKILL)
    finally:
        os.waitpid(pid, 0)
        lines += read_lines(fd, until=None)
        os.close(fd)
    stats.kills += 1
    errors = [line for line in lines if line.startswith("error")]
    assert not errors, f"seed {seed}: the child failed on its own: {errors}"
    stats.killed_before_ready += "ready" not in lines
    later: list[str] = []
    for line in lines:
        word, *rest = line.split()
        if word == "intent":
            later.append(rest[0])
        elif word == "ack":
            acked, later = rest[0], []
            stats.acks += 1
    with Archive.open(path) as archive:
        report = fsck(archive)
        assert report.ok, f"seed {seed}: fsck after SIGKILL: {report.problems}"
        found = state_digest(tree_state(archive))
    assert found == acked or found in later, (
        f"seed {seed}: after SIGKILL the archive holds neither the last synced state nor a "
        f"later one ({len(later)} announced after the last ack)")
    stats.later_than_ack += found != acked
    stats.digests.add(found)
    return found


def run_crashes(tmp_path: Path, kills: int, base_seed: int) -> CrashStats:
    path = str(tmp_path / "crash.cart")
    Archive.create(path, chunk_size=4096, options=OPTIONS).close()
    with Archive.open(path, readonly=True) as archive:
        acked = state_digest(tree_state(archive))
    stats = CrashStats()
    for run in range(kills):
        acked = crash_once(path, base_seed + run, acked, stats)
    return stats


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    stats = run_crashes(tmp_path, kills=55, base_seed=0)
    assert stats.kills == 55
    # The test proves something only if the kills landed while real work was going on.
    assert stats.acks >= 50, f"too few syncs completed across the runs: {stats}"
    assert len(stats.digests) >= 20, f"the archive hardly changed between kills: {stats}"


@pytest.mark.soak
def test_sigkill_soak(tmp_path: Path) -> None:
    stats = run_crashes(tmp_path, kills=500, base_seed=10_000)
    assert stats.acks >= 500
