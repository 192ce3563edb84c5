"""``cartfs passwd ARCHIVE``: change the passphrase of an encrypted archive.

Only the superblocks change: the random data key that seals every page is re-wrapped under a
key derived from the new passphrase (both superblock slots are rewritten, so the old
passphrase no longer opens this file). No data is re-encrypted — which is why it is quick,
and also why a copy of the file taken earlier still opens with the old passphrase.

The old passphrase comes the usual three ways (``--key-file``, ``$CARTFS_PASSPHRASE``, a
prompt). The new one comes from ``--new-key-file FILE``, else ``$CARTFS_NEW_PASSPHRASE``,
else a prompt asked twice. The archive's key-derivation function and its cost are kept
unless ``--kdf`` names another (then that function's default cost is used).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from cartfs.cli.common import UsageError, add_archive_argument, open_archive, read_key_file
from cartfs.core.archive import Archive
from cartfs.core.format import KeyHeader
from cartfs.core.keys import KDF_ARGON2ID, KDF_SCRYPT, KdfParams

ORDER = 15
NEW_PASSPHRASE_ENV = "CARTFS_NEW_PASSPHRASE"
KDF_BY_NAME = {"argon2id": KDF_ARGON2ID, "scrypt": KDF_SCRYPT}


def read_new_passphrase(args: argparse.Namespace) -> str | bytes:
    """The new passphrase from --new-key-file, $CARTFS_NEW_PASSPHRASE or a prompt (twice)."""
    if args.new_key_file:
        new = read_key_file(args.new_key_file)
    elif os.environ.get(NEW_PASSPHRASE_ENV):
        new = os.environ[NEW_PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        try:
            new = getpass.getpass("New passphrase: ")
            if getpass.getpass("Repeat new passphrase: ") != new:
                raise UsageError("passphrases do not match; the passphrase is unchanged")
        except EOFError:  # Ctrl-D at the prompt
            raise UsageError("no new passphrase given; the passphrase is unchanged") from None
    else:
        raise UsageError(f"give the new passphrase with --new-key-file FILE or "
                         f"${NEW_PASSPHRASE_ENV}")
    if not new:
        raise UsageError("an empty passphrase would not protect anything")
    return new


def kdf_params(header: KeyHeader, name: str | None) -> KdfParams:
    """The current function and cost (``name`` None), or another function's defaults."""
    if name is not None:
        return KdfParams(kdf=KDF_BY_NAME[name])
    return KdfParams(kdf=header.kdf, memory_kib=header.memory_kib,
                     iterations=header.iterations, lanes=header.lanes,
                     log2_n=header.log2_n, r=header.r, p=header.p)


def change(archive: Archive, new: str | bytes, kdf: str | None) -> None:
    """Re-wrap the data key (checked first: the archive must be encrypted and writable)."""
    sb = archive.superblock
    archive.change_passphrase(new, kdf_params(sb.key_header, kdf))


def cmd_passwd(args: argparse.Namespace) -> int:
    """Open with the old passphrase (a wrong one stops here), then ask for the new one."""
    with open_archive(args) as archive:
        if not archive.superblock.encrypted:
            raise UsageError(f"{args.archive}: archive is not encrypted (encryption is chosen "
                             "at creation: cartfs create --encrypt)")
        new = read_new_passphrase(args)
        change(archive, new, args.kdf)
    print(f"passphrase of {args.archive} changed")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "passwd", help="change the passphrase of an encrypted archive",
        description="Change the passphrase of an encrypted archive. Rewrites only the "
                    "header (the data key is re-wrapped); the old passphrase stops working "
                    "for this file, not for copies made before.")
    add_archive_argument(p)
    p.add_argument("--new-key-file", metavar="FILE",
                   help=f"read the new passphrase from FILE (else ${NEW_PASSPHRASE_ENV}, "
                        "else a prompt)")
    p.add_argument("--kdf", choices=sorted(KDF_BY_NAME),
                   help="switch key derivation function (default: keep the archive's, "
                        "with its cost)")
    p.set_defaults(func=cmd_passwd)
