"""Freeze: a compact, read-only, signed copy of an archive; and its verification.

A frozen archive is the same format with the FROZEN and SIGNED feature flags: the live tree
(or one snapshot's tree) relocated page by page into a new file with no free space — less
its orphans (files unlinked while open, which a frozen archive could never delete) — the
manifest and the system records (minus snapshots, which a frozen archive does not carry),
an allocator state saying every page is in use, and a signature record on the last page.
Relocation (relocate.py) copies sealed extents verbatim, so an encrypted archive freezes into
an encrypted one that opens with the same passphrase.

Signature record (one page, never sealed, FORMAT.md §9)::

    magic "CARTSIG1" | algorithm u8 (1 = Ed25519) | hash u8 | 6 reserved (zero)
    public key (32) | content hash (32) | signature over the content hash (64)

Hash 2 (written since the v1 definition was found to leave a byte out): SHA-256 of
``"cartfs-freeze-v2\0"``, the superblock page exactly as written — authentication tag and
checksum included — and every page from 2 up to the signature page. Signing the tag is
possible because the superblock's signature reference carries no checksum of the record
(zero): the record needs none, the signature over a hash that covers the reference proves
it. So every byte that matters is signed and ``verify`` needs no passphrase; the bytes
outside the hash (the other superblock copy, the record, its padding, the file length) must
be exactly what the signed superblock implies.

Hash 1 (frozen archives from before): the superblock with its signature reference and
authentication tag zeroed; the reference carries the record's CRC-32. Still verified, but
it leaves an encrypted archive's authentication tag out — a tag rewritten with a valid
checksum passed — so ``verify`` reports that such an archive is only fully checked with its
passphrase (opening checks the tag).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .alloc import Allocator
from .btree import TREE_CATALOG, TREE_SYSTEM, BTree, TxnClock
from .cache import ARCCache
from .catalog import orphan_range
from .device import Device, FileDevice
from .errors import CartError, CorruptArchive, InvalidArgument, NotAnArchive, SignatureError
from .format import (
    FEATURE_FROZEN,
    FEATURE_SIGNED,
    FIRST_DATA_PAGE,
    PAGE_SIZE,
    BlobRef,
    PageNo,
    Superblock,
    TreeRef,
    TxnId,
    crc32,
    encode_superblock,
)
from .pager import Pager
from .reach import catalog_tree
from .relocate import Relocator
from .snapshots import SNAP_PREFIX, SNAP_SEQ_KEY, get_snapshot

if TYPE_CHECKING:
    from .archive import Archive

Progress = Callable[[int, int], None]
SIG_MAGIC = b"CARTSIG1"
SIG_RECORD = struct.Struct("<8sBB6s32s32s64s")
HASH_DOMAIN_V1 = b"cartfs-freeze-v1\0"
HASH_DOMAIN = b"cartfs-freeze-v2\0"
HASH_V1, HASH_V2 = 1, 2  # the record's hash byte: which definition the content hash follows
ALLOC_OWNER = b"\0allocator"


@dataclass(frozen=True)
class Signature:
    """What the signature page of a frozen archive says."""

    public_key: bytes
    content_hash: bytes
    signature: bytes
    definition: int = HASH_V2


@dataclass(frozen=True)
class FreezeResult:
    pages: int
    public_key: bytes


class _Appender:
    """Pages of the new file, handed out in order (the file is packed: no free space)."""

    def __init__(self, device: FileDevice) -> None:
        self.device = device
        self.next_page: int = FIRST_DATA_PAGE
        self._reserved = 0

    def allocate(self, n: int) -> int:
        start = self.next_page
        self.next_page += n
        if self.next_page > self._reserved:
            self._reserved = self.next_page + 4096
            self.device.resize(self._reserved * PAGE_SIZE)
        return start

    # BTree.write_out and friends call these on an allocator:
    def free(self, *args: object, **kwargs: object) -> None:
        return None


def load_private_key(path: str) -> Ed25519PrivateKey:
    try:
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except OSError as exc:
        raise InvalidArgument(f"{path}: {exc.strerror}") from None
    except ValueError:
        raise InvalidArgument(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    try:
        with open(path, "rb") as fh:
            key = serialization.load_pem_public_key(fh.read())
    except OSError as exc:
        raise InvalidArgument(f"{path}: {exc.strerror}") from None
    except ValueError:
        raise InvalidArgument(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidArgument(f"{path}: not an Ed25519 public key")
    return key


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keygen(path: str) -> None:
    """Write an Ed25519 key pair: ``path`` (private, mode 0600) and ``path.pub``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CartError(f"{path}: already exists") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    with open(path + ".pub", "wb") as fh:
        fh.write(public)


def _hash_pages(device: Device, sb: Superblock, end_page: int,
                progress: Progress | None, definition: int = HASH_V2) -> bytes:
    if definition == HASH_V1:
        canonical = sb.with_(signature=BlobRef(), auth_tag=bytes(32))
        digest = hashlib.sha256(HASH_DOMAIN_V1 + encode_superblock(canonical))
    else:
        digest = hashlib.sha256(HASH_DOMAIN + encode_superblock(sb))
    step = 256
    for page in range(FIRST_DATA_PAGE, end_page, step):
        count = min(step, end_page - page)
        data = device.pread(count * PAGE_SIZE, page * PAGE_SIZE)
        if len(data) != count * PAGE_SIZE:
            raise CorruptArchive("file is truncated", page=page, kind="frozen archive")
        digest.update(data)
        if progress is not None:
            progress(page + count, end_page)
    return digest.digest()


def freeze(archive: Archive, dest: str, *, key: Ed25519PrivateKey | None = None,
           snapshot: str | None = None, progress: Progress | None = None) -> FreezeResult:
    """Write a frozen copy of ``archive`` (its live tree, or ``snapshot``) to ``dest``.

    Without ``key`` a fresh key signs it: the copy is still tamper-evident against accidents,
    but only a key you keep proves who froze it.
    """
    if os.path.lexists(dest):
        raise CartError(f"{dest}: already exists")
    signer = key or Ed25519PrivateKey.generate()
    with archive._lock:
        if archive.writable:
            archive.sync()
        src = archive.superblock
        root = get_snapshot(archive, snapshot).root if snapshot else src.catalog
        out = _Output(dest)
        try:
            pages = _write_frozen(archive, out.device, src, root, signer, progress)
            out.publish()
        finally:
            out.close()
    return FreezeResult(pages, raw_public(signer.public_key()))


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_AT_EMPTY_PATH = 0x1000
TEMP_INFIX = ".freezing-"


class _Output:
    """The file a freeze writes, named ``dest`` only once it is complete and synced.

    Where the file system has ``O_TMPFILE`` (Linux: ext4, xfs, btrfs, tmpfs...) it is an
    unnamed file in dest's folder, given its name by ``linkat`` (through
    ``/proc/self/fd/N``, or ``AT_EMPTY_PATH`` when /proc is missing): a freeze that is
    killed leaves nothing behind, not even a temporary name. Elsewhere it is
    ``DEST.freezing-PID``, removed on failure; one left by a killed freeze is removed by the
    next freeze to the same DEST (when no process of that id runs and none holds its
    lock)."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.tmp_path: str | None = None
        self._fd: int | None = None
        folder = os.path.dirname(os.path.abspath(dest))
        if _TMPFILE:
            try:
                self._fd = os.open(folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o644)
                self.device = FileDevice(f"/proc/self/fd/{self._fd}", writable=True)
                return
            except (OSError, CartError):  # no O_TMPFILE here, or no /proc
                self._close_fd()
        remove_stale_temporaries(dest)
        self.tmp_path = f"{dest}{TEMP_INFIX}{os.getpid()}"
        self.device = FileDevice(self.tmp_path, writable=True, create=True)

    def publish(self) -> None:
        self.device.sync()
        try:
            if self._fd is not None:
                _link_fd(self._fd, self.dest)
            else:
                assert self.tmp_path is not None
                os.link(self.tmp_path, self.dest)
        except FileExistsError:
            raise CartError(f"{self.dest}: already exists") from None
        _sync_folder(self.dest)

    def close(self) -> None:
        self.device.close()
        self._close_fd()
        if self.tmp_path is not None and os.path.lexists(self.tmp_path):
            os.unlink(self.tmp_path)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_TMPFILE = hasattr(os, "O_TMPFILE")


def _link_fd(fd: int, dest: str) -> None:
    """Give the unnamed file ``fd`` the name ``dest`` (linkat; never replaces a file).
    os.link cannot: CPython links the /proc symlink itself rather than its target."""
    libc = ctypes.CDLL(None, use_errno=True)
    target = os.fsencode(dest)
    if libc.linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, target,
                   _AT_SYMLINK_FOLLOW) == 0:
        return
    first = ctypes.get_errno()
    if first != errno.EEXIST and libc.linkat(fd, b"", _AT_FDCWD, target, _AT_EMPTY_PATH) == 0:
        return  # no /proc, but allowed to link by descriptor (CAP_DAC_READ_SEARCH)
    code = first if first == errno.EEXIST else ctypes.get_errno()
    raise OSError(code, os.strerror(code), dest)


def _sync_folder(path: str) -> None:
    """Make the new name durable."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(dest: str) -> list[str]:
    """Remove ``DEST.freezing-PID`` files whose process no longer runs (a freeze killed
    where O_TMPFILE was not available); returns what was removed."""
    folder = os.path.dirname(os.path.abspath(dest))
    prefix = os.path.basename(dest) + TEMP_INFIX
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid_text = name[len(prefix):] if name.startswith(prefix) else ""
        path = os.path.join(folder, name)
        if pid_text.isdigit() and not _process_exists(int(pid_text)) and _unlocked(path):
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def _unlocked(path: str) -> bool:
    """No process holds the file open as an archive (a freeze locks its output; the
    kernel drops the lock of a killed process) — also right across PID namespaces."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, someone else's
        return True
    return True


def _write_frozen(archive: Archive, device: FileDevice, src: Superblock, root: TreeRef,
                  signer: Ed25519PrivateKey, progress: Progress | None) -> int:
    pager = Pager(device, ARCCache(0), archive._pager.sealer)
    out = _Appender(device)
    total_hint = max(archive._alloc.statistics().used_pages, 1)
    copied = 0

    def tick(n: int) -> None:
        nonlocal copied
        copied += n
        if progress is not None:
            progress(min(copied, total_hint), total_hint)

    mover = Relocator(archive._pager, pager, out.allocate, lambda page, n: True, tick,
                      drop=_orphan_filter(archive, root))
    catalog = mover.tree(root, TREE_CATALOG)
    txid = TxnId(src.txid + 1)
    system = BTree(pager, out, TxnClock(txid), TREE_SYSTEM, TreeRef())  # type: ignore[arg-type]
    for k, v in archive._system.items():
        if not k.startswith(SNAP_PREFIX) and k != SNAP_SEQ_KEY:
            system.put(bytes(k), bytes(v))
    system_ref = system.write_out()
    alloc_page = out.next_page
    alloc_pages = pager.blob_pages(64)
    sig_page = alloc_page + alloc_pages
    total = sig_page + 1
    state = Allocator(total)
    allocator = pager.write_blob(PageNo(alloc_page), txid, ALLOC_OWNER, state.encode())
    # The reference carries no checksum of the record (see above): the superblock, its
    # authentication tag included, is final before the hash, and the hash covers it all.
    sb = src.with_(txid=txid, total_pages=total, catalog=catalog, system=system_ref,
                   allocator=allocator, features=src.features | FEATURE_FROZEN | FEATURE_SIGNED,
                   signature=BlobRef(PageNo(sig_page), txid, SIG_RECORD.size, 0))
    device.resize(total * PAGE_SIZE)
    sb = pager.commit_superblock(sb)  # the output has no name yet: order does not matter
    pager.write_superblock_slot(sb, (sb.txid + 1) % 2)
    content = _hash_pages(device, sb, sig_page, None)
    record = SIG_RECORD.pack(SIG_MAGIC, 1, HASH_V2, bytes(6), raw_public(signer.public_key()),
                             content, signer.sign(content))
    device.pwrite(record + bytes(PAGE_SIZE - len(record)), sig_page * PAGE_SIZE)
    if progress is not None:  # the hint counts pages not copied (allocator, other trees)
        progress(total_hint, total_hint)
    return total


def _orphan_filter(archive: Archive, root: TreeRef) -> Callable[[bytes], bool] | None:
    """Which catalog keys of ``root`` to leave out: every record of an orphan (a file
    unlinked while still open, or left so by a crash; a writable open would delete it) and
    the orphan marks themselves. A frozen archive is never opened for writing, so it would
    carry them for ever; it must hold exactly the named tree, packed."""
    start, end = orphan_range()
    tree = catalog_tree(archive._pager, archive._clock, root)
    orphans = {key[len(start):] for key, _ in tree.items(start, end)}
    if not orphans:
        return None
    return lambda key: key[:8] in orphans or start <= key < end


def read_signature(device: Device, sb: Superblock) -> Signature:
    if not sb.frozen or sb.signature.empty:
        raise NotAnArchive("not a frozen archive (freeze one with `cartfs freeze`)")
    ref = sb.signature
    if ref.length != SIG_RECORD.size:
        raise SignatureError("signature record is damaged (wrong length)")
    raw = device.pread(ref.length, ref.page * PAGE_SIZE)
    if len(raw) != ref.length:
        raise SignatureError("signature record is damaged (file too short)")
    magic, algorithm, hash_id, reserved, public, content, signature = SIG_RECORD.unpack(raw)
    if magic != SIG_MAGIC or algorithm != 1 or hash_id not in (HASH_V1, HASH_V2):
        raise SignatureError("unknown signature format")
    if hash_id == HASH_V1 and crc32(raw) != ref.checksum:
        raise SignatureError("signature record is damaged")
    if hash_id == HASH_V2 and (ref.checksum != 0 or reserved != bytes(6)):
        raise SignatureError("signature record or its reference was changed")
    return Signature(public, content, signature, hash_id)


def _check_unhashed_bytes(device: Device, sb: Superblock) -> None:
    """The bytes the content hash leaves out must be exactly what the signed state implies,
    so that changing any byte of the file fails verification: both superblock slots hold
    the same encoding (freeze writes two copies; a damaged copy would otherwise go unnoticed
    while the reader silently used the other), the signature reference names the record on
    the last page, that page is zero after the record, and nothing follows it. (Hash 1
    leaves an encrypted archive's authentication tag out too: see the module notes.)"""
    expected = encode_superblock(sb)
    for slot in (0, 1):
        if device.pread(PAGE_SIZE, slot * PAGE_SIZE) != expected:
            raise SignatureError(f"superblock copy {slot} differs from the signed superblock")
    ref = sb.signature
    if ref.page != sb.total_pages - 1 or ref.birth != sb.txid \
            or ref.length != SIG_RECORD.size:
        raise SignatureError("signature reference does not name the last page")
    if not sb.encrypted and sb.auth_tag != bytes(32):
        raise SignatureError("unencrypted archive carries an authentication tag")
    padding = device.pread(PAGE_SIZE - ref.length, ref.page * PAGE_SIZE + ref.length)
    if padding.count(0) != PAGE_SIZE - ref.length:
        raise SignatureError("bytes after the signature record were changed")
    if device.size() != sb.total_pages * PAGE_SIZE:
        raise SignatureError(f"file is {device.size()} bytes, the signed archive "
                             f"{sb.total_pages * PAGE_SIZE}")


@dataclass(frozen=True)
class VerifyResult:
    public_key: bytes
    content_hash: bytes
    pages: int
    definition: int = HASH_V2  # the content hash's definition (the record's hash byte)
    encrypted: bool = False

    @property
    def complete(self) -> bool:
        """Whether the signature covers every byte: False only for an encrypted archive
        signed under hash 1, whose authentication tag only the passphrase can check."""
        return self.definition != HASH_V1 or not self.encrypted


def verify_signature(path: str, *, expected_key: Ed25519PublicKey | None = None,
                     progress: Progress | None = None) -> VerifyResult:
    """Check a frozen archive's content hash and signature (no passphrase needed). See
    ``VerifyResult.complete`` for the one case (an old encrypted archive) this cannot
    settle alone."""
    device = FileDevice(path, writable=False)
    try:
        probe = Pager(device, ARCCache(0))
        sb = probe.read_superblocks()[0]
        sig = read_signature(device, sb)
        _check_unhashed_bytes(device, sb)
        content = _hash_pages(device, sb, sb.signature.page, progress, sig.definition)
        if content != sig.content_hash:
            raise SignatureError("content does not match the signed hash: the archive changed")
        try:
            Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature, content)
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None
        if expected_key is not None and raw_public(expected_key) != sig.public_key:
            raise SignatureError("archive was signed by a different key")
        return VerifyResult(sig.public_key, content, sb.total_pages, sig.definition,
                            sb.encrypted)
    finally:
        device.close()
