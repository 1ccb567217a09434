"""Authentication for HTTP: the credential a request presents, resolved to its ``Caller``.

Accepted: ``API-Key: <key>`` (the guide's header) or ``Authorization: Bearer <key or session
token>``. Missing or invalid credentials answer 401 with ``WWW-Authenticate``. Views never call
this themselves: ``@endpoint(auth=...)`` does, and passes ``caller=`` to the view.
"""

from __future__ import annotations

from flask import request

from service.domain.callers import Caller, identify
from service.web import context


def presented_credential() -> str | None:
    """The API key or token of the request's ``API-Key`` or ``Authorization`` header."""
    key = request.headers.get("API-Key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(*, sessions_only: bool = False) -> Caller:
    """The caller, or ``Unauthenticated`` (401). ``sessions_only`` refuses API keys."""
    caller = await identify(
        context.db_session(),
        context.redis(),
        presented_credential(),
        sessions_only=sessions_only,
    )
    context.request_state().caller = caller
    return caller
