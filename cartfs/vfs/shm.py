"""Shared memory for WAL mode: where the wal-index lives.

SQLite's WAL needs ``xShmMap``/``xShmLock``/``xShmBarrier``/``xShmUnmap`` on the main
database file. apsw (3.54) cannot take those from Python, but it *forwards* them to the base
file when a :class:`apsw.VFSFile` subclass is opened through another VFS ("If the VFS that
you inherit from supports WAL then your VFSFile will also support the xShm methods"). So the
main database handle is opened through SQLite's own unix VFS on a small, always-empty host
file — the *shadow* — only to borrow unix's shared memory: the unix VFS maps
``<shadow>-shm`` and locks it, exactly as it would for a database on disk. All database
bytes still go through our ``xRead``/``xWrite`` into the archive; the shadow is never read
or written.

The wal-index is only an index of the WAL file (which lives in the archive, next to the
database, as ``<db>-wal``); SQLite rebuilds it from the WAL whenever it is missing or stale
(its "dead man switch" lock on the ``-shm`` file tells the first opener to rebuild). Every
connection to one database in this process must map the *same* memory, so the shadow path is
a function of the archive's identity and the database's inode. Other processes never write
the archive while we do (the archive's exclusive flock), so sharing the index across
processes is never needed for correctness.

The path is padded past 512 bytes with ``./`` components. The unix VFS looks up the URI
parameter ``readonly_shm`` on the name it was given, which assumes SQLite's own name layout
(four zero bytes before it); apsw copies our name into a fresh allocation, and allocations
over 512 bytes come from the C allocator, whose chunk header puts zero bytes right there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile

log = logging.getLogger("cartfs.vfs")

SHADOW_PAD_TO = 600


def shadow_dir() -> str | None:
    """A private per-user directory for shadow files (None if none can be made)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"cartfs-vfs-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        log.warning("no WAL shared memory: cannot create %s: %s", path, exc.strerror)
        return None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        log.warning("no WAL shared memory: %s is not a private directory", path)
        return None
    return path


def shadow_path(archive_key: tuple[int, int], archive_uuid: bytes, db_ino: int) -> str | None:
    """The shadow file of one database (see the module docstring)."""
    directory = shadow_dir()
    if directory is None:
        return None
    ident = f"{archive_key[0]}:{archive_key[1]}:{archive_uuid.hex()}:{db_ino}"
    name = hashlib.sha256(ident.encode()).hexdigest()[:32]
    pad = max(0, SHADOW_PAD_TO - len(directory) - len(name) - 1)
    return directory + "/." * (pad // 2 + 1) + "/" + name


def remove_shadow(path: str) -> None:
    """Delete a shadow and its -shm once no handle in this process uses them."""
    for victim in (path, path + "-shm"):
        try:
            os.unlink(victim)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("cannot remove %s: %s", victim, exc.strerror)
