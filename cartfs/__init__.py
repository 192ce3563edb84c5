"""cartfs: Cartridge archives — one crash-safe file that holds a whole mutable file tree.

The public door is :class:`cartfs.core.archive.Archive`; the FUSE mount, the SQLite VFS and
the CLI are thin adapters over it.
"""

__version__ = "0.1.0"
