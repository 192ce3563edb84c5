"""What every cartfs command shares: opening archives (with passphrases), human sizes,
progress bars, logging, safe interruption, and turning a CartError into one clear line.

Passphrases for encrypted archives come from, in order: ``--key-file FILE`` (first line,
without the newline), the environment variable ``CARTFS_PASSPHRASE`` (for scripts and
services), or an interactive prompt when stdin is a terminal.

Interrupting a command that writes: Ctrl-C (SIGINT) or SIGTERM raised at an arbitrary
bytecode could land in the middle of an in-memory B-tree update, and the ``close()`` that
follows would commit that half-done change. :class:`DeferredInterrupts` therefore only
records the signal; the command calls ``check()`` between whole operations and stops there.
A second signal exits at once without committing — as safe as ``kill -9``, because the
archive on disk is copy-on-write and the last commit stays intact.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from cartfs.core import keys
from cartfs.core.archive import Archive, OpenOptions
from cartfs.core.errors import CartError, KeyFileError, PassphraseRequired

log = logging.getLogger("cartfs")

PASSPHRASE_ENV = "CARTFS_PASSPHRASE"
# Streaming reads (cat, get) touch each chunk once: a small cache does as well as a big one.
STREAMING = OpenOptions(cache_bytes=32 * 1024 * 1024)
EXIT_INTERRUPTED = 130


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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64K', '1M', '1.5GiB', '4096' -> bytes (powers of 1024), for size options."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64K, 1M)")
    scale = 1024 ** " kmgtp".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * scale)


class IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser where options may sit between positionals, as users type
    them: ``cartfs ls a.cart -l /docs`` (plain argparse would take ``-l`` as the end of
    the optional PATH list and reject ``/docs``)."""

    _inner = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        """Parse with options and positionals in any order."""
        if self._inner:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                **kwargs: Any) -> argparse.ArgumentParser:
    """``sub.add_parser`` giving an :class:`IntermixedParser`."""
    previous = sub._parser_class
    sub._parser_class = IntermixedParser
    try:
        return sub.add_parser(name, **kwargs)
    finally:
        sub._parser_class = previous


def add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    """--key-file, for every command that may open an encrypted archive."""
    parser.add_argument("--key-file", metavar="FILE",
                        help="read the passphrase of an encrypted archive from FILE "
                             f"(else ${PASSPHRASE_ENV}, else a prompt)")


def add_archive_argument(parser: argparse.ArgumentParser) -> None:
    """The ARCHIVE positional that comes first on every command line, plus -v and
    --key-file, so each subcommand reads the same."""
    parser.add_argument("archive", metavar="ARCHIVE", help="the .cart archive file")
    add_verbose_option(parser)
    add_passphrase_options(parser)


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """-v after the subcommand as well as before it (``cartfs put -v ...``)."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log more (-v info, -vv debug)")


def read_key_file(path: str) -> str | bytes:
    """The passphrase in a key file (core.keys.read_key_file); unreadable is a usage error."""
    try:
        return keys.read_key_file(path)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False,
                    required: bool = True) -> str | bytes | None:
    """The passphrase from --key-file, $CARTFS_PASSPHRASE or a terminal prompt."""
    key_file = getattr(args, "key_file", None)
    if key_file:
        return read_key_file(key_file)
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        if required:
            raise PassphraseRequired(
                f"archive is encrypted: give --key-file FILE or set ${PASSPHRASE_ENV}")
        return None
    try:
        first = getpass.getpass("Passphrase: ")
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise UsageError("passphrases do not match")
    except EOFError:  # Ctrl-D at the prompt
        raise UsageError("no passphrase given") from None
    return first


def _with_path(exc: CartError, path: str) -> CartError:
    """The same error, its message starting with the archive's file name (once)."""
    message = str(exc)
    if message.startswith(path):
        return exc
    wrapped = CartError(f"{path}: {message}")
    wrapped.errno = exc.errno
    return wrapped


def open_archive(args: argparse.Namespace, *, readonly: bool = False,
                 options: OpenOptions | None = None, path: str | None = None) -> Archive:
    """Open ARCHIVE from the command line, asking for a passphrase only if it is encrypted.
    Errors name the file: ``photo.png: not a Cartridge archive (bad magic)``."""
    target = path or args.archive
    try:
        try:
            return Archive.open(target, readonly=readonly, options=options)
        except PassphraseRequired:
            passphrase = read_passphrase(args)
            return Archive.open(target, readonly=readonly, passphrase=passphrase,
                                options=options)
    except UsageError:
        raise
    except CartError as exc:
        raise _with_path(exc, target) from None


def core_reason(path: str | bytes, exc: CartError) -> str:
    """The core's message without a leading ``name: `` that repeats part of ``path``."""
    message = str(exc)
    for part in reversed(os.fsdecode(path).split("/")):
        if part and message.startswith(f"{part}: "):
            return message[len(part) + 2:]
    return message


def path_error(path: str | bytes, exc: CartError) -> CartError:
    """A core error about ``path`` as one line that names the whole path: the core says
    ``b: no such file or directory`` about a component; the user typed ``/a/b/c``."""
    wrapped = CartError(f"{os.fsdecode(path)}: {core_reason(path, exc)}")
    wrapped.errno = exc.errno
    return wrapped


def os_error(exc: OSError, path: str | bytes | None = None) -> CartError:
    """A local-disk OSError as a one-line CartError (``out/a: Permission denied``)."""
    name = path if path is not None else exc.filename
    reason = exc.strerror or str(exc)
    wrapped = CartError(f"{os.fsdecode(name)}: {reason}" if name is not None else reason)
    wrapped.errno = exc.errno or 5
    return wrapped


# ---- output ---------------------------------------------------------------------------------


def write_out(text: str) -> None:
    """Write to stdout; names with undecodable bytes go out as the original bytes (as
    ``ls`` does into a pipe) instead of failing."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8", "surrogateescape"))


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """``cartfs cat a.cart /big | head``: when the reader goes away, stop quietly; when
    stdout fails otherwise (a full disk), say so in one line.

    Python would otherwise complain again when it flushes stdout at exit, so stdout is
    pointed at /dev/null before the error goes on to main (BrokenPipeError: exit 141)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise
    except OSError as exc:  # e.g. stdout is a file on a full disk: one line, not a traceback
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise os_error(exc, "standard output") from None


class DeferredInterrupts:
    """SIGINT/SIGTERM become a flag checked between whole operations (see the module
    docstring); a second signal exits immediately without committing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> DeferredInterrupts:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            sys.stderr.write("\ncartfs: interrupted again: stopping now; the archive keeps "
                             "its last commit\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt here, between operations, if a signal arrived."""
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def writing(args: argparse.Namespace, *, options: OpenOptions | None = None
            ) -> Iterator[tuple[Archive, DeferredInterrupts]]:
    """Open ARCHIVE for a command that changes it. Opening (and a passphrase prompt) can be
    interrupted as usual; from then until the final commit is written, SIGINT/SIGTERM only
    take effect where the command calls ``stop.check()`` (see the module docstring)."""
    archive = open_archive(args, options=options)
    with DeferredInterrupts() as stop, archive:
        yield archive, stop


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
        self._drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        """Set progress (and the total, once known); redraws at most 10 times a second."""
        self.done = done
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or done >= self.total):
            self._last = now
            self._draw(now)

    def advance(self, n: int) -> None:
        """Add ``n`` units done."""
        self.update(self.done + n)

    def note(self, text: str) -> None:
        """Print a line (a warning) without mangling the bar; the bar redraws below it."""
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last = 0.0

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
        self._drawn = True

    def close(self) -> None:
        """Draw the final state and end the line, so later output starts clean."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_logging(verbosity: int) -> None:
    """-v: what cartfs does (info); -vv: how (debug). Quiet by default: warnings only."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
