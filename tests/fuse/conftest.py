"""Real mounts for the FUSE tests: the real CLI, a real kernel, real tools.

Every test in this folder is marked ``fuse`` and skipped only when the machine cannot mount
(no /dev/fuse or no fusermount3). The :class:`Mounts` fixture mounts with
``python -m cartfs.cli.main mount`` (background, returns when ready), unmounts with
``cartfs umount`` (waits for the final commit) and, whatever happens, leaves nothing
mounted: at teardown it tries ``fusermount3 -u``, then ``-uz``, and kills daemons it started.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck
from cartfs.fuse.mount import find_mount

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "cartfs.cli.main"]
CAN_MOUNT = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.fuse)
            if not CAN_MOUNT:
                item.add_marker(pytest.mark.skip(reason="needs /dev/fuse and fusermount3"))


def run_cli(*args: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cartfs ARGS`` as a real process."""
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"cartfs {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
    return proc


def make_archive(path: Path, **kwargs: object) -> Path:
    Archive.create(path, **kwargs).close()  # type: ignore[arg-type]
    return path


def fsck_ok(path: Path) -> None:
    with Archive.open(path, readonly=True) as archive:
        report = fsck(archive)
    assert report.ok, "\n".join(str(p) for p in report.problems)


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def force_unmount(mountpoint: Path) -> None:
    """Best effort: a clean unmount, else a lazy one."""
    if find_mount(str(mountpoint)) is None:
        return
    if subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True,
                      check=False).returncode != 0:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True,
                       check=False)


class Mounts:
    """Mount and unmount archives for one test; cleans up after it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.mountpoints: list[Path] = []
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.log = tmp / "daemon.log"

    def archive(self, name: str = "test.cart", **kwargs: object) -> Path:
        return make_archive(self.tmp / name, **kwargs)

    def mountpoint(self, name: str = "mnt") -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    def mount(self, archive: Path, mountpoint: Path | None = None,
              options: Sequence[str] = (), *, verbose: bool = False) -> Path:
        """``cartfs mount`` in the background; returns the mount point, ready to use."""
        mnt = mountpoint or self.mountpoint()
        args = ["mount", str(archive), str(mnt), "--log-file", str(self.log)]
        if verbose:
            args.append("-v")
        for opt in options:
            args += ["-o", opt]
        self.mountpoints.append(mnt)
        run_cli(*args)
        assert find_mount(str(mnt)) is not None
        return mnt

    def mount_foreground(self, archive: Path, mountpoint: Path | None = None,
                         options: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """``cartfs mount -f`` as a child process (its pid is the daemon's)."""
        mnt = mountpoint or self.mountpoint()
        argv = [*CLI, "mount", "-f", str(archive), str(mnt)]
        for opt in options:
            argv += ["-o", opt]
        log = open(self.log, "ab")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        log.close()
        self.mountpoints.append(mnt)
        self.daemons.append(proc)
        wait_for(lambda: find_mount(str(mnt)) is not None or proc.poll() is not None,
                 what="foreground mount")
        assert proc.poll() is None, self.log.read_text()
        os.stat(mnt)  # wait for the kernel handshake
        return proc

    def unmount(self, mountpoint: Path | None = None) -> None:
        """``cartfs umount``: returns after the daemon's final commit."""
        run_cli("umount", str(mountpoint or self.mountpoints[-1]))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cleanup(self) -> None:
        for mnt in reversed(self.mountpoints):
            force_unmount(mnt)
        for proc in self.daemons:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()


class Embedded:
    """tests/fuse/embedded_mount.py as a child: the real mount plus a control line."""

    def __init__(self, mounts: Mounts, archive: Path, options: list[str]) -> None:
        self.mnt = mounts.mountpoint()
        self.log = mounts.tmp / "embedded.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "embedded_mount.py"), str(archive),
                 str(self.mnt), *options],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        mounts.mountpoints.append(self.mnt)
        mounts.daemons.append(self.proc)  # type: ignore[arg-type]
        try:
            assert self._line() == "ready", self.log.read_text()
        except BaseException:
            self.close_pipes()
            raise

    def _line(self, timeout: float = 30) -> str:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        assert ready, f"no answer from the embedded daemon:\n{self.log.read_text()}"
        return out.readline().strip()

    def command(self, **command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        assert self._line() == "ok"

    def stop(self) -> str:
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True)
        assert self.proc.wait(timeout=60) == 0
        return self.log.read_text()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    m = Mounts(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()
        log = m.log_text()
        assert "Traceback" not in log, f"the daemon logged a traceback:\n{log}"


@pytest.fixture
def mounted(mounts: Mounts) -> Path:
    """A fresh archive, mounted: the mount point."""
    return mounts.mount(mounts.archive())
