"""API key data functions (no HTTP): issue, list, revoke, and find the owner of a key."""

from __future__ import annotations

import hmac

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.errors import Conflict
from service.domain.credentials import api_key_prefix, digest, new_api_key
from service.domain.models import ApiKey, User


async def issue_key(
    session: AsyncSession, *, user_id: int, name: str, limit: int = 20
) -> tuple[ApiKey, str]:
    """A new key for ``user_id``: the row and the key itself (shown once, stored hashed).

    ``Conflict`` (``too_many_api_keys``) when the user already holds ``limit`` live keys: each
    key is a credential of its own, and keys without end would be a way round anything
    counted per credential. The user's row is locked first, so concurrent requests cannot
    both take the last slot."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    live = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
    )
    if (live or 0) >= limit:
        raise Conflict(
            f"You hold {live} live API keys, the most allowed; revoke one before creating another.",
            code="too_many_api_keys",
        )
    key, prefix = new_api_key()
    row = ApiKey(user_id=user_id, name=name, prefix=prefix, key_hash=digest(key))
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, key


async def keys_of(session: AsyncSession, user_id: int) -> list[ApiKey]:
    result = await session.execute(
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.id)
    )
    return list(result.scalars())


async def revoke_key(session: AsyncSession, *, user_id: int, key_id: int) -> bool:
    """Revoke one of ``user_id``'s keys; False when there is no such live key."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey.id)
    )
    return result.first() is not None


async def owner_of_key(session: AsyncSession, key: str) -> User | None:
    """The user a live key belongs to, or None. Malformed keys cost no query."""
    prefix = api_key_prefix(key)
    if prefix is None:
        return None
    result = await session.execute(
        select(ApiKey.key_hash, User)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    row = result.first()
    if row is None or not hmac.compare_digest(row.key_hash, digest(key)):
        return None
    owner: User = row.User
    return owner
