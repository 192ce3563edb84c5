"""``cartfs sql ARCHIVE DB_PATH [SQL]``: statements, the interactive shell, and bad input as
one line with a non-zero exit (never a traceback)."""

from __future__ import annotations

import io
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
    with Archive.open(archive) as a:
        a.make_dir("/db")
    code, out, err = run(capsys, str(archive), "/db/app.db",
                         "CREATE TABLE t(n, s); INSERT INTO t VALUES (1, 'one'), (2, NULL),"
                         " (3, x'00ff'); SELECT * FROM t ORDER BY n")
    assert (code, err) == (0, "")
    assert out == "1\tone\n2\t\n3\tX'00FF'\n"
    code, out, _ = run(capsys, str(archive), "/db/app.db", "--header", "--readonly",
                       "SELECT n AS number FROM t WHERE n > 1")
    assert (code, out) == (0, "number\n2\n3\n")


def test_a_database_in_a_missing_directory_is_not_created(
        archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the directory fails as with sqlite3, leaving nothing behind."""
    code, out, err = run(capsys, str(archive), "/nodir/new.db", "SELECT 1")
    assert code == 1 and out == ""
    assert err.startswith("cartfs: ") and "/nodir/new.db" in err, err
    with Archive.open(archive, readonly=True) as a:
        assert a.listdir("/") == []


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


def shell(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          archive: Path, script: str, db: str = "/s.db") -> tuple[int, str, str]:
    """``cartfs sql ARCHIVE DB`` with ``script`` piped in on stdin (in this process)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    return run(capsys, str(archive), db)


def test_script_with_an_error_keeps_going_and_exits_1(
        archive: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = shell(monkeypatch, capsys, archive,
                           "SELECT * FROM nope;\nSELECT 'after';\n")
    assert code == 1                                      # as stock sqlite3
    assert "no such table: nope" in err
    assert "after" in out                                 # without .bail it goes on
    code, out, err = shell(monkeypatch, capsys, archive, "SELECT 'fine';\n")
    assert (code, err) == (0, "") and "fine" in out
    code, _, _ = shell(monkeypatch, capsys, archive, "SELECT 1;\n.exit 3\n")
    assert code == 3


def test_bail_stops_at_the_first_error_without_a_traceback(archive: Path) -> None:
    script = ".bail on\nSELECT 'before';\nSELECT * FROM nope;\nSELECT 'after';\n"
    proc = subprocess.run([PYTHON, "-m", "cartfs.cli.main", "sql", str(archive), "/s.db"],
                          input=script, capture_output=True, text=True, timeout=60,
                          env=subprocess_env(), check=False)
    assert proc.returncode == 1
    assert "before" in proc.stdout and "after" not in proc.stdout
    assert "no such table: nope" in proc.stderr
    assert "Traceback" not in proc.stderr and "shell.py" not in proc.stderr


def test_plain_paths_in_sql_mean_the_archive_given(
        archive: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    script = ("CREATE TABLE t(x); INSERT INTO t VALUES (42);\n"
              "ATTACH '/data/other.db' AS o;\n"
              "CREATE TABLE o.u(y); INSERT INTO o.u VALUES (7);\n"
              "VACUUM INTO '/data/bak.db';\n")
    with Archive.open(archive) as a:
        a.make_dir("/data")
    code, _, err = shell(monkeypatch, capsys, archive, script, "/data/app.db")
    assert (code, err) == (0, "")
    code, out, err = run(capsys, str(archive), "/data/app.db",
                         "ATTACH '/data/other.db' AS o; ATTACH '/data/bak.db' AS b; "
                         "VACUUM INTO '/data/bak2.db'; "
                         "SELECT (SELECT y FROM o.u), (SELECT x FROM b.t)")
    assert (code, out, err) == (0, "7\t42\n", "")
    with Archive.open(archive, readonly=True) as a:
        assert sorted(a.listdir("/data")) == ["app.db", "bak.db", "bak2.db", "other.db"]


def test_a_dot_command_as_the_argument(archive: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    """sqlite3 DB ".tables" works, so cartfs sql ARCHIVE DB ".tables" does."""
    assert run(capsys, str(archive), "/app.db", "CREATE TABLE alpha(x); CREATE TABLE beta(y)"
               )[0] == 0
    code, out, _ = run(capsys, str(archive), "/app.db", ".tables")
    assert code == 0 and out.split() == ["alpha", "beta"]
    code, _, err = run(capsys, str(archive), "/app.db", ".nonsense")
    assert code == 1 and "Unknown command" in err and "Traceback" not in err
