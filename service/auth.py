"""Who is calling: API keys and session tokens, resolved from the request headers.

Accepted: ``API-Key: <key>`` (the guide's header) or ``Authorization: Bearer <key or session
token>``. Missing or invalid credentials answer 401 with ``WWW-Authenticate``. Secrets are
compared as SHA-256 digests in constant time; a malformed key is refused without a query.
Session tokens live in Redis; while Redis is down, session checks fail closed (503).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flask import g, request

from service import db
from service.api_keys import owner_of_key
from service.credentials import SESSION_PREFIX, digest
from service.errors import APIError
from service.models import User
from service.sessions import session_user
from service.users import user_by_id

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="newsdesk", charset="UTF-8"'}


@dataclass(frozen=True)
class Caller:
    user: User
    via: Literal["session", "api_key"]
    credential: str  # the token or key itself, for logout and rate-limit keys

    @property
    def rate_key(self) -> str:
        """A stable, non-secret id of the credential (for per-credential rate limits)."""
        return digest(self.credential).hex()[:24]


def _presented() -> str | None:
    key = request.headers.get("API-Key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def unauthorized(message: str, code: str = "unauthorized") -> APIError:
    return APIError(401, code, message, headers=CHALLENGE)


async def authenticate(*, sessions_only: bool = False) -> Caller:
    """The caller, or 401. ``sessions_only`` refuses API keys (for managing the keys)."""
    credential = _presented()
    if credential is None:
        raise unauthorized("Credentials are required: an API-Key header or a Bearer token.")
    user: User | None = None
    via: Literal["session", "api_key"]
    if credential.startswith(SESSION_PREFIX):
        via = "session"
        user_id = await session_user(db.resources().redis, credential)  # type: ignore[arg-type]
        if user_id is not None:
            user = await user_by_id(db.session(), user_id)
    else:
        via = "api_key"
        if sessions_only:
            raise unauthorized("This endpoint needs a session token from /api/v1/auth/login.")
        user = await owner_of_key(db.session(), credential)
    if user is None:
        raise unauthorized("The credentials are invalid, expired or revoked.")
    caller = Caller(user=user, via=via, credential=credential)
    g.caller = caller
    return caller


async def authenticate_session() -> Caller:
    return await authenticate(sessions_only=True)
