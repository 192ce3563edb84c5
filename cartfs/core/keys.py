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

from .errors import CorruptArchive, WrongPassphrase
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


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


def derive(header: KeyHeader, passphrase: str | bytes) -> bytes:
    """The key-encryption key for ``passphrase`` under the header's KDF parameters."""
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
