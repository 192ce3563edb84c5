"""``MOUNT/.snapshots`` through real system calls and real tools: mkdir takes a snapshot,
the snapshot reads back exactly as the tree was (ls, cat, find, diff -r, stat) while the live
tree keeps changing, every kind of write is refused, rmdir deletes and gives the space back,
hidden vs ``-o snapdir=visible``, dirty pages of the writeback cache are included, and
snapshots outlive a remount."""

from __future__ import annotations

import errno
import json
import mmap
import os
import random
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Mounts, fsck_ok, run_cli, wait_for

SNAPSHOT_TIMEOUT = 86400  # cartfs.fuse.snapdir: snapshot trees never change


def raises(codes: int | tuple[int, ...], fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    wanted = codes if isinstance(codes, tuple) else (codes,)
    assert info.value.errno in wanted, f"{fn.__name__}{args}: {info.value}"


def build_tree(root: Path) -> None:
    """Files of several sizes, nested directories, a symlink, a hard link, a FIFO, an
    xattr and odd modes: enough for stat and diff -r to have something to compare."""
    for d in range(4):
        sub = root / f"dir{d}" / "nested"
        sub.mkdir(parents=True)
        for f in range(15):
            (root / f"dir{d}" / f"file{f}.txt").write_text(f"dir {d} file {f}\n" * (f * 37))
        (sub / "deep.bin").write_bytes(os.urandom(70_000 + d))
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o751)
    os.symlink("dir0/file3.txt", root / "link")
    os.link(root / "script.sh", root / "hardlink")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "big.bin", "user.note", b"kept in the snapshot")
    os.utime(root / "empty", ns=(1_000_000_000_123_456_789, 1_000_000_000_123_456_789))


def signature(root: Path) -> dict[str, tuple[object, ...]]:
    """What stat and the tools see, per relative path (inode numbers as link groups)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[str(path.relative_to(root))] = (
                st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns, target, content)
    return out


def diff_r(a: Path, b: Path) -> None:
    """diff -r, ignoring its complaint that it cannot compare two FIFOs."""
    proc = subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)],
                          capture_output=True, text=True, check=False)
    real = [line for line in proc.stdout.splitlines() if "is a fifo while" not in line]
    assert not real and not proc.stderr, "\n".join(real[-20:]) + proc.stderr


def free_bytes(mnt: Path, host_dir: Path) -> int:
    """Free space inside the archive: the mount's free space less the host's (statfs of a
    cartfs mount counts the host file system's free space as room to grow)."""
    inside, host = os.statvfs(mnt), os.statvfs(host_dir)
    return inside.f_bfree * inside.f_frsize - host.f_bavail * host.f_frsize


def test_snapshot_reads_back_as_taken_while_live_tree_changes(mounts: Mounts,
                                                              tmp_path: Path) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    build_tree(mnt)
    before = signature(mnt)
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(mnt), str(reference)], check=True)
    os.mkdir(mnt / ".snapshots" / "s1")
    snap = mnt / ".snapshots" / "s1"

    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:  # the live tree keeps changing while the snapshot is read
        i = 0
        try:
            while not stop.is_set():
                (mnt / "dir1" / f"file{i % 15}.txt").write_text(f"changed {i}\n" * 100)
                (mnt / f"new{i}").write_bytes(os.urandom(5000))
                if i % 3 == 0 and (mnt / f"dir2/file{i % 15}.txt").exists():
                    (mnt / f"dir2/file{i % 15}.txt").unlink()
                os.chmod(mnt / "script.sh", 0o700 if i % 2 else 0o755)
                i += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(2):
            assert signature(snap) == before
            diff_r(reference, snap)
        listing = subprocess.run(["ls", "-la", str(snap / "dir0")], capture_output=True,
                                 text=True, check=True).stdout
        assert "file14.txt" in listing and "nested" in listing
        found = subprocess.run(["find", str(snap), "-name", "deep.bin"], capture_output=True,
                               text=True, check=True).stdout.split()
        assert len(found) == 4
        cat = subprocess.run(["cat", str(snap / "link")], capture_output=True, check=True)
        assert cat.stdout == (reference / "dir0" / "file3.txt").read_bytes()
    finally:
        stop.set()
        worker.join()
    assert not errors, errors
    assert signature(snap) == before  # and still, after all the changes
    assert signature(mnt) != before

    st_snap = snap.stat()
    assert stat.S_ISDIR(st_snap.st_mode)
    assert (snap / "script.sh").stat().st_ino == (snap / "hardlink").stat().st_ino
    assert (snap / "script.sh").stat().st_ino != (mnt / "script.sh").stat().st_ino
    assert os.getxattr(snap / "big.bin", "user.note") == b"kept in the snapshot"
    assert os.listxattr(snap / "big.bin") == ["user.note"]
    assert (snap / "empty").stat().st_mtime_ns == 1_000_000_000_123_456_789
    dot = (mnt / ".snapshots").stat()
    assert dot.st_mode == stat.S_IFDIR | 0o755 and dot.st_nlink == 3
    assert dot.st_ino == (mnt / ".snapshots").stat().st_ino  # stable
    os.mkdir(mnt / ".snapshots" / "s2")
    assert (mnt / ".snapshots").stat().st_nlink == 4
    assert sorted(os.listdir(mnt / ".snapshots")) == ["s1", "s2"]
    assert (mnt / ".snapshots" / "s2" / "dir1" / "file0.txt").read_text().startswith("changed")
    mounts.unmount()

    # remount: the snapshots are still there, unchanged
    mnt = mounts.mount(archive)
    assert sorted(os.listdir(mnt / ".snapshots")) == ["s1", "s2"]
    assert signature(mnt / ".snapshots" / "s1") == before
    mounts.unmount()
    fsck_ok(archive)


def test_every_write_under_snapshots_is_refused(mounted: Path) -> None:
    m = mounted
    (m / "d").mkdir()
    (m / "d" / "f").write_text("data")
    (m / "d" / "sub").mkdir()
    os.setxattr(m / "d" / "f", "user.x", b"1")
    os.mkdir(m / ".snapshots" / "s")
    s = m / ".snapshots" / "s" / "d"
    f = s / "f"

    erofs: list[tuple[Callable[..., object], tuple[object, ...]]] = [
        (open, (f, "w")), (open, (f, "r+")), (open, (f, "a")),
        (os.open, (f, os.O_WRONLY | os.O_TRUNC)), (open, (s / "new", "w")),
        (os.mkdir, (s / "newdir",)), (os.mkfifo, (s / "fifo",)),
        (os.symlink, ("x", s / "sym")), (os.link, (m / "d" / "f", s / "hard")),
        (os.unlink, (f,)), (os.rmdir, (s / "sub",)), (os.rename, (f, s / "moved")),
        (os.chmod, (f, 0o600)), (os.chown, (f, 1, 1)), (os.utime, (f, (1, 1))),
        (os.truncate, (f, 0)), (os.setxattr, (f, "user.y", b"2")),
        (os.removexattr, (f, "user.x")), (os.chmod, (s, 0o700)),
    ]
    for fn, args in erofs:
        raises(errno.EROFS, fn, *args)
    raises(errno.EXDEV, os.rename, f, m / "stolen")
    raises(errno.EXDEV, os.link, f, m / "stolen")
    raises(errno.EXDEV, os.rename, m / "d" / "f", s / "f2")

    dot = m / ".snapshots"
    raises(errno.EPERM, open, dot / "file", "w")
    raises(errno.EPERM, os.symlink, "x", dot / "sym")
    raises(errno.EPERM, os.mkfifo, dot / "fifo")
    raises(errno.EPERM, os.rename, dot / "s", dot / "t")
    raises(errno.EPERM, os.rename, dot / "s", m / "t")
    raises(errno.EPERM, os.rename, m / "d", dot / "d")
    raises(errno.EPERM, os.chmod, dot, 0o700)
    raises(errno.EPERM, os.setxattr, dot, "user.x", b"1")
    raises((errno.EPERM, errno.EISDIR), os.unlink, dot / "s")
    raises(errno.EPERM, os.rmdir, dot)
    raises(errno.EEXIST, os.mkdir, dot)
    raises(errno.EEXIST, os.open, dot, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    raises(errno.EEXIST, os.symlink, "x", dot)
    raises((errno.EPERM, errno.EEXIST, errno.EISDIR), os.rename, m / "d", dot)
    raises(errno.EEXIST, os.mkdir, dot / "s")
    raises(errno.EINVAL, os.mkdir, dot / "@live")
    raises(errno.EINVAL, os.mkdir, dot / "two\nlines")
    raises(errno.EINVAL, os.mkdir, dot / "esc\x1b[2J")
    raises(errno.ENAMETOOLONG, os.mkdir, dot / ("n" * 256))
    raises(errno.ENOENT, os.rmdir, dot / "missing")
    assert os.listdir(dot) == ["s"]
    assert f.read_text() == "data"  # the mount is still up and the snapshot intact


def test_hidden_unless_snapdir_visible(mounts: Mounts) -> None:
    archive = mounts.archive()
    with Archive.open(archive) as a:
        for i in range(300):  # more than one readdir batch, so the listing resumes
            a.write_file(f"/f{i:03}", b"x")
        a.make_dir("/.snapshots")  # a real entry of that name is shadowed
        a.write_file("/.snapshots/hidden-real-file", b"unreachable through the mount")
        a.create_snapshot("old")
    mnt = mounts.mount(archive)
    names = os.listdir(mnt)
    assert ".snapshots" not in names and len(names) == 300
    assert (mnt / ".snapshots").is_dir()
    assert os.listdir(mnt / ".snapshots") == ["old"]
    found = subprocess.run(["find", str(mnt)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert len(found) == 301 and not any(".snapshots" in line for line in found)
    ls_a = subprocess.run(["ls", "-a", str(mnt)], capture_output=True, text=True,
                          check=True).stdout.split()
    assert ".snapshots" not in ls_a
    mounts.unmount()

    mnt = mounts.mount(archive, options=["snapdir=visible"])
    names = os.listdir(mnt)
    assert names.count(".snapshots") == 1 and len(names) == 301
    with os.scandir(mnt) as entries:
        dot = next(e for e in entries if e.name == ".snapshots")
        assert dot.is_dir() and dot.inode() == (mnt / ".snapshots").stat().st_ino
    assert os.listdir(mnt / ".snapshots") == ["old"]
    assert (mnt / ".snapshots" / "old" / ".snapshots" / "hidden-real-file").exists()
    mounts.unmount()


def test_rmdir_deletes_and_returns_the_space(mounts: Mounts, tmp_path: Path) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    size = 16 << 20
    (mnt / "big.bin").write_bytes(os.urandom(size))
    os.mkdir(mnt / ".snapshots" / "held")
    (mnt / "big.bin").unlink()
    os.sync()
    held = mnt / ".snapshots" / "held"
    fh = open(held / "big.bin", "rb")  # noqa: SIM115 (kept open across the rmdir)
    assert len(fh.read()) == size  # all in the kernel's page cache now
    free_before = free_bytes(mnt, tmp_path)
    os.rmdir(held)
    freed = free_bytes(mnt, tmp_path) - free_before
    assert freed >= size * 0.9, f"only {freed} bytes returned"
    assert not held.exists()
    assert os.listdir(mnt / ".snapshots") == []
    assert (mnt / ".snapshots").stat().st_nlink == 2

    def stale() -> bool:
        try:  # cached pages too: the kernel was told to drop them
            fh.seek(0)
            fh.read(4096)
        except OSError as exc:
            assert exc.errno in (errno.ESTALE, errno.ENOENT), exc
            return True
        return False

    wait_for(stale, timeout=10, what="reads of a deleted snapshot to fail")
    fh.close()
    os.mkdir(held)  # the same name again is a new snapshot, without big.bin
    assert os.listdir(held) == []
    os.rmdir(held)
    mounts.unmount()
    info = json.loads(run_cli("info", str(archive), "--json").stdout)
    assert info["snapshots"] == [] and info["snapshot_pages"] == 0
    fsck_ok(archive)


def test_snapshot_of_files_still_being_written(mounted: Path) -> None:
    """With the writeback cache the kernel holds written data the daemon has not seen:
    mkdir .snapshots/NAME must still capture every write(2) that returned before it, and
    dirty pages of a shared mapping. (syncfs alone starts that write-back but does not wait
    for the daemon to take it: without more, a few MiB went missing here.)"""
    data = os.urandom(20 << 20)
    fd = os.open(mounted / "growing", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for off in range(0, len(data), 4096):
            os.write(fd, data[off:off + 4096])
        os.mkdir(mounted / ".snapshots" / "mid")
        os.write(fd, b"after the snapshot")
        assert (mounted / ".snapshots" / "mid" / "growing").read_bytes() == data
    finally:
        os.close(fd)
    assert (mounted / "growing").stat().st_size == len(data) + 18
    assert (mounted / ".snapshots" / "mid" / "growing").stat().st_size == len(data)

    mapped = mounted / "mapped"
    mapped.write_bytes(b"\0" * (8 << 20))
    mfd = os.open(mapped, os.O_RDWR)
    region = mmap.mmap(mfd, 8 << 20)
    try:
        for off in range(0, 8 << 20, 4096):
            region[off:off + 4] = b"page"
        os.mkdir(mounted / ".snapshots" / "mapped")
        region[0:4] = b"late"
        taken = (mounted / ".snapshots" / "mapped" / "mapped").read_bytes()
        assert all(taken[off:off + 4] == b"page" for off in range(0, 8 << 20, 4096))
    finally:
        region.close()
        os.close(mfd)


def test_cli_snapshots_through_the_mount(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    (mnt / "a.txt").write_text("before")
    out = run_cli("snapshot", "create", str(archive), "by-cli").stdout
    assert "through the mount" in out
    (mnt / "a.txt").write_text("after")
    assert (mnt / ".snapshots" / "by-cli" / "a.txt").read_text() == "before"
    listed = json.loads(run_cli("snapshot", "list", str(archive), "--json").stdout)
    assert [r["name"] for r in listed] == ["by-cli"]
    run_cli("snapshot", "delete", str(archive), "by-cli")
    assert not (mnt / ".snapshots" / "by-cli").exists()
    mounts.unmount()
    with Archive.open(archive, readonly=True) as a:
        assert a.list_snapshots() == []


def test_snapshot_list_through_the_mount_has_every_column(mounts: Mounts) -> None:
    """Regression: through the mount ``snapshot list`` showed names only. The daemon
    gives each snapshot's id, transaction, creation time and held bytes as (unlisted)
    attributes of ``.snapshots/NAME``; the rows equal those of the unmounted archive."""
    archive = mounts.archive()
    mnt = mounts.mount(archive)
    (mnt / "big.bin").write_bytes(os.urandom(3 << 20))
    os.mkdir(mnt / ".snapshots" / "first")
    (mnt / "big.bin").write_bytes(os.urandom(1 << 20))  # first alone holds the old 3 MiB
    run_cli("snapshot", "create", str(archive), "second")  # shares all with the live tree
    snap = mnt / ".snapshots" / "first"
    held = int(os.getxattr(snap, "cartfs.held"))
    assert 3 << 20 <= held < (3 << 20) + (64 << 10)
    assert int(os.getxattr(mnt / ".snapshots" / "second", "cartfs.held")) < 64 << 10
    with open(mnt / "big.bin", "r+b") as fh:  # the figures follow the next commit
        fh.write(os.urandom(1 << 20))
        fh.flush()
        os.fsync(fh.fileno())
    assert int(os.getxattr(mnt / ".snapshots" / "second", "cartfs.held")) >= 1 << 20
    assert int(os.getxattr(snap, "cartfs.txid")) > 0
    created = int(os.getxattr(snap, "cartfs.created"))
    assert abs(created / 1e9 - time.time()) < 300
    assert not any(name.startswith("cartfs.") for name in os.listxattr(snap))
    raises((errno.ENODATA, errno.EOPNOTSUPP), os.getxattr, snap / "", "cartfs.nope")
    mounted_rows = json.loads(run_cli("snapshot", "list", str(archive), "--json").stdout)
    table = run_cli("snapshot", "list", str(archive)).stdout.splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["first", "second"]
    assert "-" not in table[1].split() and "through the mount" in table[-1]
    assert "unavailable" not in table[-1]
    mounts.unmount()
    rows = json.loads(run_cli("snapshot", "list", str(archive), "--json").stdout)
    assert mounted_rows == rows
    assert [r["name"] for r in rows] == ["first", "second"]


def _read_uncached(path: Path) -> bytes:
    """Read a file from the daemon, not from the kernel's page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def test_vacuum_of_a_mounted_archive(mounts: Mounts) -> None:
    """``cartfs vacuum`` on a mounted archive asks the daemon (setxattr cartfs.vacuum on
    the mount root), which vacuums in steps while it keeps serving: files read, written and
    deleted all through the vacuum, and a snapshot read, keep exactly their content; the
    file shrinks; fsck is clean after the unmount."""
    archive = mounts.archive(chunk_size=65536, compression="none")
    rng = random.Random(31)
    kept: dict[str, bytes] = {}
    with Archive.open(archive) as a:
        for i in range(240):
            data = rng.randbytes(rng.choice((30_000, 150_000, 300_000)))
            a.write_file(f"/d{i % 6}/f{i}", data, parents=True)
            if i % 2:
                kept[f"/d{i % 6}/f{i}"] = data
        a.create_snapshot("s")
        a.sync()
        for i in range(0, 240, 2):
            a.remove(f"/d{i % 6}/f{i}")
        a.delete_snapshot("s")
        a.create_snapshot("s")  # holds the kept files only
    size_before = os.path.getsize(archive)
    mnt = mounts.mount(archive)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = {"reads": 0, "writes": 0}
    written: dict[str, bytes] = {}

    def reader() -> None:
        names = sorted(kept)
        rounds = 0
        try:
            while not stop.is_set():
                for name in names[rounds % 7::9]:
                    assert _read_uncached(mnt / name.lstrip("/")) == kept[name], name
                    counts["reads"] += 1  # per file, so a quick vacuum still sees some
                    snap = mnt / ".snapshots" / "s" / name.lstrip("/")
                    assert _read_uncached(snap) == kept[name], f"snapshot {name}"
                rounds += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def writer() -> None:
        wrng = random.Random(32)
        try:
            i = 0
            while not stop.is_set():
                name = f"new/{i % 20}"
                data = wrng.randbytes(wrng.choice((4096, 100_000, 400_000)))
                (mnt / "new").mkdir(exist_ok=True)
                (mnt / name).write_bytes(data)
                written[name] = data
                assert _read_uncached(mnt / name) == data, name
                if i % 5 == 4:
                    (mnt / f"new/{(i - 2) % 20}").unlink(missing_ok=True)
                    written.pop(f"new/{(i - 2) % 20}", None)
                counts["writes"] += 1
                i += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: counts["reads"] and counts["writes"], what="readers and writers")
        before = dict(counts)
        out = run_cli("vacuum", str(archive)).stdout
        during = {k: counts[k] - before[k] for k in counts}
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert "through the mount" in out and "reclaimed" in out, out
    assert during["reads"] > 0 and during["writes"] > 0, during
    assert os.path.getsize(archive) < size_before  # how far depends on the writer's pace
    again = run_cli("vacuum", str(archive)).stdout  # the writer has stopped: pack it all
    assert "through the mount" in again
    live = sum(map(len, kept.values())) + sum(map(len, written.values()))
    assert os.path.getsize(archive) <= live * 1.05 + (4 << 20), (live, size_before)
    for name, data in kept.items():
        assert _read_uncached(mnt / name.lstrip("/")) == data, name
    for name, data in written.items():
        assert _read_uncached(mnt / name) == data, name
    busy_result = json.loads(os.getxattr(mnt, "cartfs.vacuum"))
    assert busy_result["pages_after"] <= busy_result["pages_before"]
    assert "cartfs.vacuum" not in os.listxattr(mnt)
    mounts.unmount()
    fsck_ok(archive)
    with Archive.open(archive, readonly=True) as a:
        assert {n: a.read_file(n) for n in kept} == kept
        assert {n: a.read_file("/" + n) for n in written} == written
        assert {n: a.snapshot("s").read_file(n) for n in kept} == kept


def test_vacuum_of_a_read_only_mount_or_without_xattrs(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive, options=["ro"])
    result = run_cli("vacuum", str(archive), check=False)
    assert result.returncode != 0 and "read-only" in result.stderr, result
    raises(errno.EROFS, os.setxattr, mnt, "cartfs.vacuum", b"1")
    mounts.unmount()
    mnt = mounts.mount(archive, options=["xattr=0"])
    result = run_cli("vacuum", str(archive), check=False)
    assert result.returncode != 0 and "unmount it first" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr
    mounts.unmount()


@pytest.mark.skipif(shutil.which("setfattr") is None, reason="needs the attr tools")
def test_snapshot_xattr_tools_and_read_only_mount(mounts: Mounts) -> None:
    archive = mounts.archive()
    with Archive.open(archive) as a:
        a.write_file("/f", b"x")
        a.create_snapshot("s")
    mnt = mounts.mount(archive, options=["ro"])
    proc = subprocess.run(["setfattr", "-n", "user.a", "-v", "1",
                           str(mnt / ".snapshots" / "s" / "f")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0 and "Read-only" in proc.stderr
    raises(errno.EROFS, os.mkdir, mnt / ".snapshots" / "new")
    assert (mnt / ".snapshots" / "s" / "f").read_bytes() == b"x"
    mounts.unmount()


def _snapshots_under_load(mnt: Path, rounds: int) -> None:
    """Writers stream into files and a shared mapping while snapshots are taken, read and
    deleted: no deadlock (mkdir waits for the kernel's write-back, which needs the daemon
    free to serve it) and every snapshot of a file is one writer's bytes only."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        fd = os.open(mnt / f"w{k}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            block = bytes([65 + k]) * 65536
            while not stop.is_set():
                os.write(fd, block)
                if os.lseek(fd, 0, os.SEEK_CUR) > 32 << 20:
                    os.lseek(fd, 0, os.SEEK_SET)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            os.close(fd)

    def mapper() -> None:
        (mnt / "mapped").write_bytes(b"\0" * (4 << 20))
        fd = os.open(mnt / "mapped", os.O_RDWR)
        region = mmap.mmap(fd, 4 << 20)
        i = 0
        while not stop.is_set():
            region[(i * 4096) % (4 << 20)] = i % 256
            i += 1
        region.close()
        os.close(fd)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=mapper))
    for t in threads:
        t.start()
    try:
        for i in range(rounds):
            os.mkdir(mnt / ".snapshots" / f"s{i}")
            for k in range(2):
                data = (mnt / ".snapshots" / f"s{i}" / f"w{k}").read_bytes()
                assert data == bytes([65 + k]) * len(data)
            if i >= 3:
                os.rmdir(mnt / ".snapshots" / f"s{i - 3}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert sorted(os.listdir(mnt / ".snapshots")) == \
        sorted(f"s{i}" for i in range(max(0, rounds - 3), rounds))


def test_snapshots_while_writers_stream(mounts: Mounts) -> None:
    archive = mounts.archive()
    _snapshots_under_load(mounts.mount(archive), rounds=6)
    mounts.unmount()
    fsck_ok(archive)


@pytest.mark.soak
def test_snapshots_while_writers_stream_soak(mounts: Mounts) -> None:
    archive = mounts.archive()
    _snapshots_under_load(mounts.mount(archive), rounds=300)
    mounts.unmount()
    fsck_ok(archive)
