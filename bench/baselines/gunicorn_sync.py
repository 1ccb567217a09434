"""Baseline: the guides' stack. Sync Flask on gunicorn's ``gthread`` worker (32 threads),
SQLAlchemy with psycopg (3) and a ``QueuePool`` of the same size as Newsdesk's, sync redis-py.
``gunicorn -k gthread --threads 32 -w 1 bench.baselines.gunicorn_sync:app``.

The fan-out ``gather`` probe runs its three queries on a thread pool: a sync app's only way
to overlap them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, Response, abort, jsonify
from redis import Redis
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench.probes import (
    CACHE_TTL,
    FANOUT,
    FANOUT_IDS,
    SLOW,
    cache_key,
    item_by_id,
    item_json,
    pool_size,
)

app = Flask(__name__)
engine = create_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
    pool_size=pool_size(),
    max_overflow=5,
)
redis = Redis.from_url(os.environ["REDIS_URL"], max_connections=64)
fanout_pool = ThreadPoolExecutor(max_workers=16)


def _item(item_id: int) -> dict[str, object] | None:
    with Session(engine) as session:
        row = session.execute(item_by_id, {"id": item_id}).first()
    return None if row is None else {"id": row.id, "name": row.name}


def _fanout_one(item_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(FANOUT, {"id": item_id}).one().name)


@app.get("/bench/hello")
def hello() -> Response:
    return jsonify(message="hello")


@app.get("/bench/items/<int:item_id>")
def item(item_id: int) -> Response:
    found = _item(item_id)
    if found is None:
        abort(404)
    return jsonify(found)


@app.get("/bench/slow")
def slow() -> Response:
    with engine.connect() as conn:
        conn.execute(SLOW)
    return jsonify(slept_ms=50)


@app.get("/bench/fanout/seq")
def fanout_seq() -> Response:
    return jsonify(names=[_fanout_one(i) for i in FANOUT_IDS])


@app.get("/bench/fanout/gather")
def fanout_gather() -> Response:
    return jsonify(names=list(fanout_pool.map(_fanout_one, FANOUT_IDS)))


@app.get("/bench/cached/<int:item_id>")
def cached(item_id: int) -> Response:
    body: bytes | None = redis.get(cache_key(item_id))  # type: ignore[assignment]
    if body is None:
        found = _item(item_id)
        if found is None:
            abort(404)
        body = item_json(item_id, str(found["name"]))
        redis.set(cache_key(item_id), body, ex=CACHE_TTL)
    return Response(body, mimetype="application/json")
