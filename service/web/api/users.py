"""Users: register, and who am I."""

from __future__ import annotations

from flask import Blueprint

from service.core import routes
from service.domain.callers import Caller
from service.domain.passwords import hash_password
from service.domain.schemas import UserCreate, UserPublic
from service.domain.users import create_user
from service.web import context
from service.web.endpoint import endpoint
from service.web.rate_limits import client_bucket, enforce

bp = Blueprint("users", __name__, url_prefix=routes.USERS)


@bp.post("")
@endpoint(body=UserCreate, response=UserPublic, status=201, errors=(409, 429, 503), tags=["users"])
async def register(body: UserCreate) -> UserPublic:
    """Create an account.

    The e-mail is normalised (lower case) and must be unused; the password has 10 to 128
    characters and is stored as an argon2id hash.
    """
    await enforce("register-ip", client_bucket(), context.settings().rate_limit_register)
    user = await create_user(
        context.db_session(),
        email=body.email,
        name=body.name,
        password_hash=await hash_password(body.password),
    )
    return UserPublic.model_validate(user)


@bp.get("/me")
@endpoint(response=UserPublic, auth=True, errors=(401, 503), tags=["users"])
async def me(caller: Caller) -> UserPublic:
    """The caller's account."""
    return UserPublic.model_validate(caller.user)
