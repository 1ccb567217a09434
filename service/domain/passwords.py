"""Password hashing: argon2id (argon2-cffi), always off the event loop.

Hashing is deliberately slow CPU work (tens of milliseconds), so it runs in a thread
(``asyncio.to_thread``) and never stalls other requests on the loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters

# A real hash of a random password: verifying against it when the e-mail is unknown costs the
# same as a real check, so response time does not reveal which e-mails exist.
_DUMMY_HASH = _hasher.hash("not-a-password-of-anyone")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``None`` (unknown user) costs a real check and fails."""
    ok = await asyncio.to_thread(_verify, password_hash or _DUMMY_HASH, password)
    return ok and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    return _hasher.check_needs_rehash(password_hash)
