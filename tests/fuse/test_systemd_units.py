"""The example systemd units in ``systemd/`` pass ``systemd-analyze verify`` together with
the targets they are ordered against (a mount ordered after local-fs.target, which systemd
orders it before, is a cycle only visible in a transaction holding both)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "systemd"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def verify(where: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *units], cwd=where,
                          capture_output=True, text=True, timeout=120, check=False)


def test_units_verify_without_cycles(tmp_path: Path) -> None:
    shutil.copy(UNITS / "mnt-data.mount", tmp_path)
    shutil.copy(UNITS / "cartfs@.service", tmp_path / "cartfs@example.service")
    proc = verify(tmp_path, "./mnt-data.mount", "./cartfs@example.service", "local-fs.target")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "cycle" not in output.lower(), output


def test_verify_finds_the_old_cycle(tmp_path: Path) -> None:
    """The check itself works: the unit as it was (After=local-fs.target) is refused."""
    text = (UNITS / "mnt-data.mount").read_text()
    (tmp_path / "mnt-data.mount").write_text(
        text.replace("[Unit]\n", "[Unit]\nAfter=local-fs.target\n", 1))
    proc = verify(tmp_path, "./mnt-data.mount", "local-fs.target")
    assert proc.returncode != 0
    assert "ordering cycle" in (proc.stdout + proc.stderr)
