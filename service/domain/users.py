"""User data functions (no HTTP): create, look up, update the password hash."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.errors import Conflict
from service.domain.models import User


async def create_user(session: AsyncSession, *, email: str, name: str, password_hash: str) -> User:
    """Insert a user; ``Conflict`` when the (normalised) e-mail is taken."""
    user = User(email=email, name=name, password_hash=password_hash)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("An account with this e-mail already exists.", code="email_taken") from None
    await session.refresh(user)
    return user


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def set_password_hash(session: AsyncSession, *, user_id: int, password_hash: str) -> None:
    await session.execute(
        update(User).where(User.id == user_id).values(password_hash=password_hash)
    )
