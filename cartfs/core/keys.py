"""Passphrase → key-encryption key → wrapped data key.

Every archive that is encrypted has one random 32-byte *data key*; it seals every page and
chunk. The data key is stored only wrapped (AES-256-GCM) under a key derived from the
passphrase with a memory-hard KDF (Argon2id by default; scrypt is also understood), whose
parameters and salt live in the superblock. Changing the passphrase re-wraps the data key and
rewrites nothing but the superblock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import CorruptArchive, InvalidArgument, KeyFileError, WrongPassphrase
from .format import KeyHeader

KDF_SCRYPT = 1
KDF_ARGON2ID = 2


@dataclass(frozen=True)
class KdfParams:
    """Cost of deriving a key. The defaults take ~0.2 s and 64 MiB here: slow for a guesser,
    quick for a user. Tests pass ``KdfParams.cheap()``."""

    kdf: int = KDF_ARGON2ID
    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4
    log2_n: int = 16
    r: int = 8
    p: int = 1

    @classmethod
    def cheap(cls) -> KdfParams:
        return cls(memory_kib=1024, iterations=1, lanes=1, log2_n=10)


KEY_FILE_MAX = 1 << 20


def read_key_file(path: str | os.PathLike[str]) -> str | bytes:
    """The passphrase a key file holds, the one rule for the CLI, the mount and the VFS: its
    first line when the file is text (the newline is not part of it), all of its bytes when
    it is binary (``head -c 32 /dev/urandom > key``)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(KEY_FILE_MAX)
    except OSError as exc:
        raise KeyFileError(f"{os.fsdecode(path)}: cannot read key file: {exc.strerror}") \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return text.split("\n", 1)[0].rstrip("\r")


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


# Bounds on the stored cost. The superblock cannot be authenticated before the key is derived,
# so a tampered header must not make the KDF fail outside our errors, exhaust memory or spin.
MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB, far above any sane cost
MAX_KDF_PASSES = 64  # Argon2id iterations, scrypt p
MAX_KDF_LANES = 64


def kdf_problem(header: KeyHeader) -> str | None:
    """Why the header's KDF parameters cannot be right (corrupt or tampered), or None."""
    if header.kdf == KDF_ARGON2ID:
        fine = (1 <= header.lanes <= MAX_KDF_LANES and 1 <= header.iterations <= MAX_KDF_PASSES
                and 8 * header.lanes <= header.memory_kib <= MAX_KDF_MEMORY_KIB)
        return None if fine else (f"Argon2id parameters out of range ({header.memory_kib} "
                                  f"KiB, {header.iterations} passes, {header.lanes} lanes)")
    if header.kdf == KDF_SCRYPT:
        fine = (1 <= header.log2_n <= 32 and 1 <= header.r <= 64
                and 1 <= header.p <= MAX_KDF_PASSES
                and 128 * header.r * (1 << header.log2_n) <= MAX_KDF_MEMORY_KIB * 1024)
        return None if fine else (f"scrypt parameters out of range (N=2**{header.log2_n}, "
                                  f"r={header.r}, p={header.p})")
    return None


def derive(header: KeyHeader, passphrase: str | bytes) -> bytes:
    """The key-encryption key for ``passphrase`` under the header's KDF parameters."""
    problem = kdf_problem(header)
    if problem is not None:
        raise CorruptArchive(problem, kind="superblock")
    secret = _as_bytes(passphrase)
    if header.kdf == KDF_ARGON2ID:
        return bytes(Argon2id(salt=header.salt, length=32, iterations=header.iterations,
                              lanes=header.lanes, memory_cost=header.memory_kib).derive(secret))
    if header.kdf == KDF_SCRYPT:
        return bytes(Scrypt(salt=header.salt, length=32, n=1 << header.log2_n, r=header.r,
                            p=header.p).derive(secret))
    raise CorruptArchive(f"unknown key derivation function {header.kdf}", kind="superblock")


def _wrap_ad(uuid: bytes) -> bytes:
    return b"cartfs data key\0" + uuid


def new_key_header(passphrase: str | bytes, uuid: bytes,
                   params: KdfParams | None = None) -> tuple[KeyHeader, bytes]:
    """A fresh random data key, wrapped under ``passphrase``: (header, data key)."""
    data_key = os.urandom(32)
    return wrap(data_key, passphrase, uuid, params), data_key


def wrap(data_key: bytes, passphrase: str | bytes, uuid: bytes,
         params: KdfParams | None = None) -> KeyHeader:
    params = params or KdfParams()
    header = KeyHeader(
        kdf=params.kdf, log2_n=params.log2_n, r=params.r, p=params.p,
        memory_kib=params.memory_kib, iterations=params.iterations, lanes=params.lanes,
        salt=os.urandom(16), wrap_nonce=os.urandom(12),
    )
    problem = kdf_problem(header) if header.kdf in (KDF_ARGON2ID, KDF_SCRYPT) else "unknown KDF"
    if problem is not None:
        raise InvalidArgument(f"key derivation: {problem}")
    kek = derive(header, passphrase)
    wrapped = AESGCM(kek).encrypt(header.wrap_nonce, data_key, _wrap_ad(uuid))
    return KeyHeader(header.kdf, header.log2_n, header.r, header.p, header.memory_kib,
                     header.iterations, header.lanes, header.salt, header.wrap_nonce, wrapped)


def unwrap(header: KeyHeader, passphrase: str | bytes, uuid: bytes) -> bytes:
    """The data key, or WrongPassphrase — decided before any page is read."""
    kek = derive(header, passphrase)
    try:
        return AESGCM(kek).decrypt(header.wrap_nonce, header.wrapped_key, _wrap_ad(uuid))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase for this archive") from None
