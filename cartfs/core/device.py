"""Page devices: the only code that touches a file descriptor.

The pager talks to a :class:`Device`; production uses :class:`FileDevice` (``os.pread`` /
``os.pwrite`` on the ``.cart`` file, ``fdatasync`` for ordering, ``posix_fallocate`` so that a
full disk shows up when the file grows rather than halfway through a commit) and tests use
:class:`MemoryDevice` or the fault-injecting device in :mod:`cartfs.testing.faults`.

A writable FileDevice holds an exclusive ``flock`` on the file and a read-only one a shared
lock: a second writer would reuse pages a reader still needs, so cartfs refuses it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from typing import Protocol

from .errors import ArchiveBusy, CartError, NoSpace, NotAnArchive, NotFound, ReadOnly


class Device(Protocol):
    """What the pager needs from storage."""

    def pread(self, size: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None: ...

    def sync(self) -> None: ...

    def size(self) -> int: ...

    def resize(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


def _io_error(exc: OSError, path: str) -> CartError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"{path}: no space left on device")
    if exc.errno == errno.EROFS:
        return ReadOnly(f"{path}: read-only file system")
    err = CartError(f"{path}: {os.strerror(exc.errno or errno.EIO)}")
    err.errno = exc.errno or errno.EIO
    return err


class FileDevice:
    """A ``.cart`` file on a real filesystem."""

    def __init__(self, path: str, *, writable: bool, create: bool = False) -> None:
        self.path = path
        self.writable = writable
        flags = os.O_RDWR if writable else os.O_RDONLY
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        try:
            self._fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except FileExistsError:
            raise CartError(f"{path}: already exists") from None
        except IsADirectoryError:
            raise NotAnArchive(f"{path}: is a directory, not an archive") from None
        except OSError as exc:
            raise _io_error(exc, path) from exc
        try:
            self._check_regular()
            self._lock()
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False
        self._size_lock = threading.Lock()

    def _check_regular(self) -> None:
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAnArchive(f"{self.path}: not a regular file")

    def _lock(self) -> None:
        mode = fcntl.LOCK_EX if self.writable else fcntl.LOCK_SH
        try:
            fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveBusy(
                f"{self.path}: archive is in use by another process (is it mounted?)"
            ) from None

    def pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise _io_error(exc, self.path) from exc

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise _io_error(exc, self.path) from exc

    def sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise _io_error(exc, self.path) from exc

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def resize(self, nbytes: int) -> None:
        """Grow with real blocks reserved (so ENOSPC happens here), or shrink."""
        with self._size_lock:
            current = self.size()
            try:
                if nbytes > current:
                    try:
                        os.posix_fallocate(self._fd, current, nbytes - current)
                    except OSError as exc:
                        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                            raise
                        os.ftruncate(self._fd, nbytes)
                elif nbytes < current:
                    os.ftruncate(self._fd, nbytes)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    os.ftruncate(self._fd, current)  # give back what fallocate took
                raise _io_error(exc, self.path) from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class MemoryDevice:
    """A device in a bytearray: fast, for unit tests and the conformance suite."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.syncs = 0

    def pread(self, size: int, offset: int) -> bytes:
        return bytes(self.data[offset:offset + size])

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        end = offset + len(data)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[offset:end] = data

    def sync(self) -> None:
        self.syncs += 1

    def size(self) -> int:
        return len(self.data)

    def resize(self, nbytes: int) -> None:
        if nbytes > len(self.data):
            self.data.extend(bytes(nbytes - len(self.data)))
        else:
            del self.data[nbytes:]

    def close(self) -> None:
        pass
