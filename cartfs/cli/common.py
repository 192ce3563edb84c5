"""What every cartfs command shares: opening archives (with passphrases), human sizes,
progress bars, logging, and turning a CartError into one clear line.

Passphrases for encrypted archives come from, in order: ``--key-file FILE`` (first line,
without the newline), the environment variable ``CARTFS_PASSPHRASE`` (for scripts and
services), or an interactive prompt when stdin is a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
import time
from typing import TextIO

from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.errors import CartError, PassphraseRequired

log = logging.getLogger("cartfs")

PASSPHRASE_ENV = "CARTFS_PASSPHRASE"


class UsageError(CartError):
    """The command line asks for something impossible (reported as one line, exit 2)."""


def human_size(nbytes: float) -> str:
    """1536 -> '1.5 KiB'; exact bytes below 1 KiB."""
    if nbytes < 1024:
        return f"{int(nbytes)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        nbytes /= 1024
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}"
    raise AssertionError("unreachable")


def add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-file", metavar="FILE",
                        help="read the passphrase of an encrypted archive from FILE "
                             f"(else ${PASSPHRASE_ENV}, else a prompt)")


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False,
                    required: bool = True) -> str | None:
    """The passphrase from --key-file, $CARTFS_PASSPHRASE or a terminal prompt."""
    key_file = getattr(args, "key_file", None)
    if key_file:
        try:
            with open(key_file, encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"{key_file}: {exc.strerror}") from None
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        if required:
            raise PassphraseRequired(
                f"archive is encrypted: give --key-file FILE or set ${PASSPHRASE_ENV}")
        return None
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise UsageError("passphrases do not match")
    return first


def open_archive(args: argparse.Namespace, *, readonly: bool = False,
                 options: OpenOptions | None = None, path: str | None = None) -> Archive:
    """Open ARCHIVE from the command line, asking for a passphrase only if it is encrypted."""
    target = path or args.archive
    try:
        return Archive.open(target, readonly=readonly, options=options)
    except PassphraseRequired:
        passphrase = read_passphrase(args)
        return Archive.open(target, readonly=readonly, passphrase=passphrase,
                            options=options)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, at most 10 Hz)."""

    def __init__(self, label: str, total: int, *, unit: str = "bytes",
                 stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or done >= self.total):
            self._last = now
            self._draw(now)

    def advance(self, n: int) -> None:
        self.update(self.done + n)

    def _fmt(self, value: int) -> str:
        return human_size(value) if self.unit == "bytes" else f"{value} {self.unit}"

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = self.done / max(now - self._start, 1e-6)
        speed = f" {human_size(rate)}/s" if self.unit == "bytes" else ""
        self.stream.write(f"\r{self.label} [{bar}] {frac * 100:5.1f}% "
                          f"{self._fmt(self.done)}/{self._fmt(self.total)}{speed}  ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
