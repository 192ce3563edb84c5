"""Error paths through real system calls: each must give the errno POSIX names, and the
mount must stay up afterwards. Also rename flags, xattrs, permissions and read-only mounts."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Mounts

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def raises(code: int, fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, f"{fn.__name__}{args}: {info.value}"


def renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_errno_of_each_mistake(mounted: Path) -> None:
    m = mounted
    (m / "dir").mkdir()
    (m / "dir" / "child").write_text("x")
    (m / "file").write_text("data")
    (m / "empty").mkdir()

    raises(errno.ENOENT, os.stat, m / "missing")
    raises(errno.ENOENT, open, m / "missing")
    raises(errno.ENOENT, os.rmdir, m / "missing")
    raises(errno.ENOENT, os.rename, m / "missing", m / "x")
    raises(errno.EEXIST, os.mkdir, m / "dir")
    raises(errno.EEXIST, os.open, m / "file", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    raises(errno.EEXIST, os.link, m / "file", m / "dir")
    raises(errno.EEXIST, os.symlink, "x", m / "file")
    raises(errno.ENOTEMPTY, os.rmdir, m / "dir")
    raises(errno.ENOTEMPTY, os.rename, m / "empty", m / "dir")
    raises(errno.EISDIR, open, m / "dir", "w")
    raises(errno.EISDIR, os.unlink, m / "dir")
    raises(errno.EISDIR, os.rename, m / "file", m / "dir")
    raises(errno.ENOTDIR, os.stat, m / "file" / "x")
    raises(errno.ENOTDIR, os.rmdir, m / "file")
    raises(errno.ENOTDIR, os.rename, m / "empty", m / "file")
    raises(errno.ENOTDIR, os.listdir, m / "file")
    raises(errno.EINVAL, os.rename, m / "dir", m / "dir" / "inside")
    raises(errno.ENAMETOOLONG, open, m / ("n" * 256), "w")
    raises(errno.ENAMETOOLONG, os.mkdir, m / ("n" * 256))
    raises(errno.ENAMETOOLONG, os.stat, m / ("n" * 256))
    (m / ("n" * 255)).write_text("longest name")
    os.symlink("loop2", m / "loop1")
    os.symlink("loop1", m / "loop2")
    raises(errno.ELOOP, open, m / "loop1")
    with tempfile.TemporaryDirectory(dir="/tmp") as outside:
        raises(errno.EXDEV, os.rename, m / "file", Path(outside) / "file")
        raises(errno.EXDEV, os.link, m / "file", Path(outside) / "file")
    raises(errno.ENODATA, os.getxattr, m / "file", "user.missing")
    assert (m / "file").read_text() == "data"  # still up


def test_rename_flags(mounted: Path) -> None:
    a, b = mounted / "a", mounted / "b"
    a.write_text("A")
    b.write_text("B")
    raises(errno.EEXIST, renameat2, a, b, RENAME_NOREPLACE)
    renameat2(a, b, RENAME_EXCHANGE)
    assert (a.read_text(), b.read_text()) == ("B", "A")
    raises(errno.ENOENT, renameat2, a, mounted / "c", RENAME_EXCHANGE)
    renameat2(a, mounted / "c", RENAME_NOREPLACE)
    assert not a.exists()
    assert (mounted / "c").read_text() == "B"
    d = mounted / "d"
    d.mkdir()
    renameat2(d, b, RENAME_EXCHANGE)  # a directory and a file swap places
    assert b.is_dir()
    assert d.read_text() == "A"
    os.rename(mounted / "c", d)  # plain rename replaces a file
    assert d.read_text() == "B"


def test_xattrs(mounted: Path) -> None:
    f = mounted / "f"
    f.write_text("x")
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "user.big", os.urandom(3000))
    assert os.getxattr(f, "user.color") == b"blue"
    assert sorted(os.listxattr(f)) == ["user.big", "user.color"]
    raises(errno.EEXIST, os.setxattr, f, "user.color", b"red", os.XATTR_CREATE)
    raises(errno.ENODATA, os.setxattr, f, "user.none", b"x", os.XATTR_REPLACE)
    os.setxattr(f, "user.color", b"red", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.color") == b"red"
    os.removexattr(f, "user.color")
    raises(errno.ENODATA, os.removexattr, f, "user.color")
    assert os.listxattr(f) == ["user.big"]
    if shutil.which("setfattr"):  # attr package: the tools people use
        os.system(f"setfattr -n user.tool -v hello '{f}'")
        assert os.getxattr(f, "user.tool") == b"hello"


def _as_nobody(fn: Callable[[], None]) -> int:
    """Run ``fn`` in a child as uid/gid 65534; its exit status is the errno (0 = ok)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            fn()
        except OSError as exc:
            code = exc.errno or 1
        except BaseException:
            code = 255
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_permissions_checked_by_kernel(mounts: Mounts) -> None:
    """default_permissions: the kernel checks modes against the caller; new files belong to
    the caller (ctx uid/gid)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as place:  # pytest's tmp is root-only
        os.chmod(place, 0o755)
        mnt = mounts.mount(mounts.archive(), Path(place), options=["allow_other"])
        try:
            _check_permissions(mnt)
        finally:
            mounts.unmount(mnt)


def _check_permissions(mnt: Path) -> None:
    mnt.chmod(0o755)
    (mnt / "private").write_text("secret")
    (mnt / "private").chmod(0o600)
    (mnt / "public").write_text("hello")
    (mnt / "public").chmod(0o644)
    sticky = mnt / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "roots").write_text("mine")

    assert _as_nobody(lambda: Path(mnt / "private").read_text() and None) == errno.EACCES
    assert _as_nobody(lambda: Path(mnt / "public").read_text() and None) == 0
    assert _as_nobody(lambda: Path(mnt / "public").write_text("x") and None) == errno.EACCES
    assert _as_nobody((mnt / "newfile").touch) == errno.EACCES
    assert _as_nobody((sticky / "roots").unlink) in (errno.EPERM, errno.EACCES)
    assert _as_nobody(lambda: (sticky / "theirs").write_text("t") and None) == 0
    st = (sticky / "theirs").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert _as_nobody(lambda: os.chmod(mnt / "public", 0o777)) == errno.EPERM


def test_read_only_mount(mounts: Mounts) -> None:
    archive = mounts.archive()
    with Archive.open(archive) as a:
        a.write_file("/kept.txt", b"kept")
        a.make_dir("/d")
    mnt = mounts.mount(archive, options=["ro"])
    assert (mnt / "kept.txt").read_text() == "kept"
    raises(errno.EROFS, open, mnt / "kept.txt", "w")
    raises(errno.EROFS, open, mnt / "new.txt", "w")
    raises(errno.EROFS, os.mkdir, mnt / "new")
    raises(errno.EROFS, os.unlink, mnt / "kept.txt")
    raises(errno.EROFS, os.rmdir, mnt / "d")
    raises(errno.EROFS, os.chmod, mnt / "kept.txt", 0o600)
    raises(errno.EROFS, os.rename, mnt / "kept.txt", mnt / "moved")
    raises(errno.EROFS, os.setxattr, mnt / "kept.txt", "user.x", b"1")
    raises(errno.EROFS, os.symlink, "x", mnt / "link")
    assert (mnt / "kept.txt").read_text() == "kept"
    # a read-only mount shares the archive with other readers
    with Archive.open(archive, readonly=True) as reader:
        assert reader.read_file("/kept.txt") == b"kept"
    mounts.unmount()
