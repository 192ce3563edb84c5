"""Mount options take effect on a real mount: uid=/gid= (a view: the archive keeps the real
owners), cache= and commit= (what the archive was opened with, as the daemon logs it), and
compress=zstd (the codec of files created through the mount)."""

from __future__ import annotations

import os
from pathlib import Path

from cartfs.core.archive import Archive
from cartfs.core.format import CODEC_BY_NAME, CODEC_INHERIT

from .conftest import Mounts, fsck_ok


def test_uid_gid_show_every_file_as_owned_by_them(mounts: Mounts) -> None:
    archive = mounts.archive()
    with Archive.open(archive) as a:
        a.write_file("/before.txt", b"made before")
    mnt = mounts.mount(archive, options=["uid=1234,gid=4321"])
    (mnt / "dir").mkdir()
    (mnt / "dir" / "new.txt").write_text("made through the mount")
    os.symlink("new.txt", mnt / "dir" / "link")
    for path in (mnt, mnt / "before.txt", mnt / "dir", mnt / "dir" / "new.txt"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (1234, 4321), path
    st = (mnt / "dir" / "link").lstat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    mounts.unmount()
    with Archive.open(archive, readonly=True) as a:  # a view only: the owners are real
        for path in ("/before.txt", "/dir/new.txt"):
            assert (a.stat(path).uid, a.stat(path).gid) == (os.getuid(), os.getgid())
    mnt = mounts.mount(archive)
    st = (mnt / "dir" / "new.txt").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    mounts.unmount()


def test_cache_and_commit_reach_the_archive(mounts: Mounts) -> None:
    archive = mounts.archive()
    mnt = mounts.mount(archive, options=["cache=3M", "commit=2.5"], verbose=True)
    (mnt / "f").write_bytes(b"x")
    mounts.unmount()
    assert f"mounted {archive} on {mnt} (cache 3 MiB, commit every 2.5 s, new files lz4)" \
        in mounts.log_text(), mounts.log_text()


def _codec(archive: Path, path: str) -> int:
    with Archive.open(archive, readonly=True) as a:
        return a.stat(path).codec


def test_compress_zstd_applies_to_new_files(mounts: Mounts) -> None:
    archive = mounts.archive(compression="lz4")
    with Archive.open(archive) as a:
        a.write_file("/old.txt", b"written before the mount\n" * 1000)
    mnt = mounts.mount(archive, options=["compress=zstd"], verbose=True)
    text = b"".join(b"line %d of a compressible file\n" % i for i in range(100_000))
    (mnt / "new.txt").write_bytes(text)
    (mnt / "old.txt").write_bytes(b"rewritten\n" * 1000)  # an old file keeps its codec
    (mnt / "sub").mkdir()
    (mnt / "sub" / "deep.txt").write_bytes(text)
    mounts.unmount()
    fsck_ok(archive)
    assert "new files zstd" in mounts.log_text()
    assert _codec(archive, "/new.txt") == CODEC_BY_NAME["zstd"]
    assert _codec(archive, "/sub/deep.txt") == CODEC_BY_NAME["zstd"]
    assert _codec(archive, "/old.txt") == CODEC_INHERIT
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/new.txt") == text
        assert a.compression == "lz4"  # the archive's default is unchanged
    mnt = mounts.mount(archive)  # without the option, new files take the default again
    (mnt / "later.txt").write_bytes(text)
    mounts.unmount()
    assert _codec(archive, "/later.txt") == CODEC_INHERIT
