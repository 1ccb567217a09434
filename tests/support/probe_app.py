"""The application under test: Newsdesk plus a test-only ``/_test`` blueprint of probes.

Served by a real Hypercorn (``tests.support.probe_app:app``), configured from the
environment like production.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context
from pydantic import BaseModel
from sqlalchemy import event, text

from service.asgi import asgi_app
from service.core.errors import NotFound
from service.core.logs import configure_logging
from service.core.request_id import current_request_id
from service.core.settings import Settings
from service.greenlet_asgi import drain
from service.greenlet_asgi.bridge import await_
from service.web import context
from service.web.app import app_resources, create_app

probes = Blueprint("probes", __name__, url_prefix="/_test")
_gates: dict[str, asyncio.Event] = {}


def _gate(name: str) -> asyncio.Event:
    return _gates.setdefault(name, asyncio.Event())


@probes.get("/echo")
async def echo() -> Response:
    """Stores the caller's value in ``g``, yields to other requests, then reads it back."""
    g.value = request.args["value"]
    await asyncio.sleep(random.uniform(0, 0.05))
    return jsonify(
        arg=request.args["value"],
        g=g.value,
        header=request.headers.get("X-Probe"),
        request_id=current_request_id.get(),
    )


@probes.get("/query")
async def query() -> Response:
    pid = (await context.db_session().execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return jsonify(pid=pid)


@probes.get("/sleep")
async def sleep_in_database() -> Response:
    seconds = float(request.args.get("seconds", "5"))
    await context.db_session().execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return jsonify(slept=seconds)


@probes.post("/block")
def block_the_loop() -> Response:
    """Holds the event loop for ``ms`` milliseconds: a sync view runs on the loop's thread."""
    ms = min(float(request.args.get("ms", "100")), 5000.0)
    time.sleep(ms / 1000)
    return jsonify(blocked_ms=ms)


@probes.post("/drain")
def begin_draining() -> Response:
    """Starts this worker's drain as its master does on SIGTERM (a long grace: nothing is cut
    while the test runs)."""
    drain.begin(600)
    return jsonify(draining=True)


@probes.get("/pool")
def pool_status() -> Response:
    engine = context.app_state(current_app).resources.engine
    return jsonify(checked_out=engine.pool.checkedout())  # type: ignore[union-attr]


@probes.get("/stream")
def stream() -> Response:
    """Sends ``first``, waits until ``/_test/open/<gate>`` is called, then sends ``second``."""
    gate = request.args["gate"]

    def generate() -> Iterator[bytes]:
        yield b"first\n"
        await_(asyncio.wait_for(_gate(gate).wait(), 30))
        yield b"second\n"

    return Response(generate(), mimetype="text/plain")


@probes.get("/stream-then-fail")
def stream_then_fail() -> Response:
    def generate() -> Iterator[bytes]:
        yield b"partial\n"
        raise RuntimeError("broken mid-stream")

    return Response(stream_with_context(generate()), mimetype="text/plain")


@probes.post("/open/<gate>")
def open_gate(gate: str) -> Response:
    _gate(gate).set()
    return jsonify(opened=gate)


@probes.get("/boom")
async def boom() -> Response:
    raise RuntimeError("secret detail that must not leak")


@probes.post("/body")
def body() -> Response:
    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest())


@probes.post("/lines")
def lines() -> Response:
    return jsonify(lines=[line.decode() for line in request.stream])


class Item(BaseModel):
    name: str
    count: int


@probes.post("/items")
async def create_item() -> tuple[Response, int]:
    """Validates with pydantic, inserts, then fails if asked: the insert must roll back."""
    item = Item.model_validate(request.get_json())
    await context.db_session().execute(
        text("INSERT INTO probe_items (name, count) VALUES (:name, :count)"), item.model_dump()
    )
    if request.args.get("fail") == "1":
        raise RuntimeError("failure after the insert")
    return jsonify(item.model_dump()), 201


# A deferred constraint trigger that ends its own backend at COMMIT: the connection dies while
# the COMMIT is in flight, as in a crash or a failover at that moment (nothing is committed).
DIE_AT_COMMIT = (
    "CREATE FUNCTION pg_temp.die() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
    "RETURN NULL; END $$",
    "CREATE TEMP TABLE doomed (x int)",
    "CREATE CONSTRAINT TRIGGER die AFTER INSERT ON doomed DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION pg_temp.die()",
    "INSERT INTO doomed VALUES (1)",
)


@probes.route("/lose-connection", methods=["GET", "POST"])
async def lose_connection() -> tuple[Response, int]:
    """Queries (a POST inserts ``name`` into probe_items first), then has the request's backend
    terminated and waits until the driver has seen its connection close, so the after-request
    hook meets a dead connection; answers ``status``. ``at=commit`` instead arranges for the
    backend to end itself while the COMMIT runs."""
    session = context.db_session()
    if request.method == "POST":
        await session.execute(
            text("INSERT INTO probe_items (name, count) VALUES (:name, 0)"),
            {"name": request.args["name"]},
        )
    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    if request.args.get("at") == "commit":
        for statement in DIE_AT_COMMIT:
            await session.execute(text(statement))
    else:
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        engine = context.app_state(current_app).resources.engine
        async with engine.connect() as other:  # type: ignore[union-attr]
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(1000):  # asyncpg reads the close within milliseconds; 10 s at most
            if raw.is_closed():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
    status = int(request.args.get("status", "200"))
    if status == 404:
        raise NotFound("nothing here")
    return jsonify(pid=pid), status


@probes.get("/environ")
def environ() -> Response:
    keys = [
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "SERVER_PROTOCOL",
        "HTTP_X_MULTI",
    ]
    found: dict[str, Any] = {key: request.environ.get(key) for key in keys}
    found["args"] = request.args.to_dict(flat=False)
    found["headers"] = {
        key: value
        for key, value in request.environ.items()
        if key.startswith("HTTP_") or key in ("CONTENT_LENGTH", "CONTENT_TYPE")
    }
    return jsonify(found)


_article_reads: Counter[int] = Counter()


def _logged_article_read(query: Any) -> None:
    if "FROM articles JOIN users" in query.query and "WHERE articles.id = " in query.query:
        _article_reads[int(query.args[0])] += 1


def _count_article_reads(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Counts single-article reads (the cache's fills) per article id, as each pooled
    connection runs them: asyncpg's query logger, added at a connection's first checkout
    after the app started, sees what SQLAlchemy sends and what the driver reads
    (``service.infra.driver_reads``) send alike."""
    if not record.info.get("counting_article_reads"):
        dbapi_connection.driver_connection.add_query_logger(_logged_article_read)
        record.info["counting_article_reads"] = True


@probes.get("/article-reads/<int:article_id>")
def article_reads(article_id: int) -> Response:
    return jsonify(reads=_article_reads[article_id])


_select_ones = 0


def _count_select_one(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Counts ``SELECT 1`` statements: the readiness check's (``service.infra.health``)."""
    global _select_ones
    if statement.strip() == "SELECT 1":
        _select_ones += 1


@probes.get("/select-ones")
def select_ones() -> Response:
    return jsonify(count=_select_ones)


_flask_requests = 0


def _count_flask_request() -> None:
    global _flask_requests
    _flask_requests += 1


@probes.get("/flask-requests")
def flask_requests() -> Response:
    """How many requests reached Flask (the fast path answers some without it)."""
    return jsonify(requests=_flask_requests)


@probes.get("/cache-stats")
def cache_stats() -> Response:
    return jsonify(context.app_state(current_app).resources.cache.stats.snapshot())  # type: ignore[union-attr]


def build() -> Any:
    settings = Settings()
    configure_logging(settings.log_level)
    flask_app = create_app(settings)
    flask_app.register_blueprint(probes)
    flask_app.before_request(_count_flask_request)
    res = app_resources(flask_app)
    start = res.start

    async def start_and_count() -> None:
        await start()
        assert res.engine is not None
        event.listen(res.engine.sync_engine.pool, "checkout", _count_article_reads)
        for engine in {res.engine, res.read_engine}:
            assert engine is not None
            event.listen(engine.sync_engine, "before_cursor_execute", _count_select_one)

    res.start = start_and_count  # type: ignore[method-assign]
    return asgi_app(flask_app)


app = build()
