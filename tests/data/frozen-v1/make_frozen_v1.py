"""Made once, by cartfs before the v2 signature definition (commit f2f8668), to keep
frozen archives signed the v1 way verifiable: plain.cart and encrypted.cart (passphrase
"frozen v1"), signed with the key whose public half is signer.pub. Not rerun by tests."""

import os
from pathlib import Path

from cartfs.core.archive import Archive, keygen, load_private_key
from cartfs.core.keys import KdfParams

HERE = Path(__file__).parent


def main() -> None:
    keygen(str(HERE / "signer"))
    key = load_private_key(str(HERE / "signer"))
    os.unlink(HERE / "signer")  # only the public half is kept
    for name, kwargs in (("plain", {}), ("encrypted", {"passphrase": "frozen v1",
                                                       "kdf": KdfParams.cheap()})):
        src = HERE / f"{name}-src.cart"
        with Archive.create(src, chunk_size=4096, **kwargs) as archive:  # type: ignore[arg-type]
            archive.write_file("/hello.txt", b"hello, frozen v1\n")
            archive.write_file("/dir/data.bin", bytes(range(256)) * 40, parents=True)
            archive.freeze(HERE / f"{name}.cart", key=key)
        os.unlink(src)


if __name__ == "__main__":
    main()
