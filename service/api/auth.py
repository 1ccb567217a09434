"""Login sessions: log in for a bearer token, log out to end it everywhere at once; reset a
forgotten password by e-mail (``service.password_reset``)."""

from __future__ import annotations

import time

from flask import Blueprint
from redis.exceptions import RedisError

from service import db
from service.auth import authenticate_session, unauthorized
from service.errors import APIError
from service.openapi import endpoint
from service.password_reset import InvalidResetToken, request_reset, reset_password
from service.passwords import hash_password, needs_rehash, verify_password
from service.ratelimit import client_ip, enforce
from service.schemas import (
    LoginRequest,
    PasswordResetAccepted,
    PasswordResetConfirm,
    PasswordResetRequest,
    SessionToken,
)
from service.sessions import create_session, end_session
from service.users import set_password_hash, user_by_email

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


@bp.post("/login")
@endpoint(body=LoginRequest, response=SessionToken, errors=(401, 429, 503), tags=["auth"])
async def login(body: LoginRequest) -> SessionToken:
    """Exchange e-mail and password for a session token.

    An unknown e-mail and a wrong password get the same 401, after the same amount of work.
    """
    settings = db.resources().settings
    await enforce("login-ip", client_ip(), settings.rate_limit_login_ip)
    await enforce("login-email", body.email, settings.rate_limit_login_email)
    session = db.session()
    user = await user_by_email(session, body.email)
    if not await verify_password(user.password_hash if user else None, body.password):
        raise unauthorized("The e-mail or password is wrong.", "invalid_login")
    assert user is not None
    if needs_rehash(user.password_hash):  # parameters changed since this hash was made
        await set_password_hash(
            session, user_id=user.id, password_hash=await hash_password(body.password)
        )
    redis = db.resources().redis
    assert redis is not None
    token, expires_at = await create_session(
        redis, user_id=user.id, ttl=settings.session_ttl_seconds
    )
    return SessionToken(token=token, expires_at=expires_at)


@bp.post("/logout")
@endpoint(status=204, auth=True, errors=(401, 503), tags=["auth"])
async def logout() -> None:
    """End the session whose token authenticates this request."""
    caller = await authenticate_session()
    redis = db.resources().redis
    assert redis is not None
    await end_session(redis, token=caller.credential, user_id=caller.user.id)


def _unavailable() -> APIError:
    return APIError(
        503,
        "service_unavailable",
        "A dependency is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


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
    a single-use link (valid for PASSWORD_RESET_TTL_SECONDS) is sent to it.
    """
    res = db.resources()
    await enforce("reset-ip", client_ip(), res.settings.rate_limit_login_ip)
    await enforce("reset-email", body.email, res.settings.rate_limit_reset)
    if not await request_reset(res, body.email):
        raise _unavailable()
    return PasswordResetAccepted()


@bp.post("/reset-password/confirm")
@endpoint(body=PasswordResetConfirm, status=204, errors=(400, 429, 503), tags=["auth"])
async def confirm_password_reset(body: PasswordResetConfirm) -> None:
    """Set a new password with the token from the reset e-mail.

    Every session of the user ends. A forged, expired or already used token gets 400
    `invalid_token`.
    """
    res = db.resources()
    await enforce("reset-confirm-ip", client_ip(), res.settings.rate_limit_login_ip)
    assert res.redis is not None
    try:
        await reset_password(
            db.session(),
            res.redis,
            secret=res.settings.secret_key.get_secret_value(),
            token=body.token,
            new_password=body.new_password,
            now=time.time(),
        )
    except InvalidResetToken:
        raise APIError(
            400, "invalid_token", "The reset token is invalid, expired or already used."
        ) from None
    except (RedisError, OSError, TimeoutError):  # sessions could not be revoked: no change
        raise _unavailable() from None
