"""Every ``examples/vfs_*.py`` runs to completion (examples are code users copy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import PYTHON, REPO, subprocess_env

EXAMPLES = sorted((REPO / "examples").glob("vfs_*.py"))


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run([PYTHON, str(script), str(tmp_path)], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "total price: 9.75" in proc.stdout or script.name != "vfs_sqlite.py"
