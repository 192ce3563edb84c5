"""The ``cartfs`` command: discovers its subcommands and runs one.

Every module in :mod:`cartfs.cli` that defines ``register(subparsers)`` contributes
subcommands (each sets ``func`` with ``set_defaults``), so a new command is a new module and
nothing else changes. A :class:`CartError` — a user mistake or a damaged archive — is printed
as one line (``cartfs: ...``) with a non-zero exit; anything else is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import cartfs
from cartfs.cli.common import UsageError, setup_logging
from cartfs.core.errors import CartError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartfs",
        description="Cartridge archives: one crash-safe file holding a whole file tree.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    parser.add_argument("--version", action="version", version=f"cartfs {cartfs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__import__("cartfs.cli", fromlist=["x"]).__path__):
        module = importlib.import_module(f"cartfs.cli.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UsageError as exc:
        print(f"cartfs: {exc}", file=sys.stderr)
        return 2
    except CartError as exc:
        print(f"cartfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cartfs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
