"""Login sessions in Redis: opaque tokens stored hashed, with a TTL, revocable at once.

``keys.login_session(<sha256>)`` holds the user id and the user's creation time (``<id>:<µs>``)
and expires with the session. The creation time makes a session name one user for good: ids
are handed out again after a restore from a backup or a rollback past the users table, and a
session left in Redis then must not open the account that received its id. (A bare ``<id>``,
as sessions made before were stored, is still read.)
``keys.user_sessions(<id>)`` is a sorted set of a user's session hashes by creation time, so
all of them can be revoked together (password reset) and a user holds at most
``MAX_SESSIONS_PER_USER``: a login past it ends the user's oldest session. Evicting rather
than refusing is deliberate: a login on a new device must not fail because of sessions left
on devices long gone, and someone who learnt the password cannot lock its owner out by
filling the slots (the owner's login ends theirs, and a password reset ends all of them).
Every instance reads the same Redis, so a logout takes effect everywhere immediately.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from service.core import keys
from service.domain.credentials import digest, is_session_token, new_session_token

_key, _user_key = keys.login_session, keys.user_sessions

# KEYS[1] the new session, KEYS[2] the user's sorted set; ARGV: token hash, user id, ttl,
# now, the most sessions kept, the session key prefix. Sessions past their TTL leave the set;
# past the cap the oldest are ended (their keys deleted). Returns how many were ended.
_CREATE = """
local ttl, now, most = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local extra = redis.call('ZCARD', KEYS[2]) - most
local ended = 0
if extra > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  for _, hash in ipairs(oldest) do redis.call('DEL', ARGV[6] .. hash) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
  ended = #oldest
end
redis.call('EXPIRE', KEYS[2], ttl)
return ended
"""


def born(created_at: datetime) -> int:
    """A user's creation time as a session stores it: microseconds since the epoch."""
    return int(created_at.timestamp() * 1_000_000)


async def create_session(
    redis: Redis,
    *,
    user_id: int,
    ttl: int,
    max_sessions: int = 50,
    user_created_at: datetime | None = None,
) -> tuple[str, datetime]:
    """A new token for ``user_id`` (created at ``user_created_at``) and when it expires; past
    ``max_sessions`` live sessions the oldest are ended."""
    owner = str(user_id) if user_created_at is None else f"{user_id}:{born(user_created_at)}"
    token = new_session_token()
    token_hash = digest(token).hex()
    await redis.eval(  # type: ignore[misc]
        _CREATE,
        2,
        _key(token_hash),
        _user_key(user_id),
        token_hash,
        owner,
        str(ttl),
        repr(time.time()),
        str(max_sessions),
        keys.LOGIN_SESSION_PREFIX,
    )
    return token, datetime.now(UTC) + timedelta(seconds=ttl)


async def session_owner(redis: Redis, token: str) -> tuple[int, int | None] | None:
    """The user id of a live session token and the user's creation time (``born``; None for
    a session stored without it), or None."""
    if not is_session_token(token):
        return None
    value = await redis.get(_key(digest(token).hex()))
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    user_id, _, created = text.partition(":")
    return int(user_id), int(created) if created else None


async def session_user(redis: Redis, token: str) -> int | None:
    """The user id of a live session token, or None."""
    owner = await session_owner(redis, token)
    return owner[0] if owner is not None else None


async def end_session(redis: Redis, *, token: str, user_id: int) -> None:
    token_hash = digest(token).hex()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(_key(token_hash))
        pipe.zrem(_user_key(user_id), token_hash)
        pipe.srem(keys.legacy_user_sessions(user_id), token_hash)
        await pipe.execute()


async def end_all_sessions(redis: Redis, *, user_id: int) -> int:
    """Revoke every session of ``user_id``; returns how many there were."""
    hashes = set(await redis.zrange(_user_key(user_id), 0, -1))
    hashes |= await redis.smembers(keys.legacy_user_sessions(user_id))  # type: ignore[misc]
    async with redis.pipeline(transaction=True) as pipe:
        for token_hash in hashes:
            pipe.delete(_key(token_hash.decode() if isinstance(token_hash, bytes) else token_hash))
        pipe.delete(_user_key(user_id), keys.legacy_user_sessions(user_id))
        await pipe.execute()
    return len(hashes)
