"""Login sessions in Redis: opaque tokens stored hashed, with a TTL, revocable at once.

``keys.login_session(<sha256>)`` holds the user id and expires with the session;
``keys.user_sessions(<id>)`` lists a user's live session hashes so all of them can be revoked
together (password reset). Every instance reads the same Redis, so a logout takes effect
everywhere immediately.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from service.core import keys
from service.domain.credentials import digest, is_session_token, new_session_token

_key, _user_key = keys.login_session, keys.user_sessions


async def create_session(redis: Redis, *, user_id: int, ttl: int) -> tuple[str, datetime]:
    """A new token for ``user_id`` and when it expires."""
    token = new_session_token()
    token_hash = digest(token).hex()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_key(token_hash), user_id, ex=ttl)
        pipe.sadd(_user_key(user_id), token_hash)
        pipe.expire(_user_key(user_id), ttl)
        await pipe.execute()
    return token, datetime.now(UTC) + timedelta(seconds=ttl)


async def session_user(redis: Redis, token: str) -> int | None:
    """The user id of a live session token, or None."""
    if not is_session_token(token):
        return None
    value = await redis.get(_key(digest(token).hex()))
    return int(value) if value is not None else None


async def end_session(redis: Redis, *, token: str, user_id: int) -> None:
    token_hash = digest(token).hex()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(_key(token_hash))
        pipe.srem(_user_key(user_id), token_hash)
        await pipe.execute()


async def end_all_sessions(redis: Redis, *, user_id: int) -> int:
    """Revoke every session of ``user_id``; returns how many there were."""
    hashes = await redis.smembers(_user_key(user_id))  # type: ignore[misc]
    async with redis.pipeline(transaction=True) as pipe:
        for token_hash in hashes:
            pipe.delete(_key(token_hash.decode() if isinstance(token_hash, bytes) else token_hash))
        pipe.delete(_user_key(user_id))
        await pipe.execute()
    return len(hashes)
