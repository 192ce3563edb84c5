"""Made once with format version 1: an archive whose snapshot table, snapshot horizon and
dead list (pages only snapshots still reach) are all in use, so later versions keep reading
them. tests/core/test_golden_snapshots.py checks it; not rerun by tests.

    python tests/data/snapshots-v1/make_snapshots_v1.py
"""

import json
import random
from pathlib import Path
from typing import Any

from cartfs.core.archive import Archive
from cartfs.testing.tree import tree_state

HERE = Path(__file__).parent


def digests(view: Any) -> dict[str, str]:
    """path -> SHA-256 of every regular file of a tree (an Archive or a SnapshotView)."""
    return {path: entry.sha256 for path, entry in tree_state(view).items()
            if entry.type == "file"}


def main() -> None:
    rng = random.Random(1)
    path = HERE / "snapshots.cart"
    with Archive.create(path, chunk_size=16384, title="snapshots v1") as archive:
        archive.write_file("/keep.txt", b"unchanged in every snapshot\n")
        archive.write_file("/data/a.bin", rng.randbytes(100_000), parents=True)
        archive.write_file("/data/b.txt", b"version one\n" * 500)
        archive.sync()
        archive.create_snapshot("first")
        archive.write_file("/data/b.txt", b"version two\n" * 700)
        archive.remove("/data/a.bin")
        archive.write_file("/data/c.bin", rng.randbytes(40_000))
        archive.sync()
        archive.create_snapshot("second")
        archive.move("/data/c.bin", "/moved.bin")
        archive.write(archive.stat("/keep.txt").ino, 0, b"U")
        archive.sync()
        expected = {"live": digests(archive)}
        for name in ("first", "second"):
            expected[name] = digests(archive.snapshot(name))
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
