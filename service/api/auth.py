"""Login sessions: log in for a bearer token, log out to end it everywhere at once."""

from __future__ import annotations

from flask import Blueprint

from service import db
from service.auth import authenticate_session, unauthorized
from service.openapi import endpoint
from service.passwords import hash_password, needs_rehash, verify_password
from service.ratelimit import client_ip, enforce
from service.schemas import LoginRequest, SessionToken
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
