"""``cartfs sql ARCHIVE DB_PATH [SQL]``: SQLite on a database stored inside an archive.

Without SQL it starts apsw's interactive shell (the ``sqlite3``-like one apsw ships, with
its dot-commands) on the database; with SQL it runs the statement(s) and prints the rows,
tab-separated (``--header`` adds the column names). The database is opened through the
``cartridge`` VFS, so the archive is not mounted and nothing is extracted; it is created if
missing unless ``--readonly`` or ``--no-create``.

As with stock ``sqlite3``, the shell reading a script keeps going after an error and exits
1 at the end if any statement failed; ``.bail on`` stops at the first error (exit 1, the
shell's message, no traceback); ``.exit N`` exits N. A plain absolute path in SQL
(``ATTACH '/other.db' AS o``, ``VACUUM INTO '/bak.db'``) means that path inside ARCHIVE
(:func:`cartfs.vfs.default_archive`).
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import TextIO

import apsw
import apsw.shell

from cartfs.cli.common import (
    add_archive_argument,
    add_command,
    quiet_broken_pipe,
    read_passphrase,
    write_out,
)
from cartfs.core.errors import CartError, PassphraseRequired
from cartfs.vfs import connect, default_archive

ORDER = 70


class SqlError(CartError):
    """SQLite refused the statement or the database (one line, exit 1)."""


def _connect(args: argparse.Namespace) -> apsw.Connection:
    def attempt(passphrase: str | bytes | None) -> apsw.Connection:
        return connect(args.archive, args.db_path, readonly=args.readonly,
                       create=not args.no_create, passphrase=passphrase)

    try:
        try:
            return attempt(None)
        except apsw.Error as exc:
            if not isinstance(exc.__cause__, PassphraseRequired):
                raise
            return attempt(read_passphrase(args))
    except apsw.Error as exc:
        raise SqlError(str(exc)) from None


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    return str(value)


def run_sql(conn: apsw.Connection, sql: str, *, header: bool = False) -> int:
    """Run the statement(s); print every row tab-separated. Returns the row count."""
    count = 0
    cursor = conn.cursor()
    described = None
    for row in cursor.execute(sql):
        if header:
            names = tuple(d[0] for d in cursor.get_description())
            if names != described:
                write_out("\t".join(names) + "\n")
                described = names
        write_out("\t".join(_cell(v) for v in row) + "\n")
        count += 1
    return count


def cmd_sql(args: argparse.Namespace) -> int:
    """Run SQL, or an interactive shell, on a database inside the archive."""
    if args.readonly and args.no_create:
        args.no_create = False  # read-only never creates anyway
    conn = _connect(args)
    try:
        with default_archive(args.archive):
            if args.sql is None:
                return _shell(conn)
            if args.sql.lstrip().startswith("."):  # a dot-command, as sqlite3 DB ".tables"
                return _shell(conn, io.StringIO(args.sql.strip() + "\n"))
            with quiet_broken_pipe():
                try:
                    run_sql(conn, args.sql, header=args.header)
                except apsw.Error as exc:
                    raise SqlError(f"{args.db_path}: {exc}") from None
            return 0
    finally:
        conn.close()


class _Shell(apsw.shell.Shell):
    """apsw's shell, remembering whether any command failed (for the exit status)."""

    failed = False

    def handle_exception(self) -> None:
        if not isinstance(sys.exc_info()[1], SystemExit):
            self.failed = True
        super().handle_exception()  # type: ignore[no-untyped-call]  # apsw.shell is untyped


def _shell(conn: apsw.Connection, stdin: TextIO | None = None) -> int:
    """The interactive shell (or a script on ``stdin``); exit status as stock sqlite3's
    (see the module docstring)."""
    stdin = stdin or sys.stdin
    shell = _Shell(db=conn, stdin=stdin, stdout=sys.stdout, stderr=sys.stderr)
    intro = "cartfs sql: SQLite inside the archive (.help, .quit)" if stdin.isatty() else ""
    try:
        shell.cmdloop(intro=intro)  # type: ignore[no-untyped-call]
    except SystemExit as exc:  # .exit / .quit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        raise
    except Exception:  # .bail on: the shell has already printed the error
        return 1
    return 1 if shell.failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "sql", help="run SQL on a database inside an archive",
                    description="Open DB_PATH (a SQLite database stored inside ARCHIVE) "
                                "through the cartridge VFS, without mounting. With SQL, run "
                                "it and print rows tab-separated; without, start an "
                                "interactive SQLite shell.")
    add_archive_argument(p)
    p.add_argument("db_path", metavar="DB_PATH", help="path of the database in the archive")
    p.add_argument("sql", metavar="SQL", nargs="?", help="statement(s) to run")
    p.add_argument("--readonly", action="store_true", help="open read-only")
    p.add_argument("--no-create", action="store_true",
                   help="fail if the database does not exist yet")
    p.add_argument("--header", action="store_true", help="print column names first")
    p.set_defaults(func=cmd_sql)
