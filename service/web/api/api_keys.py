"""API keys: issue (shown once), list (no secrets), revoke (effective at once)."""

from __future__ import annotations

import functools

from flask import Blueprint

from service.core import routes
from service.core.errors import NotFound
from service.domain.api_keys import issue_key, keys_of, revoke_key
from service.domain.callers import Caller
from service.domain.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic
from service.web import context
from service.web.endpoint import Link, endpoint

bp = Blueprint("api_keys", __name__, url_prefix=routes.API_KEYS)
REVOKE = Link(
    operation_id="delete_api_key",
    parameters={"key_id": "$response.body#/id"},
    description="Revoke the key created.",
)
# Every key operation takes a session token (an API key cannot mint or list keys).
key_endpoint = functools.partial(endpoint, auth="session", tags=["api-keys"])


@bp.post("")
@key_endpoint(
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    rate="write",
    errors=(401, 409, 429, 503),
    operation_id="create_api_key",
    links={"DeleteApiKey": REVOKE},
)
async def create_key(body: ApiKeyCreate, caller: Caller) -> ApiKeyCreated:
    """Issue an API key (needs a session token). The key is in this response only.

    A user holds at most MAX_API_KEYS_PER_USER live keys: past it, 409 `too_many_api_keys`.
    """
    row, key = await issue_key(
        context.db_session(),
        user_id=caller.user.id,
        name=body.name,
        limit=context.settings().max_api_keys_per_user,
    )
    return ApiKeyCreated(**ApiKeyPublic.model_validate(row).model_dump(), key=key)


@bp.get("")
@key_endpoint(response=ApiKeyList, errors=(401, 503), operation_id="list_api_keys")
async def list_keys(caller: Caller) -> ApiKeyList:
    """The caller's live keys, without their secrets."""
    rows = await keys_of(context.db_session(), caller.user.id)
    return ApiKeyList(api_keys=[ApiKeyPublic.model_validate(row) for row in rows])


@bp.delete("/<id:key_id>")
@key_endpoint(status=204, rate="write", errors=(401, 404, 429, 503), operation_id="delete_api_key")
async def delete_key(key_id: int, caller: Caller) -> None:
    """Revoke one of the caller's keys; it stops working immediately."""
    if not await revoke_key(context.db_session(), user_id=caller.user.id, key_id=key_id):
        raise NotFound(f"You have no live API key {key_id}.")
