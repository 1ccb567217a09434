"""Login sessions: log in for a bearer token, log out to end it everywhere at once; reset a
forgotten password by e-mail (``service.domain.password_reset``)."""

from __future__ import annotations

import time

from flask import Blueprint

from service.core.errors import REDIS_FAILURES, InvalidToken, Unauthenticated, Unavailable
from service.domain.callers import Caller
from service.domain.login_sessions import create_session, end_session
from service.domain.password_reset import InvalidResetToken, request_reset, reset_password
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
from service.web.rate_limits import client_ip, enforce

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


@bp.post("/login")
@endpoint(body=LoginRequest, response=SessionToken, errors=(401, 429, 503), tags=["auth"])
async def login(body: LoginRequest) -> SessionToken:
    """Exchange e-mail and password for a session token.

    An unknown e-mail and a wrong password get the same 401, after the same amount of work.
    """
    settings = context.settings()
    await enforce("login-ip", client_ip(), settings.rate_limit_login_ip)
    await enforce("login-email", body.email, settings.rate_limit_login_email)
    session = context.db_session()
    user = await user_by_email(session, body.email)
    if not await verify_password(user.password_hash if user else None, body.password):
        raise Unauthenticated("The e-mail or password is wrong.", code="invalid_login")
    assert user is not None
    if needs_rehash(user.password_hash):  # parameters changed since this hash was made
        await set_password_hash(
            session, user_id=user.id, password_hash=await hash_password(body.password)
        )
    token, expires_at = await create_session(
        context.redis(), user_id=user.id, ttl=settings.session_ttl_seconds
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
    else the reset page of the server at the scheme, host and port this request was sent to.
    """
    settings = context.settings()
    await enforce("reset-ip", client_ip(), settings.rate_limit_login_ip)
    await enforce("reset-email", body.email, settings.rate_limit_reset)
    if not await request_reset(context.resources(), body.email, link=reset_link()):
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
    await enforce("reset-confirm-ip", client_ip(), settings.rate_limit_login_ip)
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
