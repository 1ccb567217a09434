"""Newsdesk's serving model with the benchmark probes: ``bench.newsdesk_app:app``.

The probes are a blueprint on the real application (``create_app``), served by the real
adapter (``service.asgi``): the request session, pool and hooks are the product's own.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from bench.probes import item_by_id
from service import db
from service.app import create_app
from service.asgi import asgi_app
from service.logs import configure_logging
from service.settings import Settings

probes = Blueprint("bench", __name__, url_prefix="/bench")


@probes.get("/hello")
async def hello() -> Response:
    return jsonify(message="hello")


@probes.get("/items/<int:item_id>")
async def item(item_id: int) -> Response:
    row = (await db.read_session().execute(item_by_id, {"id": item_id})).first()
    if row is None:
        abort(404)
    return jsonify(id=row.id, name=row.name)


settings = Settings()
configure_logging("WARNING")
flask_app = create_app(settings)
flask_app.register_blueprint(probes)
app = asgi_app(flask_app)
