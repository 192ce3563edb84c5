"""Vacuum: live pages move down, the file shrinks, nothing else changes — even if it is
killed or the power fails at any moment, and even for writes made long after it.

The first implementation's vacuum relocated pages without marking them allocated, so later
writes overwrote live data; these tests therefore always write a lot *after* vacuuming and
then check every tree (the live one and every snapshot) and run fsck.
"""

from __future__ import annotations

import dataclasses
import os
import random
import select
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from cartfs.core import vacuum as vacuum_module
from cartfs.core.alloc import GROUP_PAGES, Allocator
from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import ArchiveBusy
from cartfs.core.format import FIRST_DATA_PAGE, PAGE_SIZE
from cartfs.core.fsck import fsck
from cartfs.core.keys import KdfParams
from cartfs.testing.faults import FaultyDevice, PowerLoss

from .test_snapshots import NEVER, assert_fsck, churn, full_state, state_digest

States = dict[str, str]
COMMIT_SLACK = 24  # free pages vacuum leaves for the commits that record it (_commit_pages)


def all_states(archive: Archive) -> States:
    """Digest of the live tree and of every snapshot."""
    states = {"@live": state_digest(full_state(archive))}
    for info in archive.list_snapshots():
        states[info.name] = state_digest(full_state(archive.snapshot(info.name)))
    return states


def fragment(archive: Archive, seed: int, files: int, size: int) -> None:
    """Fill, snapshot, delete half, overwrite some, snapshot, churn, drop the first
    snapshot: free holes everywhere, live pages and snapshot-held pages high up."""
    rng = random.Random(seed)
    names = [f"/big{i % 8}/file{i}" for i in range(files)]
    for name in names:
        archive.write_file(name, rng.randbytes(size), parents=True)
    archive.create_snapshot("old")
    churn(archive, rng, 40)
    for name in names[::2]:
        if archive.exists(name):  # the churn may have moved it
            archive.remove(name)
    for name in names[1::4]:
        if archive.exists(name):
            archive.write(archive.resolve(name).ino, 1000, rng.randbytes(5000))
    archive.create_snapshot("keep")
    churn(archive, rng, 40)
    archive.delete_snapshot("old")
    archive.sync()


def make_fragmented(path: Path, seed: int = 0, files: int = 240, size: int = 40_000) -> None:
    with Archive.create(path, chunk_size=16384, options=NEVER) as archive:
        fragment(archive, seed, files, size)


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, States]:
    """One fragmented archive (built once; tests copy it) and its states."""
    path = tmp_path_factory.mktemp("vacuum") / "fragmented.cart"
    make_fragmented(path, files=200)
    with Archive.open(path, readonly=True) as archive:
        return path, all_states(archive)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


# ---- what vacuum does -------------------------------------------------------------------------


def test_vacuum_shrinks_and_changes_nothing_else(fragmented: tuple[Path, States],
                                                 tmp_path: Path) -> None:
    path = _copy(fragmented[0], tmp_path / "a.cart")
    expected = fragmented[1]
    size_before = os.path.getsize(path)
    with Archive.open(path, options=NEVER) as archive:
        result = archive.vacuum()
        stats = archive.statistics().allocator
        assert all_states(archive) == expected
        assert_fsck(archive, "right after vacuum")
    size_after = os.path.getsize(path)
    assert result.pages_after == size_after // PAGE_SIZE == stats.total_pages
    assert result.bytes_reclaimed == size_before - size_after > size_before // 3
    # Packed: beyond what is used and held, only the slack the design keeps.
    slack = stats.total_pages - (stats.used_pages + stats.dead_pages + FIRST_DATA_PAGE)
    assert slack <= GROUP_PAGES + COMMIT_SLACK, stats
    with Archive.open(path, options=NEVER) as archive:  # the shorter file reopens
        assert all_states(archive) == expected
        again = archive.vacuum()  # nothing left to do
        assert again.moved_pages == 0 and again.pages_after <= result.pages_after


def test_writes_after_vacuum_never_touch_live_data(fragmented: tuple[Path, States],
                                                   tmp_path: Path) -> None:
    """The seed's trap: relocated pages not marked allocated, then overwritten."""
    path = _copy(fragmented[0], tmp_path / "a.cart")
    rng = random.Random(5)
    with Archive.open(path, options=NEVER) as archive:
        archive.vacuum()
        kept = {name: digest for name, digest in all_states(archive).items()
                if name != "@live"}
        for i in range(120):
            archive.write_file(f"/after/{i % 40}", rng.randbytes(rng.choice((100, 30_000))),
                               parents=True)
            if i % 40 == 39:
                archive.sync()  # frees the replaced copies: they get reused below
        churn(archive, rng, 60)
        archive.create_snapshot("after")
        churn(archive, rng, 40)
        live = full_state(archive)
        assert_fsck(archive, "after writing over a vacuumed archive")
    with Archive.open(path, options=NEVER) as archive:
        states = all_states(archive)
        assert {k: states[k] for k in kept} == kept
        assert full_state(archive) == live
        archive.vacuum()  # and a second vacuum of the new layout
        assert all_states(archive) == states
        assert_fsck(archive, "second vacuum")


def test_vacuum_of_an_encrypted_archive(tmp_path: Path) -> None:
    path = tmp_path / "enc.cart"
    with Archive.create(path, passphrase="pw", kdf=KdfParams.cheap(), chunk_size=16384,
                        options=NEVER) as archive:
        fragment(archive, 1, files=60, size=20_000)
        expected = all_states(archive)
        result = archive.vacuum()
    assert result.pages_after < result.pages_before
    with Archive.open(path, passphrase="pw") as archive:
        assert all_states(archive) == expected
        assert_fsck(archive, "encrypted vacuum")


def test_vacuum_gives_back_the_growth_of_a_small_archive(tmp_path: Path) -> None:
    """Regression: the commit recording the shorter length reserved 16 free pages, found
    none below the new end, and grew the file straight back to its old size."""
    path = tmp_path / "small.cart"
    with Archive.create(path, options=NEVER) as archive:
        archive.write_file("/a", b"x" * 100)
        result = archive.vacuum()
        assert_fsck(archive, "small vacuum")
    assert result.pages_after < 64 < result.pages_before
    assert os.path.getsize(path) == result.pages_after * PAGE_SIZE


def test_truncate_to_never_frees_a_group_below_the_tail() -> None:
    """Regression: truncate_to looked up the free extent *before* the new end instead of the
    tail starting at it, and marked a whole bitmap group of live pages free."""
    alloc = Allocator.fresh(200)
    run = alloc.allocate(4)  # pages 2..5 (best fit at the start)
    single = alloc.allocate(1)  # a 64-page group right after it, one page in use
    alloc.free_now(run, 4)  # a free extent below the group
    end = alloc.highest_used_page() + 1
    alloc.truncate_to(end)
    stats = alloc.statistics()
    assert stats.total_pages == end and stats.used_pages == 1, stats
    taken = {alloc.allocate(1) for _ in range(stats.free_pages)}
    assert single not in taken


def test_trim_last_group_gives_back_its_free_top() -> None:
    alloc = Allocator.fresh(300)
    pages = [alloc.allocate(1) for _ in range(10)]
    for page in pages[3:]:
        alloc.free_now(page, 1)
    alloc.trim_last_group()
    assert alloc.highest_used_page() == pages[2]
    alloc.truncate_to(pages[2] + 1)
    assert alloc.statistics().used_pages == 3
    assert alloc.allocate(1) >= pages[2] + 1  # grows; never hands out a used page


# ---- online: other threads go on between steps ------------------------------------------------


def test_vacuum_runs_in_steps_while_other_threads_write(fragmented: tuple[Path, States],
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """A mount calls the archive from its own thread while a vacuum runs in another: the
    vacuum takes the lock step by step, so writes, reads, deletions and a snapshot land
    between its steps; all of them are kept, every tree reads right, fsck is clean, and
    the file still shrinks. Small steps here, so there are many."""
    monkeypatch.setattr(vacuum_module, "BATCH_PAGES", 48)
    path = _copy(fragmented[0], tmp_path / "a.cart")
    expected = fragmented[1]
    size_before = os.path.getsize(path)
    rng = random.Random(21)
    with Archive.open(path, options=NEVER) as archive:
        live_before = full_state(archive)
        steps: list[int] = []
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["result"] = archive.vacuum(lambda done, total: steps.append(done),
                                                   online=True)
            except BaseException as exc:  # reported by the main thread
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        written: dict[str, bytes] = {}
        ops = 0
        while worker.is_alive():
            name = f"/online/{ops % 30}"
            data = rng.randbytes(rng.choice((50, 20_000, 70_000)))
            archive.write_file(name, data, parents=True)
            written[name] = data
            if ops % 7 == 3 and archive.exists(f"/online/{(ops - 3) % 30}"):
                archive.remove(f"/online/{(ops - 3) % 30}")
                written.pop(f"/online/{(ops - 3) % 30}")
            if ops == 5:
                archive.create_snapshot("during")
                during = full_state(archive.snapshot("during"))
            ops += 1
        worker.join()
        assert "error" not in outcome, outcome
        assert ops > 5, f"only {ops} writes got in while the vacuum ran"
        assert {p: archive.read_file(p) for p in written} == written
        for name, digest in expected.items():
            if name != "@live":
                assert state_digest(full_state(archive.snapshot(name))) == digest, name
        assert full_state(archive.snapshot("during")) == during
        live = full_state(archive)
        assert {p: v for p, v in live.items() if not p.startswith("/online")} == \
            {p: v for p, v in live_before.items() if p != "/"} | {"/": live["/"]}
        assert_fsck(archive, "after an online vacuum")
    assert os.path.getsize(path) < size_before * 0.8
    with Archive.open(path, options=NEVER) as archive:
        assert {p: archive.read_file(p) for p in written} == written
        assert_fsck(archive, "reopened after an online vacuum")


def test_one_vacuum_at_a_time() -> None:
    archive = Archive.create_on(MemoryDevice(), options=NEVER)
    archive.write_file("/a", b"x" * 100_000)
    vacuum_module._running.add(archive)  # as while another thread's vacuum runs
    try:
        with pytest.raises(ArchiveBusy, match="already running"):
            archive.vacuum()
    finally:
        vacuum_module._running.discard(archive)
    archive.vacuum()


# ---- crash safety: SIGKILL ---------------------------------------------------------------------


def _vacuum_child(path: str, out: int) -> None:
    archive = Archive.open(path, options=NEVER)
    os.write(out, b"ready\n")
    archive.vacuum(lambda done, total: os.write(out, f"p {done} {total}\n".encode()))
    os.write(out, b"done\n")
    archive.close()


def _spawn(path: str) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        status = 0
        try:
            os.close(read_end)
            _vacuum_child(path, write_end)
        except BaseException as exc:
            os.write(write_end, f"error {type(exc).__name__}: {exc}\n".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _wait_ready(fd: int) -> bytes:
    data = b""
    while b"ready" not in data and b"error" not in data:
        ready, _, _ = select.select([fd], [], [], 30)
        chunk = os.read(fd, 1024) if ready else b""
        if not chunk:
            break
        data += chunk
    return data


def _wait_progress(fd: int, fraction: float) -> bytes:
    """Read the child's progress reports until it is ``fraction`` of the way through its
    first pass (a kill then lands mid-vacuum whatever the machine's load)."""
    data = b""
    while b"done" not in data and b"error" not in data:
        ready, _, _ = select.select([fd], [], [], 30)
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        data += chunk
        lines = data.rsplit(b"\n", 2)
        last = lines[-2] if len(lines) >= 2 else b""
        if last.startswith(b"p "):
            done, total = map(int, last.split()[1:3])
            if done >= fraction * total:
                break
    return data


def _run_to_end(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 1024):
        data += chunk
    return data


def vacuum_seconds(src: Path, work: Path) -> float:
    """How long a whole vacuum of ``src`` takes (so kills can land all through it)."""
    pid, fd = _spawn(str(_copy(src, work)))
    _wait_ready(fd)
    start = time.monotonic()
    rest = _run_to_end(fd)
    elapsed = time.monotonic() - start
    os.waitpid(pid, 0)
    os.close(fd)
    assert b"done" in rest, rest
    return elapsed


def kill_during_vacuum(src: Path, expected: States, tmp_path: Path, kills: int,
                       seed: int) -> int:
    """Vacuum in a child, SIGKILL it after a random delay; the archive must open, pass
    fsck, hold exactly the states it had, and take writes. Every other run starts from a
    fresh copy; the others vacuum again what the previous kill left behind (which may be
    little). Returns how many kills of a fresh vacuum landed before it finished."""
    rng = random.Random(seed)
    work = tmp_path / "work.cart"
    duration = min(vacuum_seconds(src, work) for _ in range(2))  # the first runs cold
    landed = 0
    for kill in range(kills):
        if kill % 2 == 0:
            _copy(src, work)
        pid, fd = _spawn(str(work))
        try:
            data = _wait_ready(fd)
            if kill % 4 == 0:  # at a random point of its progress: always lands mid-run
                data += _wait_progress(fd, rng.uniform(0.05, 0.95))
            else:  # after a random delay (a resumed vacuum has less left to do)
                time.sleep(rng.uniform(0.0, duration * (0.9 if kill % 2 == 0 else 0.5)))
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            data += _run_to_end(fd)
            os.close(fd)
        assert b"error" not in data, data
        landed += b"done" not in data and kill % 2 == 0
        with Archive.open(work, options=NEVER) as archive:
            report = fsck(archive)
            assert report.ok, f"kill {kill}: " + "\n".join(map(str, report.problems[:5]))
            assert all_states(archive) == expected, f"kill {kill}: content changed"
            if kill % 2 == 1:  # the next run starts from a fresh copy: this one may write
                archive.write_file("/after-kill", b"z" * 50_000)
                assert_fsck(archive, f"kill {kill}: writing after the kill")
    return landed


def test_vacuum_survives_sigkill_at_random_moments(fragmented: tuple[Path, States],
                                                   tmp_path: Path) -> None:
    landed = kill_during_vacuum(fragmented[0], fragmented[1], tmp_path, kills=16, seed=1)
    # the 4 progress-timed kills always land; the 4 delay-timed ones usually do
    assert landed >= 4, f"only {landed} of 8 fresh vacuums were killed while running"


@pytest.mark.soak
def test_vacuum_sigkill_soak(tmp_path: Path) -> None:
    src = tmp_path / "big.cart"
    make_fragmented(src, seed=9, files=1500)
    with Archive.open(src, readonly=True) as archive:
        expected = all_states(archive)
    assert kill_during_vacuum(src, expected, tmp_path, kills=200, seed=2) >= 60


# ---- crash safety: power loss -------------------------------------------------------------------


def small_fragmented_image(seed: int) -> tuple[bytes, States]:
    device = MemoryDevice()
    archive = Archive.create_on(device, chunk_size=16384, options=NEVER)
    fragment(archive, seed, files=40, size=20_000)
    states = all_states(archive)
    archive.close()
    return bytes(device.data), states


def power_fail_vacuums(trials: int, seed: int) -> int:
    """Cut the power at a random device operation of a vacuum; every disk image the
    reboot may find (unsynced writes dropped, applied or torn) must open, pass fsck and
    hold exactly the pre-vacuum states. Returns how many cuts hit before the last commit."""
    image, expected = small_fragmented_image(seed)
    counter = FaultyDevice(image)
    Archive.open_on(counter, options=NEVER).vacuum()
    total_ops = counter.statistics().ops
    rng = random.Random(seed)
    early = 0
    for trial in range(trials):
        cut = rng.randrange(1, total_ops + 1)
        device = FaultyDevice(image, fail_at_op=cut)
        archive = Archive.open_on(device, options=NEVER)
        with pytest.raises(PowerLoss):
            archive.vacuum()
        early += cut < total_ops - 4
        images = [device.crash_image(rng), device.crash_image(rng, torn=False),
                  device.durable_image(), device.current_image()]
        for variant, crashed in enumerate(images):
            label = f"trial {trial} (cut at op {cut} of {total_ops}), image {variant}"
            recovered = Archive.open_on(MemoryDevice(crashed), options=NEVER)
            report = fsck(recovered)
            assert report.ok, f"{label}: " + "\n".join(map(str, report.problems[:5]))
            assert all_states(recovered) == expected, f"{label}: content changed"
            recovered.write_file("/after", b"y" * 30_000)
            recovered.vacuum()
            assert_fsck(recovered, f"{label}: after writing and vacuuming again")
    return early


def test_vacuum_survives_power_loss_at_random_points() -> None:
    assert power_fail_vacuums(trials=15, seed=3) >= 10


@pytest.mark.soak
def test_vacuum_power_loss_soak() -> None:
    for seed in range(20):
        power_fail_vacuums(trials=30, seed=100 + seed)


def test_a_snapshot_view_taken_before_a_vacuum_still_reads_right() -> None:
    """Regression: a SnapshotView kept the root it was opened with; vacuum moved the tree and
    freed those pages, so the view read reused pages (CorruptArchive at best). Views now
    follow the moved root (the FUSE mount holds views of ``.snapshots/NAME`` open)."""
    no_cache = dataclasses.replace(NEVER, cache_bytes=0)  # every read goes to the pages
    archive = Archive.create_on(MemoryDevice(), chunk_size=4096, options=no_cache)
    rng = random.Random(0)
    for i in range(100):
        archive.write_file(f"/junk/{i}", rng.randbytes(20_000), parents=True)
    archive.sync()
    archive.write_file("/keep/a", rng.randbytes(50_000), parents=True)
    archive.remove("/junk", recursive=True)
    archive.create_snapshot("s")
    view = archive.snapshot("s")
    before = full_state(view)
    archive.remove("/keep", recursive=True)
    old_root = view.info.root
    assert archive.vacuum().moved_pages > 0
    assert archive.list_snapshots()[0].root != old_root
    for i in range(100):  # reuse the pages the snapshot's tree moved out of
        archive.write_file(f"/new/{i}", rng.randbytes(20_000), parents=True)
    archive.sync()
    assert full_state(view) == before


def test_allocator_state_never_leaks_its_own_last_page() -> None:
    """Regression (found by the SIGKILL soak): the commit allocates the allocator state's
    pages from an estimate, then encodes. When taking them shrank the encoding (an exact-fit
    extent vanished from the free list) below a page boundary, the state was written into
    fewer pages than allocated and the last one leaked for good. Sweep the encoding's
    length across the 4 KiB boundary, one commit per step; fsck must find nothing leaked."""
    archive = Archive.create_on(MemoryDevice(), chunk_size=16384, options=NEVER)
    blob = random.Random(0).randbytes(6000)  # one 2-page extent per file
    for i in range(4400):
        archive.write_file(f"/f{i}", blob)
    archive.sync()
    for i in range(0, 3700, 2):  # every other extent free: one free run each
        archive.remove(f"/f{i}")
    archive.sync()
    lengths = []
    for i in range(3700, 4400, 2):
        archive.remove(f"/f{i}")
        archive.sync()
        lengths.append(len(archive._alloc.encode()))
    assert min(lengths) < 4000 and max(lengths) > 4200, (min(lengths), max(lengths))
    assert_fsck(archive, "after sweeping the allocator state across a page boundary")


def test_padded_allocator_state_decodes_to_the_same_state() -> None:
    alloc = Allocator.fresh(5000)
    pages = [alloc.allocate(n) for n in (1, 2, 3, 1, 5, 1)]
    alloc.free_now(pages[1], 2)
    plain = alloc.encode()
    padded = alloc.encode(min_length=len(plain) + 25)
    assert len(padded) == len(plain) + 25
    assert Allocator.decode(padded).encode() == plain


def test_vacuum_packs_extents_of_mixed_sizes(tmp_path: Path) -> None:
    """Whole chunks (16 pages) and tails (9 pages) interleaved, every other file deleted:
    placing moves in tree order let the tails take the holes the whole chunks needed, and
    those then moved *up* the file (2306 -> 2260 pages for 1259 in use). Planned placement
    (largest first, never upwards) plus repeated passes must come close to what is used."""
    path = tmp_path / "mixed.cart"
    rng = random.Random(5)
    with Archive.create(path, options=NEVER) as archive:
        for i in range(100):
            archive.write_file(f"/f{i}", rng.randbytes(100_000))
        for i in range(0, 100, 2):
            archive.remove(f"/f{i}")
        archive.sync()
        kept = {f"/f{i}": archive.read_file(f"/f{i}") for i in range(1, 100, 2)}
        used = archive.statistics().allocator.used_pages
        result = archive.vacuum()
        assert result.pages_after <= used * 1.25 + GROUP_PAGES + COMMIT_SLACK, result
        assert_fsck(archive, "after vacuum")
        assert {p: archive.read_file(p) for p in kept} == kept
