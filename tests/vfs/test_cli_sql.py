"""``cartfs sql ARCHIVE DB_PATH [SQL]``: statements, the interactive shell, and bad input as
one line with a non-zero exit (never a traceback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cartfs.cli.main import main
from cartfs.core.archive import Archive

from .conftest import PYTHON, subprocess_env


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sql", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_statements_and_rows(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(archive), "/db/app.db",
                         "CREATE TABLE t(n, s); INSERT INTO t VALUES (1, 'one'), (2, NULL),"
                         " (3, x'00ff'); SELECT * FROM t ORDER BY n")
    assert (code, err) == (0, "")
    assert out == "1\tone\n2\t\n3\tX'00FF'\n"
    code, out, _ = run(capsys, str(archive), "/db/app.db", "--header", "--readonly",
                       "SELECT n AS number FROM t WHERE n > 1")
    assert (code, out) == (0, "number\n2\n3\n")


@pytest.mark.parametrize(("args", "message"), [
    (["/nowhere/x.cart", "/a.db", "SELECT 1"], "no such archive"),
    (["{archive}", "/a.db", "SELEC 1"], "syntax error"),
    (["{archive}", "/missing.db", "--no-create", "SELECT 1"], "no such database"),
    (["{archive}", "/notes.txt", "SELECT 1"], "file is not a database"),
    (["{archive}", "/a.db", "--readonly", "CREATE TABLE t(x)"], "no such database"),
])
def test_bad_input_is_one_line(archive: Path, capsys: pytest.CaptureFixture[str],
                               args: list[str], message: str) -> None:
    with Archive.open(archive) as a:
        a.write_file("/notes.txt", b"plain text, not a database\n" * 100)
    code, out, err = run(capsys, *(a.format(archive=archive) for a in args))
    assert code == 1
    assert out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("cartfs: ")


def test_interactive_shell_reads_stdin(archive: Path) -> None:
    script = "CREATE TABLE t(x);\nINSERT INTO t VALUES (41), (1);\nSELECT sum(x) FROM t;\n" \
             ".tables\n"
    proc = subprocess.run([PYTHON, "-m", "cartfs.cli.main", "sql", str(archive), "/s.db"],
                          input=script, capture_output=True, text=True, timeout=60,
                          env=subprocess_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "42" in proc.stdout and "t" in proc.stdout.split()
    assert "Traceback" not in proc.stderr
