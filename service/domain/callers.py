"""Who is calling: a presented credential (API key or session token) resolved to its user.

No HTTP here: ``service.web.auth`` reads the credential from the request headers and the
``endpoint`` decorator passes the ``Caller`` to the view. Secrets are compared as SHA-256
digests in constant time; a malformed key is refused without a query. Session tokens live in
Redis; while Redis is down, session checks fail closed (its error propagates: a 503).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.errors import Unauthenticated
from service.domain.api_keys import owner_of_key
from service.domain.credentials import SESSION_PREFIX
from service.domain.login_sessions import born, session_owner
from service.domain.models import User
from service.domain.users import user_by_id

Via = Literal["session", "api_key"]


@dataclass(frozen=True)
class Caller:
    user: User
    via: Via
    credential: str  # the token or key itself, for logout and rate-limit keys

    @property
    def rate_key(self) -> str:
        """Who a per-caller rate limit counts: the user, whichever of their credentials is
        presented (keys and sessions are many; a limit per credential would multiply)."""
        return f"user-{self.user.id}"


async def identify(
    session: AsyncSession, redis: Redis, credential: str | None, *, sessions_only: bool = False
) -> Caller:
    """The caller presenting ``credential``; ``Unauthenticated`` when there is none, when it
    is invalid, expired or revoked, or when ``sessions_only`` and it is an API key."""
    if credential is None:
        raise Unauthenticated("Credentials are required: an API-Key header or a Bearer token.")
    user: User | None = None
    via: Via
    if credential.startswith(SESSION_PREFIX):
        via = "session"
        owner = await session_owner(redis, credential)
        if owner is not None:
            user = await user_by_id(session, owner[0])
            # The id handed out again (a restore, a rollback): not the session's user.
            if user is not None and owner[1] is not None and owner[1] != born(user.created_at):
                user = None
    else:
        via = "api_key"
        if sessions_only:
            raise Unauthenticated("This endpoint needs a session token from /api/v1/auth/login.")
        user = await owner_of_key(session, credential)
    if user is None:
        raise Unauthenticated("The credentials are invalid, expired or revoked.")
    return Caller(user=user, via=via, credential=credential)
