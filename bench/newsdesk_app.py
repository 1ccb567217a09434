"""Newsdesk's serving model with the benchmark probes: ``bench.newsdesk_app:app``.

The probes are a blueprint on the real application (``create_app``), served by the real
adapter (``service.asgi``): the request session, pool, Redis client and hooks are the
product's own.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from bench.probes import AsyncProbes, item_by_id
from service.asgi import asgi_app
from service.core.logs import configure_logging
from service.core.settings import Settings
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
