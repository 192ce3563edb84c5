"""SQLite databases inside a Cartridge archive, through the ``cartridge`` VFS (no mount).

Run it: ``python examples/vfs_sqlite.py [DIR]`` (a temporary directory unless DIR is given).
It creates an archive, keeps a small database in it, queries it, then reopens it read-only
both through ``cartfs.vfs.connect`` and through plain apsw with a ``file:`` URI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import apsw

import cartfs.vfs  # importing registers the "cartridge" VFS
from cartfs.core.archive import Archive


def create(archive: Path) -> None:
    """A new archive holding /data/shop.db."""
    with Archive.create(archive, title="Shop") as a:
        a.make_dir("/data")
    db = cartfs.vfs.connect(archive, "/data/shop.db")
    db.execute("PRAGMA journal_mode=WAL")  # WAL works too (wal-index in shared memory)
    db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    with db:  # one transaction: committed (durably, in the archive) at the end
        db.executemany("INSERT INTO items(name, price) VALUES (?, ?)",
                       [("apple", 0.5), ("bread", 2.25), ("cheese", 7.0)])
    ((total,),) = db.execute("SELECT round(sum(price), 2) FROM items").fetchall()
    print("total price:", total)
    db.close()  # the last connection closes (and commits) the archive


def reopen(archive: Path) -> None:
    """Read it back read-only, two ways."""
    db = cartfs.vfs.connect(archive, "/data/shop.db", readonly=True)
    for name, price in db.execute("SELECT name, price FROM items ORDER BY price"):
        print(f"  {name:<8}{price:>6.2f}")
    try:
        db.execute("DELETE FROM items")
    except apsw.ReadOnlyError as exc:
        print("read-only, as asked:", exc)
    db.close()

    uri = f"file:/data/shop.db?vfs=cartridge&archive={archive}&mode=ro"
    plain = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    ((count,),) = plain.execute("SELECT count(*) FROM items").fetchall()
    print("rows via a plain apsw URI:", count)
    plain.close()

    with Archive.open(archive, readonly=True) as a:
        print("files in the archive:", a.listdir("/data"))


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    archive = folder / "shop.cart"
    archive.unlink(missing_ok=True)  # the example starts afresh each time it runs
    create(archive)
    reopen(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
