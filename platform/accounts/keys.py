"""API key format: generation, checksum and hashing. Pure Python.

A key looks like ``trb_`` + 30 random base62 characters + 6 base62 characters of CRC32 over the rest, so a
secret scanner can recognise a Tribute key, and a typo is refused before any database lookup. The first
12 characters (``trb_`` and 8 random ones) are the public lookup prefix; only the SHA-256 of the whole key
is stored. SHA-256 is enough for a 178-bit random secret; a password hasher would cost ~0.2 s per call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

KEY_MARKER = "trb_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 30
_CHECKSUM_LENGTH = 6
PREFIX_LENGTH = len(KEY_MARKER) + 8
KEY_LENGTH = len(KEY_MARKER) + _RANDOM_LENGTH + _CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


def generate_key() -> str:
    body = KEY_MARKER + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return body + _checksum(body)


def is_well_formed(key: str) -> bool:
    if len(key) != KEY_LENGTH or not key.startswith(KEY_MARKER):
        return False
    rest = key[len(KEY_MARKER) :]
    if any(char not in _ALPHABET for char in rest):
        return False
    body, checksum = key[:-_CHECKSUM_LENGTH], key[-_CHECKSUM_LENGTH:]
    return hmac.compare_digest(_checksum(body), checksum)


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
