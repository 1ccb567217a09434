"""Password hashing: argon2id (argon2-cffi), off the event loop, in a bounded executor.

Hashing is deliberately slow CPU work (tens of milliseconds) that takes 64 MiB of memory
while it runs (argon2id's memory cost). It never runs on the loop, and never in asyncio's
default executor, whose min(32, CPUs + 4) threads count the node's CPUs, not the container's
quota: 30 concurrent logins took one API worker from 84 to 471 MiB. Instead each process has
one ``PasswordHashing``: ``PASSWORD_HASH_CONCURRENCY`` threads (default: the cgroup CPU
quota rounded up, ``service.core.cpus``), so a process's peak memory stays at or below
concurrency x 64 MiB over its baseline. A call that cannot get a thread within
``PASSWORD_HASH_WAIT_SECONDS`` raises ``Unavailable`` (503 with ``Retry-After``): a burst
of logins is refused early rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from service.core.cpus import cpu_budget
from service.core.errors import Unavailable
from service.core.settings import Settings

if TYPE_CHECKING:
    from argon2 import PasswordHasher

T = TypeVar("T")

# argon2id's memory cost per hash (argon2-cffi's RFC 9106 low-memory profile): the figure the
# memory bound and the Deployment's limit are computed from.
HASH_MEMORY_MIB = 64


class PasswordHashing:
    """``concurrency`` hashing threads; a caller waits at most ``wait_seconds`` for one."""

    def __init__(self, concurrency: int, wait_seconds: float) -> None:
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:  # one per loop: a semaphore belongs to the loop it first waits on
            slots = self._slots[loop] = asyncio.Semaphore(self.concurrency)
        return slots

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a hashing thread; ``Unavailable`` when none frees up in time."""
        slots = self._semaphore()
        try:
            await asyncio.wait_for(slots.acquire(), self.wait_seconds)
        except TimeoutError:
            raise Unavailable("Too many password checks at once; try again shortly.") from None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            slots.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_hashing: PasswordHashing | None = None


def configure(concurrency: int | None, wait_seconds: float) -> PasswordHashing:
    """Set this process's hashing executor (``None``: the CPU quota); returns it."""
    global _hashing
    if _hashing is not None:
        _hashing.close()
    _hashing = PasswordHashing(concurrency or cpu_budget(), wait_seconds)
    return _hashing


def hashing() -> PasswordHashing:
    """This process's hashing executor (the defaults until ``configure`` runs)."""
    if _hashing is not None:
        return _hashing
    return configure(None, Settings.model_fields["password_hash_wait_seconds"].default)


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
    return await hashing().run(_hasher().hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``None`` (unknown user) costs a real check and fails."""
    ok = await hashing().run(_verify, password_hash, password)
    return ok and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    return _hasher().check_needs_rehash(password_hash)
