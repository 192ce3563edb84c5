"""The mount examples run as they are shown to users."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import force_unmount

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_mount_and_sqlite_example(tmp_path: Path) -> None:
    try:
        proc = subprocess.run([sys.executable, str(EXAMPLES / "mount_and_sqlite.py"),
                               str(tmp_path)], capture_output=True, text=True, timeout=300,
                              check=False)
    finally:
        force_unmount(tmp_path / "mnt")  # never leave a mount behind, even on failure
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10000 orders" in proc.stdout
    assert "integrity ok" in proc.stdout
