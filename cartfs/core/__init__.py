"""The pure core: format, pager, cache, allocator, B-tree, catalog, codecs and the Archive API.

Nothing here imports pyfuse3, trio, apsw or HTTP code; adapters depend on the core, never the
other way round (tests/test_layers.py enforces it).
"""

from .archive import Archive, OpenOptions, StatFs
from .catalog import Inode
from .errors import CartError
from .namespace import DirEntry

__all__ = ["Archive", "CartError", "DirEntry", "Inode", "OpenOptions", "StatFs"]
