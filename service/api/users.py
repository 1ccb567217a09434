"""Users: register, and who am I."""

from __future__ import annotations

from flask import Blueprint

from service import db
from service.auth import authenticate
from service.openapi import endpoint
from service.passwords import hash_password
from service.ratelimit import client_ip, enforce
from service.schemas import UserCreate, UserPublic
from service.users import create_user

bp = Blueprint("users", __name__, url_prefix="/api/v1/users")


@bp.post("")
@endpoint(body=UserCreate, response=UserPublic, status=201, errors=(409, 429), tags=["users"])
async def register(body: UserCreate) -> UserPublic:
    """Create an account.

    The e-mail is normalised (lower case) and must be unused; the password has 10 to 128
    characters and is stored as an argon2id hash.
    """
    await enforce("register-ip", client_ip(), db.resources().settings.rate_limit_register)
    user = await create_user(
        db.session(),
        email=body.email,
        name=body.name,
        password_hash=await hash_password(body.password),
    )
    return UserPublic.model_validate(user)


@bp.get("/me")
@endpoint(response=UserPublic, auth=True, errors=(401, 503), tags=["users"])
async def me() -> UserPublic:
    """The caller's account."""
    caller = await authenticate()
    return UserPublic.model_validate(caller.user)
