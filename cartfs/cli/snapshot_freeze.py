"""``cartfs freeze | verify | keygen | vacuum``: signed read-only copies, and compaction.

* ``freeze SRC DEST`` writes a packed, read-only copy of the live tree (or one snapshot)
  whose last page carries an Ed25519 signature over the SHA-256 of every other byte. The
  source is opened read-only, so freezing never changes it.
* ``verify ARCHIVE`` re-hashes every page and checks the signature — no passphrase needed,
  since the hash covers the stored (encrypted) bytes and the whole superblock, its
  authentication tag included (an encrypted archive frozen before that was so is only
  fully checked with its passphrase; without, the result is INCOMPLETE, exit 1). When a
  passphrase is at hand (or the archive is not encrypted) it also runs fsck, which decodes
  every node and chunk and checks every checksum and authentication tag. The output says
  which checks ran.
* ``keygen KEYFILE`` writes a key pair: KEYFILE (private, 0600) and KEYFILE.pub.
* ``vacuum ARCHIVE`` moves live pages down and truncates the file. It is crash-safe at every
  step, so Ctrl-C only asks it to stop after it finishes; a second Ctrl-C stops at once and
  the archive keeps its last commit. On a mounted archive it asks the mount daemon, which
  holds the archive, to vacuum (``setxattr MOUNT cartfs.vacuum``, see fuse/snapdir.py); the
  mount keeps serving between its steps, and the command returns when it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cartfs.cli.common import (
    PASSPHRASE_ENV,
    DeferredInterrupts,
    Progress,
    UsageError,
    add_archive_argument,
    add_passphrase_options,
    add_verbose_option,
    human_size,
    open_archive,
    os_error,
    read_passphrase,
)
from cartfs.cli.snapshot_cmds import find_archive_mount
from cartfs.core.archive import (
    Archive,
    VacuumResult,
    keygen,
    load_private_key,
    load_public_key,
    verify_signature,
)
from cartfs.core.errors import ArchiveBusy, CartError, PassphraseRequired
from cartfs.core.format import PAGE_SIZE
from cartfs.core.fsck import fsck

ORDER = 45


def _fingerprint(public_key: bytes) -> str:
    return public_key.hex()


def _named(path: str, exc: CartError) -> CartError:
    """The error as one line that starts with the file it is about."""
    if str(exc).startswith(path):
        return exc
    wrapped = CartError(f"{path}: {exc}")
    wrapped.errno = exc.errno
    return wrapped


def _busy(args: argparse.Namespace, what: str) -> CartError:
    return ArchiveBusy(f"{args.archive}: in use by another process (is it mounted?); "
                       f"{what} needs it: unmount it first")


# ---- freeze ---------------------------------------------------------------------------------


def cmd_freeze(args: argparse.Namespace) -> int:
    """Write a packed, signed, read-only copy of SRC (or one of its snapshots) to DEST."""
    if os.path.lexists(args.dest):
        raise UsageError(f"{args.dest}: already exists (freeze never overwrites)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.dest))):
        raise UsageError(f"{args.dest}: folder does not exist")
    key = load_private_key(args.sign_key) if args.sign_key else None
    try:
        archive = open_archive(args, readonly=True)
    except ArchiveBusy:
        raise _busy(args, "freeze") from None
    with archive:
        if args.snapshot is not None:
            archive.snapshot(args.snapshot)  # NotFound before any work
        with Progress("freezing", archive.statistics().allocator.used_pages * PAGE_SIZE) as bar:
            result = archive.freeze(args.dest, key=key, snapshot=args.snapshot,
                                    progress=lambda done, total: bar.update(
                                        done * PAGE_SIZE, total * PAGE_SIZE))
    what = f"snapshot {args.snapshot}" if args.snapshot else "live tree"
    print(f"froze {args.archive} ({what}) into {args.dest}: {result.pages} pages, "
          f"{human_size(result.pages * PAGE_SIZE)}")
    print(f"signed by Ed25519 key {_fingerprint(result.public_key)}")
    if key is None:
        print("note: signed with a one-time key (no --sign-key): verify proves the copy is "
              "intact, not who made it")
    return 0


# ---- verify ---------------------------------------------------------------------------------


def _passphrase_at_hand(args: argparse.Namespace) -> str | bytes | None:
    """--key-file or $CARTFS_PASSPHRASE; never a prompt (verify works without one)."""
    if args.key_file or os.environ.get(PASSPHRASE_ENV):
        return read_passphrase(args)
    return None


def _fsck_line(args: argparse.Namespace, passphrase: str | bytes | None,
               complete: bool) -> tuple[bool, str]:
    """Run fsck if the archive can be opened without asking; (ok, what to print).
    ``complete``: whether the signature covered every byte (see VerifyResult)."""
    try:
        archive = Archive.open(args.archive, readonly=True, passphrase=passphrase)
    except PassphraseRequired:
        if not complete:
            return False, (f"not run, and needed: this archive was frozen by an older cartfs "
                           f"whose signature leaves the superblock's authentication tag "
                           f"out; give the passphrase (--key-file or ${PASSPHRASE_ENV}) to "
                           f"check it")
        return True, (f"skipped: encrypted, no passphrase (give --key-file or set "
                      f"${PASSPHRASE_ENV} to also decode and check every page)")
    except CartError as exc:
        raise _named(args.archive, exc) from None
    with archive, Progress("checking", archive.superblock.total_pages, unit="pages") as bar:
        report = fsck(archive, bar.update)
    if report.ok:
        return True, (f"OK: {report.node_pages} B-tree nodes and {report.extents} extents "
                      f"decoded, every checksum{' and tag' if archive.superblock.encrypted else ''}"
                      f" checked; {report.inodes} inodes")
    first = report.problems[0]
    return False, f"{len(report.problems)} problem(s), first: {first}"


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a frozen archive's signature over every byte, and (when it can) run fsck."""
    expected = load_public_key(args.pubkey) if args.pubkey else None
    passphrase = _passphrase_at_hand(args)  # a bad --key-file fails before any output
    try:
        size = os.path.getsize(args.archive)
    except OSError as exc:
        raise os_error(exc, args.archive) from None
    try:
        with Progress("verifying", size) as bar:
            result = verify_signature(args.archive, expected_key=expected,
                                      progress=lambda done, total: bar.update(
                                          done * PAGE_SIZE, total * PAGE_SIZE))
    except CartError as exc:
        raise _named(args.archive, exc) from None
    signer = f"key {_fingerprint(result.public_key)}"
    print(f"signature: OK, Ed25519 {signer}" +
          (f" (matches {args.pubkey})" if args.pubkey else
           " (no --pubkey: this proves the file is intact, not who signed it)"))
    print(f"content:   SHA-256 {result.content_hash.hex()} over all {result.pages} pages "
          f"({human_size(result.pages * PAGE_SIZE)})")
    ok, line = _fsck_line(args, passphrase, result.complete)
    print(f"fsck:      {line}")
    if ok:
        print("result:    OK")
    elif not result.complete and passphrase is None:
        print("result:    INCOMPLETE (the signature holds, but does not cover every byte)")
    else:
        print("result:    FAILED (the signature holds, but the content does not check out)")
    sys.stdout.flush()
    return 0 if ok else 1


# ---- keygen ---------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write an Ed25519 key pair for signing frozen archives."""
    for path in (args.keyfile, args.keyfile + ".pub"):
        if os.path.lexists(path):
            raise UsageError(f"{path}: already exists (keygen never overwrites a key)")
    try:
        keygen(args.keyfile)
    except OSError as exc:
        raise os_error(exc, args.keyfile) from None
    public = load_public_key(args.keyfile + ".pub").public_bytes(Encoding.Raw,
                                                                 PublicFormat.Raw)
    print(f"wrote {args.keyfile} (private key, mode 0600) and {args.keyfile}.pub")
    print(f"public key {_fingerprint(public)}")
    return 0


# ---- vacuum ---------------------------------------------------------------------------------


def cmd_vacuum(args: argparse.Namespace) -> int:
    """Move live pages down and give the free tail of the file back to the disk."""
    try:
        archive = open_archive(args)
    except ArchiveBusy:
        mountpoint = find_archive_mount(os.path.abspath(args.archive))
        if mountpoint is None:
            raise _busy(args, "vacuum") from None
        return _vacuum_mounted(args, mountpoint)
    with archive, DeferredInterrupts():
        before = os.path.getsize(args.archive)
        with Progress("vacuum", 1, unit="pages") as bar:
            result = archive.vacuum(bar.update)
        after = os.path.getsize(args.archive)
    _report_vacuum(before, after, result.moved_pages)
    return 0


VACUUM_CONTROL = "cartfs.vacuum"


def _report_vacuum(before: int, after: int, moved: int | None, how: str = "") -> None:
    pages = "?" if moved is None else str(moved)
    print(f"vacuum: {human_size(before)} -> {human_size(after)}, reclaimed "
          f"{human_size(max(before - after, 0))} ({pages} pages moved){how}")
    if after >= before:
        print(f"note: nothing to gain: vacuum leaves {human_size(VacuumResult.slack_bytes)} "
              "of free space in the file for growth, and the file ends in live pages")


def _vacuum_mounted(args: argparse.Namespace, mountpoint: str) -> int:
    """The mount daemon holds the archive: ask it to vacuum (``setxattr MOUNT
    cartfs.vacuum``; it runs in the daemon, between the requests it keeps serving, and the
    call returns when it is done). Ctrl-C cannot stop it there: it finishes."""
    before = os.path.getsize(args.archive)
    print(f"vacuum: through the mount at {mountpoint} (the mount keeps working)",
          file=sys.stderr)
    try:
        os.setxattr(mountpoint, VACUUM_CONTROL, b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENODATA):
            raise ArchiveBusy(f"{args.archive}: mounted at {mountpoint}, and that mount cannot "
                              f"vacuum (an older cartfs, or -o xattr=0): unmount it first "
                              f"(cartfs umount {mountpoint})") from None
        if exc.errno == errno.EROFS:
            raise CartError(f"{args.archive}: mounted read-only at {mountpoint}: nothing "
                            f"can change it") from None
        if exc.errno == errno.EBUSY:
            raise ArchiveBusy(f"{args.archive}: a vacuum is already running in the mount at "
                              f"{mountpoint}") from None
        raise os_error(exc, mountpoint) from None
    moved: int | None = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        moved = int(json.loads(os.getxattr(mountpoint, VACUUM_CONTROL))["moved_pages"])
    _report_vacuum(before, os.path.getsize(args.archive), moved,
                   f" (through the mount at {mountpoint})")
    return 0


# ---- registration ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "freeze", help="write a packed, signed, read-only copy of an archive",
        description="Write DEST: a compact, read-only copy of SRC's live tree (or of one "
                    "snapshot), with no free space and an Ed25519 signature over its "
                    "content hash. DEST opens and mounts read-only only; `cartfs verify` "
                    "checks it. An encrypted SRC gives an encrypted DEST (same passphrase).")
    p.add_argument("archive", metavar="SRC", help="the archive to freeze (not changed)")
    p.add_argument("dest", metavar="DEST", help="the frozen archive to write (must not exist)")
    p.add_argument("--sign-key", metavar="KEYFILE",
                   help="Ed25519 private key from `cartfs keygen` (default: a one-time key)")
    p.add_argument("--snapshot", metavar="NAME", help="freeze this snapshot, not the live tree")
    add_verbose_option(p)
    add_passphrase_options(p)
    p.set_defaults(func=cmd_freeze)

    p = sub.add_parser(
        "verify", help="check a frozen archive's signature and every byte",
        description="Re-hash every page of a frozen archive and check the Ed25519 signature "
                    "(no passphrase needed); with --pubkey also that this key signed it. If "
                    "the archive is not encrypted, or a passphrase is given (--key-file, "
                    f"${PASSPHRASE_ENV}), also run fsck. Exit 0 only if all checks pass.")
    add_archive_argument(p)
    p.add_argument("--pubkey", metavar="KEYFILE.pub", help="the signer's public key")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "keygen", help="make an Ed25519 key pair for signing frozen archives",
        description="Write KEYFILE (private key, PEM, mode 0600) and KEYFILE.pub (public "
                    "key, PEM). Never overwrites.")
    p.add_argument("keyfile", metavar="KEYFILE")
    add_verbose_option(p)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "vacuum", help="compact an archive and shrink its file",
        description="Move live pages (and the pages snapshots hold) down and truncate the "
                    "file. Crash-safe at every step: a crash or kill leaves a valid archive. "
                    "On a mounted archive the mount daemon does it (the mount keeps "
                    "serving meanwhile; this waits until it is done).")
    add_archive_argument(p)
    p.set_defaults(func=cmd_vacuum)
