"""``mount.fuse.cartfs``: the helper mount(8) runs for ``mount -t fuse.cartfs`` and fstab.

mount(8) calls ``/sbin/mount.fuse.cartfs SOURCE MOUNTPOINT [-o OPTIONS] [-n] [-s] [-f]
[-v]``; this translates that into ``cartfs mount`` (same option language, see
:mod:`cartfs.fuse.options`), so an fstab line such as::

    /srv/data.cart  /mnt/data  fuse.cartfs  defaults,allow_other,commit=5,nofail  0  0

mounts in the background and returns when the mount is ready. Install it where mount(8)
looks: ``ln -s "$(command -v mount.fuse.cartfs)" /sbin/mount.fuse.cartfs``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cartfs.cli import main as cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mount.fuse.cartfs",
        description="mount(8) helper for cartfs archives (mount -t fuse.cartfs, fstab).")
    parser.add_argument("source", help="the .cart archive")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        metavar="OPTIONS", help="mount options (see 'cartfs mount --help')")
    parser.add_argument("-n", action="store_true", help="(mount(8): do not write mtab)")
    parser.add_argument("-s", action="store_true", help="(mount(8): sloppy options)")
    parser.add_argument("-f", action="store_true", help="(mount(8): fake) do nothing")
    parser.add_argument("-v", action="store_true", help="log more")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Translate the helper's arguments and run ``cartfs mount``."""
    args = build_parser().parse_args(argv)
    if args.f:
        return 0
    command = ["mount", args.source, args.mountpoint]
    for group in args.options:
        command += ["-o", group]
    if args.v:
        command.insert(0, "-v")
    return cli_main.main(command)


if __name__ == "__main__":
    sys.exit(main())
