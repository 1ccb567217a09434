"""Credential formats: API keys and session tokens, made and checked without a database.

API key: ``nd_`` + 10-character public id + 32-character secret + 6-character checksum, all
base62 (51 characters). The public part (``nd_`` + id) is stored and indexed; the whole key
is stored only as a SHA-256 hash. The checksum (CRC-32 of the rest) lets a mistyped or
made-up key be refused without a query, and lets secret scanners recognise real keys.

Session token: ``nds_`` + 43 URL-safe characters, kept in Redis under its SHA-256 hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
API_KEY_PREFIX = "nd_"
SESSION_PREFIX = "nds_"
_ID_LEN, _SECRET_LEN, _CHECK_LEN = 10, 32, 6
_API_KEY = re.compile(rf"nd_[0-9A-Za-z]{{{_ID_LEN + _SECRET_LEN + _CHECK_LEN}}}")
_SESSION = re.compile(r"nds_[A-Za-z0-9_-]{43}")


def _random62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(_CHECK_LEN):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def new_api_key() -> tuple[str, str]:
    """A fresh key and its public prefix."""
    body = API_KEY_PREFIX + _random62(_ID_LEN) + _random62(_SECRET_LEN)
    return body + _checksum(body), body[: len(API_KEY_PREFIX) + _ID_LEN]


def api_key_prefix(key: str) -> str | None:
    """The key's public prefix when it is well-formed with a valid checksum, else None."""
    if not _API_KEY.fullmatch(key):
        return None
    body, check = key[:-_CHECK_LEN], key[-_CHECK_LEN:]
    if not hmac.compare_digest(_checksum(body), check):
        return None
    return key[: len(API_KEY_PREFIX) + _ID_LEN]


def digest(secret: str) -> bytes:
    """SHA-256 of a key or token, as stored."""
    return hashlib.sha256(secret.encode()).digest()


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def is_session_token(token: str) -> bool:
    return _SESSION.fullmatch(token) is not None
