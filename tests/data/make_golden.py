"""Build the golden archives of format version 1 and their manifest.

    python tests/data/make_golden.py            # writes tests/data/golden-v1/*

Run once per format version; the files are committed and must keep opening, byte for byte
unchanged, in every later cartfs (tests/core/test_golden.py). Do not regenerate them for a
newer version: add a new directory (golden-v2/...) beside them instead.

Contents are deterministic (seeded); UUIDs, salts, nonces and timestamps are not, which is
fine — the manifest records what a reader must see, not the bytes.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from cartfs.core.archive import Archive  # noqa: E402
from cartfs.core.format import FORMAT_VERSION  # noqa: E402
from cartfs.core.keys import KdfParams  # noqa: E402
from cartfs.testing.tree import tree_state  # noqa: E402

OUT = HERE / f"golden-v{FORMAT_VERSION}"
PASSPHRASE = "golden-passphrase"
ARCHIVES = {
    "lz4.cart": {"compression": "lz4", "chunk_size": 65536, "passphrase": None},
    "zstd.cart": {"compression": "zstd", "chunk_size": 65536, "passphrase": None},
    "none-4k.cart": {"compression": "none", "chunk_size": 4096, "passphrase": None},
    "encrypted.cart": {"compression": "lz4", "chunk_size": 16384, "passphrase": PASSPHRASE},
}


def words(rng: random.Random, nbytes: int) -> bytes:
    """Text that compresses about 2:1."""
    vocabulary = [rng.randbytes(rng.randrange(2, 7)).hex().encode() for _ in range(2000)]
    out = bytearray()
    while len(out) < nbytes:
        out += rng.choice(vocabulary) + b" "
    return bytes(out[:nbytes])


def populate(archive: Archive, rng: random.Random, large: int) -> None:
    """Every kind of thing an archive holds."""
    archive.write_file("/docs/readme.txt", b"Cartridge golden archive, format v1.\n" * 20,
                       parents=True)
    archive.write_file("/docs/empty", b"")
    archive.write_file("/docs/private.key", rng.randbytes(64), mode=0o600)
    archive.write_file("/docs/r\u00e9sum\u00e9 \u00fcn\u00efcode.txt", "h\u00e9llo\n".encode())
    archive.write_file("/bin/tool", rng.randbytes(3000), mode=0o755, parents=True)
    archive.setattr(archive.resolve("/bin").ino, mode=0o750)
    archive.write_file("/large/words.bin", words(rng, large), parents=True)
    archive.write_file("/a/b/c/d/e/deep.txt", b"deep\n", parents=True)
    sparse = archive.create_file(archive.root_ino, "sparse")
    archive.write(sparse.ino, 0, b"head" * 250)
    archive.write(sparse.ino, 5 << 20, b"tail" * 250)  # a 5 MiB hole in between
    archive.make_dir("/links")
    archive.write_file("/links/hard1", b"one inode, two names\n")
    archive.make_hardlink("/links/hard1", "/links/hard2")
    archive.make_symlink("../docs/readme.txt", "/links/relative")
    archive.make_symlink("/large/words.bin", "/links/absolute")
    archive.make_symlink("nowhere/at/all", "/links/dangling")
    archive.mknod(archive.resolve("/links").ino, "fifo", 0o010644)
    readme = archive.resolve("/docs/readme.txt").ino
    archive.setxattr(readme, "user.author", b"cartfs")
    archive.setxattr(readme, "user.big", rng.randbytes(3000))  # stored as a blob extent
    archive.setxattr(archive.resolve("/docs").ino, "user.dir", b"yes")
    archive.setxattr(archive.resolve("/links/relative", follow=False).ino, "trusted.t", b"")
    archive.write_file("/gone", b"deleted before the last commit")
    archive.sync()
    archive.remove("/gone")  # a commit that frees pages, so the allocator has history


def build(name: str, spec: dict[str, object]) -> dict[str, object]:
    path = OUT / name
    path.unlink(missing_ok=True)
    rng = random.Random(name)
    archive = Archive.create(
        path, compression=str(spec["compression"]), chunk_size=int(str(spec["chunk_size"])),
        passphrase=spec["passphrase"] and str(spec["passphrase"]), kdf=KdfParams.cheap(),
        title=f"golden {name}", slug=name.removesuffix(".cart"), author="cartfs tests",
        description="an archive every later cartfs must open")
    populate(archive, rng, large=100_000)
    archive.sync()
    archive.vacuum()
    # One more commit, so that both superblock slots name the compacted file.
    archive.set_manifest(description="an archive every later cartfs must open.")
    state = tree_state(archive)
    manifest = archive.manifest()
    archive.close()
    return {**spec, "size": path.stat().st_size,
            "manifest": {k: manifest[k] for k in ("slug", "title", "description", "author")},
            "entries": {p: asdict(e) for p, e in sorted(state.items())}}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    result = {"format_version": FORMAT_VERSION, "archives": {}}
    for name, spec in ARCHIVES.items():
        result["archives"][name] = build(name, spec)  # type: ignore[index]
        print(f"{name}: {result['archives'][name]['size']} bytes")  # type: ignore[index]
    (OUT / "manifest.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
