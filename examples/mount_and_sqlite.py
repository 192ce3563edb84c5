"""Create an archive, mount it, use stock sqlite3 on it, unmount, and read the database back.

Run it:  python examples/mount_and_sqlite.py [WORKDIR]

Needs FUSE (/dev/fuse, fusermount3). The database lives inside the archive: after the
unmount, the one ``demo.cart`` file holds it, and a second mount finds it intact.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from cartfs.core.archive import Archive

CARTFS = [sys.executable, "-m", "cartfs.cli.main"]


def cartfs(*args: str) -> None:
    """Run a cartfs command; it prints one line and fails on a mistake."""
    subprocess.run([*CARTFS, *args], check=True)


def main(workdir: Path) -> int:
    archive = workdir / "demo.cart"
    mountpoint = workdir / "mnt"
    mountpoint.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)  # the example starts afresh each time it runs
    Archive.create(archive, compression="zstd", title="mount + sqlite demo").close()

    cartfs("mount", str(archive), str(mountpoint))  # returns once the mount is ready
    try:
        db = sqlite3.connect(mountpoint / "shop.db")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INTEGER)")
        with db:
            db.executemany("INSERT INTO orders(item, qty) VALUES (?, ?)",
                           [(f"item-{i}", i % 7) for i in range(10_000)])
        # back to a rollback journal, so the read-only mount below can open it (WAL
        # readers need to create the -shm file)
        db.execute("PRAGMA journal_mode = DELETE")
        db.close()
    finally:
        cartfs("umount", str(mountpoint))  # flushes, commits, waits for the daemon

    with Archive.open(archive, readonly=True) as a:
        size = a.stat("/shop.db").size
    print(f"{archive.name}: shop.db is {size} bytes inside the archive")

    cartfs("mount", "-o", "ro", str(archive), str(mountpoint))
    try:
        db = sqlite3.connect(f"file:{mountpoint / 'shop.db'}?mode=ro", uri=True)
        total = db.execute("SELECT count(*), sum(qty) FROM orders").fetchone()
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
    finally:
        cartfs("umount", str(mountpoint))
    print(f"after remount: {total[0]} orders, {total[1]} items, integrity {check}")
    return 0 if total == (10_000, sum(i % 7 for i in range(10_000))) and check == "ok" else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
