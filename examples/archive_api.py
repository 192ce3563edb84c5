"""Using a Cartridge archive from Python: the Archive API in one short script.

Run it: ``python examples/archive_api.py [DIR]`` (it works in a temporary directory unless
DIR is given). Everything here is the public API: ``Archive`` and its path helpers.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cartfs.core.archive import Archive
from cartfs.core.fsck import fsck


def build(path: Path) -> None:
    """Create an archive and fill it through the path helpers."""
    with Archive.create(path, compression="zstd", title="Example") as archive:
        archive.make_dir("/docs/notes", parents=True)
        archive.write_file("/docs/readme.txt", b"Hello from cartfs!\n")
        archive.write_file("/docs/notes/todo.txt", b"- try cartfs\n", mode=0o600)
        archive.write_file("/data/numbers.bin", bytes(range(256)) * 4096, parents=True)

        # Extended attributes live on inodes: resolve a path to get one.
        readme = archive.resolve("/docs/readme.txt")
        archive.setxattr(readme.ino, "user.language", b"en")

        # Links: symbolic (stored as written) and hard (one inode, two names).
        archive.make_symlink("docs/readme.txt", "/README")
        archive.make_hardlink("/docs/readme.txt", "/docs/readme-again.txt")

        # Renames are O(1), whole directories included.
        archive.move("/docs/notes", "/notes")

        # Data is committed in groups; sync() makes everything so far durable now.
        # (close(), run by the with-block, commits whatever is left.)
        archive.sync()


def inspect(path: Path) -> None:
    """Reopen read-only: read, walk, stat, check."""
    with Archive.open(path, readonly=True) as archive:
        assert archive.read_file("/README") == b"Hello from cartfs!\n"  # follows the link
        assert archive.lstat("/README").is_symlink
        assert archive.stat("/docs/readme-again.txt").nlink == 2
        assert archive.getxattr(archive.resolve("/docs/readme.txt").ino,
                                "user.language") == b"en"
        assert archive.stat("/notes/todo.txt").mode & 0o777 == 0o600

        for top, dirs, files in archive.walk("/"):
            print(f"{top}: dirs={dirs} files={files}")

        big = archive.stat("/data/numbers.bin")
        print(f"/data/numbers.bin: {big.size} bytes, manifest title "
              f"{archive.manifest()['title']!r}, compression {archive.compression}")

        report = fsck(archive)
        print(f"fsck: {'OK' if report.ok else report.problems}, {report.files} files, "
              f"{report.directories} directories")
        assert report.ok


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(argv[1]) if len(argv) > 1 else Path(scratch)
        path = folder / "example.cart"
        path.unlink(missing_ok=True)
        build(path)
        inspect(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
