"""Random file-tree changes for crash, power-loss and soak tests.

:func:`random_change` makes one change chosen by a seeded RNG — new files of assorted sizes,
overwrites that cross chunk boundaries or leave sparse gaps, truncates, removals, renames,
hard links, xattrs (inline and blob-sized) — through the public ``Archive`` API only. Names
are drawn from a small set so that collisions, replacements and re-creations happen often.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from cartfs.core.errors import AlreadyExists, NotFound

if TYPE_CHECKING:
    from cartfs.core.archive import Archive

SIZES = (0, 1, 100, 3000, 4096, 9000, 20000)


def regular_files(archive: Archive) -> list[str]:
    """Paths of every regular file, in a stable order."""
    found = []
    for top, _dirs, files in archive.walk("/"):
        for name in files:
            path = top.rstrip("/") + "/" + name
            if archive.file_type(path) == "file":
                found.append(path)
    return sorted(found)


def unnamed_file(archive: Archive, rng: random.Random) -> str:
    """create_unlinked + write, then publish it under a name (link with replace) or leave
    it open and unnamed — an orphan the next writable open must reclaim after a crash."""
    inode = archive.create_unlinked()
    archive.write(inode.ino, 0, rng.randbytes(rng.choice(SIZES)))
    if rng.random() < 0.5:
        name = f"/d{rng.randrange(3)}"
        parent = archive.make_dir(name, exist_ok=True)
        archive.link(inode.ino, parent.ino, f"p{rng.randrange(4)}", replace=True)
        archive.unpin(inode.ino)
        return f"publish {name}"
    return "unnamed file left open"


def random_change(archive: Archive, rng: random.Random, *, unnamed: bool = False) -> str:
    """Apply one random change; returns a short description (for failure messages).

    ``unnamed=True`` also creates files with create_unlinked, some left open (orphans in the
    next commit, reclaimed — with a commit — by the next writable open). It is off by
    default so that an archive written by the workload opens without committing."""
    files = regular_files(archive)
    roll = rng.random()
    try:
        if roll < 0.3 or not files:
            path = f"/d{rng.randrange(3)}/f{rng.randrange(12)}"
            archive.write_file(path, rng.randbytes(rng.choice(SIZES)), parents=True)
            return f"write_file {path}"
        path = rng.choice(files)
        ino = archive.resolve(path).ino
        if roll < 0.5:
            offset = rng.randrange(0, 30000)
            archive.write(ino, offset, rng.randbytes(rng.randrange(1, 9000)))
            return f"write {path} @{offset}"
        if roll < 0.6:
            archive.truncate(ino, rng.randrange(0, 25000))
            return f"truncate {path}"
        if roll < 0.7:
            archive.remove(path)
            return f"remove {path}"
        if roll < 0.8:
            target = f"/d{rng.randrange(3)}/m{rng.randrange(6)}"
            archive.move(path, target)
            return f"move {path} {target}"
        if roll < 0.9:
            archive.setxattr(ino, f"user.k{rng.randrange(3)}",
                             rng.randbytes(rng.choice((5, 900, 5000))))
            return f"setxattr {path}"
        if roll < 0.95 or not unnamed:
            target = f"/d{rng.randrange(3)}/h{rng.randrange(5)}"
            archive.make_hardlink(path, target)
            return f"link {path} {target}"
        return unnamed_file(archive, rng)
    except (AlreadyExists, NotFound):
        return "collision (nothing changed)"
