"""Login sessions: log in for a bearer token, log out to end it everywhere at once; reset a
forgotten password by e-mail (``service.domain.password_reset``)."""

from __future__ import annotations

import logging
import time

from flask import Blueprint

from service.core import routes
from service.core.errors import REDIS_FAILURES, InvalidToken, Unauthenticated, Unavailable
from service.domain import rate_limits
from service.domain.callers import Caller
from service.domain.login_sessions import create_session, end_session
from service.domain.password_reset import (
    InvalidResetToken,
    address_tag,
    request_reset,
    reset_password,
)
from service.domain.passwords import hash_password, needs_rehash, verify_password
from service.domain.schemas import (
    LoginRequest,
    PasswordResetAccepted,
    PasswordResetConfirm,
    PasswordResetRequest,
    SessionToken,
)
from service.domain.users import set_password_hash, user_by_email
from service.web import context
from service.web.endpoint import endpoint
from service.web.pages import reset_link
from service.web.rate_limits import (
    auth_failures,
    client_bucket,
    count,
    enforce,
    enforce_counter,
    refuse_if_over,
    reset_counter,
)

bp = Blueprint("auth", __name__, url_prefix=routes.AUTH)
log = logging.getLogger(__name__)


def address_key(email: str) -> str:
    """An e-mail address as a rate-limit identity: its keyed tag (no address in Redis keys)."""
    return address_tag(context.settings().secret_key.get_secret_value(), email)


@bp.post("/login")
@endpoint(body=LoginRequest, response=SessionToken, errors=(401, 429, 503), tags=["auth"])
async def login(body: LoginRequest) -> SessionToken:
    """Exchange e-mail and password for a session token.

    An unknown e-mail and a wrong password get the same 401, after the same amount of work.
    Failures are limited per client (RATE_LIMIT_AUTH_FAILURES) and per e-mail address from
    one client (RATE_LIMIT_LOGIN_EMAIL), never per address alone: failures sent from other
    addresses never refuse the right password. A user holds at most MAX_SESSIONS_PER_USER
    sessions; a login past it ends the oldest.
    """
    settings = context.settings()
    client = client_bucket()
    await enforce("login-ip", client, settings.rate_limit_login_ip)
    failures = auth_failures()
    pair = rate_limits.counter(
        "login-email", f"{address_key(body.email)}|{client}", settings.rate_limit_login_email
    )
    await refuse_if_over(failures)
    # Counted before the check, atomically, so concurrent guesses cannot all slip under the
    # limit; the right password then clears it: it counts failures since the last success.
    await enforce_counter(pair)
    session = context.db_session()
    user = await user_by_email(session, body.email)
    user_id, stored, created_at = (
        (user.id, user.password_hash, user.created_at) if user else (None, None, None)
    )
    await context.release_connection()  # no connection held while the password is hashed
    if not await verify_password(stored, body.password):
        await count(failures)
        raise Unauthenticated("The e-mail or password is wrong.", code="invalid_login")
    assert user_id is not None and stored is not None
    await reset_counter(pair)
    if needs_rehash(stored):  # parameters changed since this hash was made
        await set_password_hash(
            session, user_id=user_id, password_hash=await hash_password(body.password)
        )
    token, expires_at = await create_session(
        context.redis(),
        user_id=user_id,
        user_created_at=created_at,
        ttl=settings.session_ttl_seconds,
        max_sessions=settings.max_sessions_per_user,
    )
    return SessionToken(token=token, expires_at=expires_at)


@bp.post("/logout")
@endpoint(status=204, auth="session", errors=(401, 503), tags=["auth"])
async def logout(caller: Caller) -> None:
    """End the session whose token authenticates this request."""
    await end_session(context.redis(), token=caller.credential, user_id=caller.user.id)


@bp.post("/reset-password")
@endpoint(
    body=PasswordResetRequest,
    response=PasswordResetAccepted,
    status=202,
    errors=(429, 503),
    tags=["auth"],
)
async def request_password_reset(body: PasswordResetRequest) -> PasswordResetAccepted:
    """Ask for a password reset e-mail.

    The answer is 202 whether or not the e-mail has an account; if it has one, a message with
    a single-use link (valid for PASSWORD_RESET_TTL_SECONDS) is sent to it: PASSWORD_RESET_URL,
    else (in development, asked on a loopback host) the reset page of this server. Past
    RATE_LIMIT_RESET mails for one address from one client, or RATE_LIMIT_RESET_ADDRESS for
    one address from anywhere, the answer is still 202 and nothing is sent.
    """
    settings = context.settings()
    link = reset_link()
    if link is None:
        log.warning(
            "password reset: PASSWORD_RESET_URL is unset and the request's Host is not a "
            "loopback one; nothing sent"
        )
        return PasswordResetAccepted()
    client = client_bucket()
    await enforce("reset-ip", client, settings.rate_limit_login_ip)
    address = address_key(body.email)
    counters = (
        rate_limits.counter("reset-email", f"{address}|{client}", settings.rate_limit_reset),
        rate_limits.counter("reset-address", address, settings.rate_limit_reset_address),
    )
    for which in counters:
        counted = await count(which)  # fails closed: 503 while Redis is unavailable
        if counted is not None and counted > which.limit:
            log.info("password reset: %s limit reached; nothing sent", which.name)
            return PasswordResetAccepted()
    if not await request_reset(context.resources(), body.email, link=link):
        raise Unavailable()
    return PasswordResetAccepted()


@bp.post("/reset-password/confirm")
@endpoint(body=PasswordResetConfirm, status=204, errors=(400, 429, 503), tags=["auth"])
async def confirm_password_reset(body: PasswordResetConfirm) -> None:
    """Set a new password with the token from the reset e-mail.

    Every session of the user ends. A forged, expired or already used token gets 400
    `invalid_token`.
    """
    settings = context.settings()
    await enforce("reset-confirm-ip", client_bucket(), settings.rate_limit_login_ip)
    try:
        await reset_password(
            context.db_session(),
            context.redis(),
            secret=settings.secret_key.get_secret_value(),
            token=body.token,
            new_password=body.new_password,
            now=time.time(),
        )
    except InvalidResetToken:
        raise InvalidToken("The reset token is invalid, expired or already used.") from None
    except REDIS_FAILURES:  # sessions could not be revoked: no change
        raise Unavailable() from None
