"""SQLite databases stored inside Cartridge archives, through an apsw VFS named ``cartridge``.

    import apsw, cartfs.vfs
    db = cartfs.vfs.connect("/srv/app.cart", "/data/app.db")
    # or, with apsw directly (importing cartfs.vfs registers the VFS):
    db = apsw.Connection("file:/data/app.db?vfs=cartridge&archive=/srv/app.cart",
                         flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
                         | apsw.SQLITE_OPEN_URI)

Modules: :mod:`~cartfs.vfs.vfs` (the VFS: names and opening), :mod:`~cartfs.vfs.file` (the
file methods), :mod:`~cartfs.vfs.nodes` (file bytes and caches), :mod:`~cartfs.vfs.locks`
(SQLite's five lock levels), :mod:`~cartfs.vfs.registry` (shared archives, durability),
:mod:`~cartfs.vfs.shm` (WAL shared memory), :mod:`~cartfs.vfs.naming`,
:mod:`~cartfs.vfs.errors`.
"""

from __future__ import annotations

from .connect import connect, default_archive, uri
from .vfs import VFS_NAME, CartridgeVFS, register

__all__ = ["VFS_NAME", "CartridgeVFS", "connect", "default_archive", "register", "uri"]

register()
