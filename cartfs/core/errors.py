"""The one exception hierarchy of cartfs.

Every failure the core can report is a :class:`CartError`. Each class carries an ``errno``
hint so each adapter translates at exactly one boundary: the FUSE adapter raises
``FUSEError(exc.errno)``, the SQLite VFS maps to an SQLite result code, the CLI prints
``str(exc)`` as one line and exits non-zero. Anything that is *not* a ``CartError`` is a bug
in cartfs and adapters log it with its traceback.
"""

from __future__ import annotations

import errno as _errno


class CartError(Exception):
    """Base of every error cartfs reports on purpose."""

    errno: int = _errno.EIO


# --- namespace errors (what POSIX calls them) -------------------------------------------


class NotFound(CartError):
    """A path component or inode does not exist."""

    errno = _errno.ENOENT


class AlreadyExists(CartError):
    """The name is taken (create, mkdir, link, rename with NOREPLACE)."""

    errno = _errno.EEXIST


class NotADirectory(CartError):
    """A directory was expected."""

    errno = _errno.ENOTDIR


class IsADirectory(CartError):
    """A non-directory was expected."""

    errno = _errno.EISDIR


class DirectoryNotEmpty(CartError):
    """rmdir or rename over a directory that still has entries."""

    errno = _errno.ENOTEMPTY


class InvalidArgument(CartError):
    """The request makes no sense (e.g. moving a directory into itself)."""

    errno = _errno.EINVAL


class ValueOverflow(InvalidArgument):
    """A value the format cannot hold (a time outside 1677..2262, an id above 2**32 - 1):
    refused rather than silently changed."""

    errno = _errno.EOVERFLOW


class NameTooLong(CartError):
    """A file name longer than 255 bytes."""

    errno = _errno.ENAMETOOLONG


class TooManyLinks(CartError):
    """Link count would overflow."""

    errno = _errno.EMLINK


class FileTooLarge(CartError):
    """Offset or size beyond what the format can address."""

    errno = _errno.EFBIG


class NoAttribute(CartError):
    """The extended attribute does not exist."""

    errno = _errno.ENODATA


class RangeError(CartError):
    """A caller buffer is too small (xattr listing) or a value too large."""

    errno = _errno.ERANGE


class NotPermitted(CartError):
    """The operation is never allowed on this kind of object."""

    errno = _errno.EPERM


class PermissionDenied(CartError):
    """An IAM policy (or a permission check) refused the request."""

    errno = _errno.EACCES


class CrossDevice(CartError):
    """The operation would cross from one tree to another (e.g. live tree and a snapshot)."""

    errno = _errno.EXDEV


# --- archive-level errors ---------------------------------------------------------------


class ReadOnly(CartError):
    """The archive (or snapshot, or frozen archive) was opened read-only."""

    errno = _errno.EROFS


class NoSpace(CartError):
    """The disk holding the archive is full; nothing committed was lost."""

    errno = _errno.ENOSPC


class ArchiveBusy(CartError):
    """Another process holds the archive open for writing."""

    errno = _errno.EBUSY


class ArchiveClosed(CartError):
    """The archive was used after close()."""

    errno = _errno.EBADF


class NotAnArchive(CartError):
    """The file is not a Cartridge archive at all (empty, foreign, wrong magic)."""

    errno = _errno.EINVAL


class UnsupportedFormat(CartError):
    """A Cartridge archive written by a newer, incompatible format version."""

    errno = _errno.EINVAL


class WrongPassphrase(CartError):
    """The passphrase or key file does not unlock this encrypted archive."""

    errno = _errno.EACCES


class KeyFileError(CartError):
    """The key file named for an encrypted archive cannot be read."""

    errno = _errno.EACCES


class PassphraseRequired(CartError):
    """The archive is encrypted and no passphrase was given."""

    errno = _errno.EACCES


class CorruptArchive(CartError):
    """Stored bytes fail a check. Says where: page number, what kind of page, and why."""

    errno = _errno.EIO

    def __init__(self, reason: str, *, page: int | None = None, kind: str | None = None) -> None:
        self.reason = reason
        self.page = page
        self.kind = kind
        where = []
        if page is not None:
            where.append(f"page {page}")
        if kind is not None:
            where.append(kind)
        prefix = f"{' '.join(where)}: " if where else ""
        super().__init__(f"corrupt archive: {prefix}{reason}")


class IntegrityError(CorruptArchive):
    """Authenticated decryption failed: the bytes were changed, swapped or replayed."""


class SignatureError(CartError):
    """A frozen archive's signature does not verify (or was made by another key)."""

    errno = _errno.EBADMSG
