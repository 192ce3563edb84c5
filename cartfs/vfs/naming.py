"""How SQLite's file names map to (archive, path inside the archive).

SQLite names every file by a string: the database's "full pathname" (what ``xFullPathname``
returns), and derived from it the rollback journal (``+ "-journal"``), the WAL (``+ "-wal"``)
and super-journals (``+ "-mjXXXXXX9XX"``). ``xAccess`` and ``xDelete`` get only such strings,
never URI parameters, so a name alone must tell which archive it lives in. Two spellings are
accepted:

* **archive-qualified** — the host path of the archive followed by the path inside it:
  ``file:/srv/app.cart/data/app.db?vfs=cartridge``. The archive is the longest leading part
  of the path that is a regular file on the host. This is unambiguous everywhere (also after a
  crash, in another process) and is what :func:`cartfs.vfs.connect` uses.
* **archive parameter** — ``file:/data/app.db?vfs=cartridge&archive=/srv/app.cart``. SQLite's
  full pathname is then just ``/data/app.db``; when the main database opens, the registry
  *binds* that name to the archive, and journal/WAL names derived from it resolve through
  the binding. Because SQLite identifies database files by full pathname, one process cannot
  have ``/data/app.db`` open from two different archives this way at once (the second open is
  refused with a message pointing to the qualified spelling).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat

JOURNAL_SUFFIX = "-journal"
WAL_SUFFIX = "-wal"
_DERIVED = re.compile(r"(-journal|-wal|-shm|-mj[0-9A-F]{6}9[0-9A-F]{2})$")


def normalize(path: str) -> str:
    """An absolute, normalized POSIX path ('' and '.' become '/')."""
    norm = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if norm == "//" else norm


@functools.lru_cache(maxsize=4096)
def derived_base(name: str) -> tuple[str, str] | None:
    """Split a journal/WAL/super-journal name into (database name, suffix)."""
    match = _DERIVED.search(name)
    if match is None or match.start() == 0:
        return None
    return name[:match.start()], match.group(1)


def split_qualified(path: str) -> tuple[str, str] | None:
    """``/srv/app.cart/data/app.db`` -> (``/srv/app.cart``, ``/data/app.db``) when
    ``/srv/app.cart`` is a regular file on the host; None when no leading part is one."""
    if not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts)):
        prefix = "/" + "/".join(parts[:i])
        try:
            mode = os.stat(prefix).st_mode
        except OSError:
            return None
        if stat.S_ISREG(mode):
            return prefix, "/" + "/".join(parts[i:])
        if not stat.S_ISDIR(mode):
            return None
    return None


def full_pathname(name: str) -> str:
    """What ``xFullPathname`` returns: qualified names made absolute against the working
    directory; anything else is a path inside an archive, made absolute against its root."""
    if name.startswith("/"):
        return normalize(name)
    host = os.path.abspath(name)
    if split_qualified(host) is not None:
        return host
    return normalize(name)
