"""API keys: issue (shown once), list (no secrets), revoke (effective at once)."""

from __future__ import annotations

from flask import Blueprint

from service import db
from service.api_keys import issue_key, keys_of, revoke_key
from service.auth import authenticate_session
from service.errors import APIError
from service.openapi import endpoint
from service.ratelimit import enforce
from service.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys")


@bp.post("")
@endpoint(
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    auth=True,
    errors=(401, 429, 503),
    tags=["api-keys"],
)
async def create_key(body: ApiKeyCreate) -> ApiKeyCreated:
    """Issue an API key (needs a session token). The key is in this response only."""
    caller = await authenticate_session()
    await enforce("write", caller.rate_key, db.resources().settings.rate_limit_write)
    row, key = await issue_key(db.session(), user_id=caller.user.id, name=body.name)
    return ApiKeyCreated(**ApiKeyPublic.model_validate(row).model_dump(), key=key)


@bp.get("")
@endpoint(response=ApiKeyList, auth=True, errors=(401, 503), tags=["api-keys"])
async def list_keys() -> ApiKeyList:
    """The caller's live keys, without their secrets."""
    caller = await authenticate_session()
    rows = await keys_of(db.session(), caller.user.id)
    return ApiKeyList(api_keys=[ApiKeyPublic.model_validate(row) for row in rows])


@bp.delete("/<id:key_id>")
@endpoint(status=204, auth=True, errors=(401, 404, 429, 503), tags=["api-keys"])
async def delete_key(key_id: int) -> None:
    """Revoke one of the caller's keys; it stops working immediately."""
    caller = await authenticate_session()
    await enforce("write", caller.rate_key, db.resources().settings.rate_limit_write)
    if not await revoke_key(db.session(), user_id=caller.user.id, key_id=key_id):
        raise APIError(404, "not_found", f"You have no live API key {key_id}.")
