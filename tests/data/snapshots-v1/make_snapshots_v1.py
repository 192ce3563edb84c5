"""Made once with format version 1: an archive whose snapshot table, snapshot horizon and
dead list (pages only snapshots still reach) are all in use, so later versions keep reading
them. tests/core/test_golden_snapshots.py checks it; not rerun by tests.

    python tests/data/snapshots-v1/make_snapshots_v1.py
"""

import hashlib
import json
import random
from pathlib import Path

from cartfs.core.archive import Archive

HERE = Path(__file__).parent


def digest_tree(view: object) -> dict[str, str]:
    """path -> sha256 of every regular file of a tree (an Archive or a SnapshotView)."""
    out = {}
    for top, _dirs, files in view.walk("/"):  # type: ignore[attr-defined]
        for name in files:
            path = top.rstrip("/") + "/" + name
            out[path] = hashlib.sha256(view.read_file(path)).hexdigest()  # type: ignore[attr-defined]
    return out


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
        expected = {"live": digest_tree(archive)}
        for name in ("first", "second"):
            expected[name] = digest_tree(archive.snapshot(name))
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
