"""Newsdesk's serving model with the benchmark probes: ``bench.newsdesk_app:app``.

The probes are a blueprint on the real application (``create_app``), served by the real
adapter (``service.asgi``): the request session, pool, Redis client and hooks are the
product's own.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify

from bench.probes import ITEM_SQL, AsyncProbes, item_by_id
from service.asgi import asgi_app
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.infra.driver_reads import Query
from service.web import context
from service.web.app import create_app

probes = Blueprint("bench", __name__, url_prefix="/bench")


def _probes() -> AsyncProbes:
    engine = context.resources().engine
    assert engine is not None
    return AsyncProbes(engine)


@probes.get("/hello")
async def hello() -> Response:
    return jsonify(message="hello")


@probes.get("/items/<int:item_id>")
async def item(item_id: int) -> Response:
    row = (await context.read_db_session().execute(item_by_id, {"id": item_id})).first()
    if row is None:
        abort(404)
    return jsonify(id=row.id, name=row.name)


# The same primary-key read by the other ways there are (the lab's "database path" claim,
# bench/lab/dbpath.py); /bench/items/<id> above is the ORM session's.


@probes.get("/core-tx/<int:item_id>")
async def item_core_transaction(item_id: int) -> Response:
    """A Core connection of the pool, in its transaction: BEGIN, SELECT, ROLLBACK."""
    async with context.clients().engine.connect() as conn:
        row = (await conn.execute(item_by_id, {"id": item_id})).first()
    return _item(row)


@probes.get("/core-auto/<int:item_id>")
async def item_core_autocommit(item_id: int) -> Response:
    """A Core statement in autocommit (``Reads.execute``): the SELECT alone, SQLAlchemy's
    statement and result work around it."""
    return _item((await context.reads().execute(item_by_id, {"id": item_id})).first())


ITEM_QUERY = Query(item_by_id)


@probes.get("/reads/<int:item_id>")
async def item_reads(item_id: int) -> Response:
    """Newsdesk's read path for its hottest reads (``Reads.row``): the query compiled once,
    run by asyncpg on the pool's connection, errors mapped as SQLAlchemy maps them."""
    return _item(await context.reads().row(ITEM_QUERY, id=item_id))


@probes.get("/driver/<int:item_id>")
async def item_driver(item_id: int) -> Response:
    """asyncpg's own ``fetchrow`` on the pool's driver connection: no SQLAlchemy statement
    or result processing (asyncpg prepares and caches the statement per connection)."""
    async with context.clients().engine.connect() as conn:
        raw = await conn.get_raw_connection()
        row = await raw.driver_connection.fetchrow(ITEM_SQL, item_id)  # type: ignore[union-attr]
    return _item(row)


def _item(row: Any) -> Response:
    if row is None:
        abort(404)
    return jsonify(id=row[0], name=row[1])  # a Row or an asyncpg Record: (id, name)


@probes.get("/slow")
async def slow() -> Response:
    return jsonify(await _probes().slow())


@probes.get("/fanout/seq")
async def fanout_seq() -> Response:
    return jsonify(await _probes().fanout_seq())


@probes.get("/fanout/gather")
async def fanout_gather() -> Response:
    return jsonify(await _probes().fanout_gather())


@probes.get("/cached/<int:item_id>")
async def cached(item_id: int) -> Response:
    redis = context.resources().redis
    assert redis is not None
    body = await _probes().cached(redis, item_id)
    if body is None:
        abort(404)
    return Response(body, mimetype="application/json")


settings = Settings()
configure_logging("WARNING")
flask_app = create_app(settings)
flask_app.register_blueprint(probes)
app = asgi_app(flask_app)
