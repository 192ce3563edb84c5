"""Extended attribute values: inline in the catalog leaf when small, in a blob extent when not.

Linux allows values up to 64 KiB; a B-tree entry holds at most ~1 KiB, so larger values are
written to their own extent (sealed with the xattr's catalog key as associated data) and the
leaf keeps a :class:`BlobRef`. Replacing or removing a value frees its old extent
copy-on-write.
"""

from __future__ import annotations

from .alloc import Allocator
from .btree import BTree, TxnClock
from .catalog import (
    INLINE_VALUE_MAX,
    decode_xattr,
    encode_xattr_blob,
    encode_xattr_inline,
    xattr_key,
    xattr_range,
)
from .format import BlobRef, PageNo
from .pager import Pager


class XattrStore:
    """Stores and frees xattr values for one catalog tree."""

    def __init__(self, pager: Pager, tree: BTree, alloc: Allocator | None,
                 clock: TxnClock) -> None:
        self.pager = pager
        self.tree = tree
        self.alloc = alloc
        self.clock = clock

    def value(self, ino: int, name: bytes, stored: bytes | BlobRef) -> bytes:
        if isinstance(stored, bytes):
            return stored
        return self.pager.read_blob(stored, xattr_key(ino, name),
                                    kind=f"xattr {name!r} of inode {ino}")

    def store(self, ino: int, name: bytes, value: bytes) -> None:
        key = xattr_key(ino, name)
        if len(value) + 1 <= INLINE_VALUE_MAX:
            self._free_old(key)
            self.tree.put(key, encode_xattr_inline(value))
            return
        assert self.alloc is not None
        # Take the new pages before letting go of the old value: NoSpace changes nothing.
        page = PageNo(self.alloc.take_runs([self.pager.blob_pages(len(value))])[0])
        self._free_old(key)
        ref = self.pager.write_blob(page, self.clock.txid, key, value)
        self.tree.put(key, encode_xattr_blob(ref))

    def remove(self, ino: int, name: bytes) -> bool:
        key = xattr_key(ino, name)
        self._free_old(key)
        return self.tree.delete(key)

    def drop_all(self, ino: int) -> None:
        start, end = xattr_range(ino)
        for key in [k for k, _ in self.tree.items(start, end)]:
            self._free_old(key)
            self.tree.delete(key)

    def _free_old(self, key: bytes) -> None:
        old = self.tree.get(key)
        if old is None:
            return
        stored = decode_xattr(old)
        if isinstance(stored, BlobRef) and self.alloc is not None:
            self.alloc.free(stored.page, stored.npages, stored.birth, self.clock.txid)
