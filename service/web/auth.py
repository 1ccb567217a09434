"""Authentication for HTTP: the credential a request presents, resolved to its ``Caller``.

Accepted: ``API-Key: <key>`` (the guide's header) or ``Authorization: Bearer <key or session
token>``, one of the two: a request presenting both is refused, so a credential that fails
can never be outvoted by another one. Missing or invalid credentials answer 401 with
``WWW-Authenticate``. Views never call this themselves: ``@endpoint(auth=...)`` does, and
passes ``caller=`` to the view.
"""

from __future__ import annotations

from flask import request

from service.core.errors import Unauthenticated
from service.domain.callers import Caller, identify
from service.web import context
from service.web.rate_limits import auth_failures, count, refuse_if_over


def credential_from(api_key: str | None, authorization: str | None) -> str | None:
    """The credential of an ``API-Key`` header value and an ``Authorization`` one (None: the
    header is absent); None when neither is present.

    Two credentials are refused (``Unauthenticated``) whatever each holds, valid or not:
    which one to believe would be a guess, and a bad one must fail the request. So is a
    header present but unusable (empty, or a scheme other than ``Bearer``)."""
    if api_key is not None and authorization is not None:
        raise Unauthenticated(
            "Send one credential: an API-Key header or an Authorization header, not both."
        )
    if api_key is not None:
        if not api_key.strip():
            raise Unauthenticated("The API-Key header is empty.")
        return api_key.strip()
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("The Authorization header must be 'Bearer <key or token>'.")
        return value.strip()
    return None


def presented_credential() -> str | None:
    """The API key or token the request presents (``credential_from`` its headers)."""
    return credential_from(request.headers.get("API-Key"), request.headers.get("Authorization"))


async def authenticate(*, sessions_only: bool = False) -> Caller:
    """The caller, or ``Unauthenticated`` (401). ``sessions_only`` refuses API keys.

    A client past ``RATE_LIMIT_AUTH_FAILURES`` failed authentications is refused (429) before
    its credential is looked up; a credential that fails counts one more failure."""
    credential = presented_credential()
    failures = auth_failures()
    if credential is not None:
        await refuse_if_over(failures)
    try:
        caller = await identify(
            context.db_session(), context.redis(), credential, sessions_only=sessions_only
        )
    except Unauthenticated:
        if credential is not None:
            await count(failures)
        raise
    context.request_state().caller = caller
    return caller
