"""Password hashing: argon2id (argon2-cffi), always off the event loop.

Hashing is deliberately slow CPU work (tens of milliseconds), so it runs in a thread
(``asyncio.to_thread``) and never stalls other requests on the loop.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher


# argon2 is imported and the dummy hash computed on first use, not at import: the API worker
# imports this module (the users and auth views), and hashing at import cost ~110 ms and a
# transient 64 MiB (argon2id's memory cost), which set the worker's peak RSS.
@functools.cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters


@functools.cache
def _dummy_hash() -> str:
    """A real hash of a random password: verifying against it when the e-mail is unknown costs
    the same as a real check, so response time does not reveal which e-mails exist."""
    return _hasher().hash("not-a-password-of-anyone")


def _verify(password_hash: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``None`` (unknown user) costs a real check and fails."""
    ok = await asyncio.to_thread(_verify, password_hash, password)
    return ok and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    return _hasher().check_needs_rehash(password_hash)
