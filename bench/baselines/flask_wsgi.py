"""Baseline: Flask's default async path, served by Hypercorn as a plain WSGI app.

Hypercorn runs a WSGI app in a thread pool; Flask's ``async_to_sync`` (asgiref) then runs each
async view in a new event loop. A pooled engine would hand a connection made on one loop to
another ("attached to a different loop"), so this mode needs ``NullPool``: a new PostgreSQL
connection per request. ``hypercorn bench.baselines.flask_wsgi:app``.
"""

from __future__ import annotations

from flask import Flask, Response, abort, jsonify
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from bench.probes import database_url, item_by_id

app = Flask(__name__)
engine = create_async_engine(database_url(), poolclass=NullPool)


@app.get("/bench/hello")
async def hello() -> Response:
    return jsonify(message="hello")


@app.get("/bench/items/<int:item_id>")
async def item(item_id: int) -> Response:
    async with AsyncSession(engine) as session:  # the same work as Newsdesk's request session
        row = (await session.execute(item_by_id, {"id": item_id})).first()
    if row is None:
        abort(404)
    return jsonify(id=row.id, name=row.name)
