"""service.infra.tracing: off unless OTEL_* asks (and then nothing of OpenTelemetry is loaded),
and, with an in-memory exporter, one request that writes an article gives one trace holding
the server span, its SQL and Redis spans, and the processing job run by a real arq worker
with its own SQL and Redis spans."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from arq.connections import RedisSettings
from arq.jobs import Job
from arq.worker import Worker
from hypercorn.asyncio import serve
from hypercorn.config import Config
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.asgi import build
from service.cli.embedded import free_port
from service.core import logs
from service.core.settings import Settings
from service.core.types import ASGIApp, Receive, Scope, Send
from service.infra import tracing
from service.infra.queue import enqueue, queue_of
from service.infra.resources import Resources
from tests.support.api import account
from tests.support.databases import ROOT, ServerStack


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_asks(environ: dict[str, str], expected: bool) -> None:
    assert tracing.wanted(environ) is expected


def test_off_it_adds_nothing() -> None:
    off = tracing.start(tracing.API_SERVICE, environ={})
    assert off is tracing.OFF and not off.enabled
    assert off.traceparent() is None
    with off.job_span("ping", None, job_id="j", job_try=1):
        pass
    assert off.middleware(answer) is answer


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that is never called."""


def _api_process(**otel: str) -> dict[str, Any]:
    """What importing ``service.asgi`` (the API's import) loads, in a fresh interpreter."""
    code = (
        "import json, sys, service.asgi\n"
        "app = service.asgi.app.built()\n"  # what Hypercorn's lifespan start-up does first
        "print(json.dumps({'otel': sorted(m for m in sys.modules if m.startswith('opentelemetry')),"
        " 'app': type(app).__name__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"ENV": "test", "METRICS_ENABLED": "false", **otel})
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_the_api_process_loads_no_opentelemetry_when_off() -> None:
    off = _api_process()
    assert off["otel"] == []
    on = _api_process(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="newsdesk-probe")
    assert on["app"] == "OpenTelemetryMiddleware"
    assert "opentelemetry.instrumentation.asyncpg" in on["otel"]


# --- enqueueing ----------------------------------------------------------------------------


async def enqueued_kwargs(
    settings: Settings, job_id: str, traced: tracing.Tracing = tracing.OFF
) -> dict[str, Any]:
    """Enqueue ``ping`` through ``service.infra.queue.enqueue`` from resources carrying
    ``traced`` (as the runtime's do); the keywords arq stored."""
    resources = Resources(settings, application_name="tracing-test")
    resources.tracing = traced
    await resources.start()
    try:
        assert resources.redis is not None
        assert await enqueue(resources, "ping", job_id=job_id)
        info = await Job(job_id, resources.redis).info()
        assert info is not None
        await resources.redis.delete(f"arq:job:{job_id}")
        await resources.redis.zrem(queue_of("ping"), job_id)
        return dict(info.kwargs)
    finally:
        await resources.close()


async def test_off_a_job_carries_no_traceparent(settings: Settings) -> None:
    kwargs = await enqueued_kwargs(settings, "tracing-off-1")
    assert set(kwargs) == {"request_id"}


async def test_on_a_job_carries_the_current_span(
    exporter: InMemorySpanExporter, traced: tracing.Tracing, settings: Settings
) -> None:
    with traced.job_span("caller", None, job_id="caller-1", job_try=1):
        kwargs = await enqueued_kwargs(settings, "tracing-on-1", traced)
    (caller,) = [s for s in exporter.get_finished_spans() if s.name == "caller process"]
    context = caller.context
    assert kwargs[tracing.TRACEPARENT] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )


# --- one request, one trace --------------------------------------------------------------


class Captured(logging.Handler):
    """JSON lines as the application's handler would write them, kept in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []
        self.addFilter(logs.RequestIdFilter())
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> Iterator[tracing.Tracing]:
    """Tracing on, exporting to ``exporter``, as a runtime holds it."""
    on = tracing.start(tracing.API_SERVICE, exporter=exporter)
    assert on.enabled
    yield on
    on.shutdown()


@pytest.fixture
def settings(stack: ServerStack) -> Settings:
    base, _, _ = stack.redis_url.rpartition("/")
    return Settings(
        env="test",
        database_url=stack.database_url,
        redis_url=f"{base}/7",  # a queue of its own: the burst worker runs only this test's jobs
        metrics_enabled=False,
    )


@asynccontextmanager
async def served(app: ASGIApp, access: logging.Logger) -> AsyncIterator[str]:
    """``app`` served by Hypercorn on this test's event loop, on a loopback port."""
    config = Config()
    config.bind = [f"127.0.0.1:{free_port()}"]
    config.accesslog = access
    config.errorlog = access
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    url = f"http://{config.bind[0]}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in range(300):
                if task.done():
                    task.result()
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the in-process server did not start")
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def run_queued_jobs(settings: Settings, traced: tracing.Tracing) -> None:
    """A burst arq worker with the project's job functions: runs what is queued, then ends."""
    from service.jobs.worker import WorkerSettings

    resources = Resources(settings, application_name="newsdesk-worker")
    await resources.start()

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["resources"] = resources
        ctx["tracing"] = traced

    worker = Worker(
        functions=WorkerSettings.functions,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        burst=True,
        handle_signals=False,
        on_startup=startup,
        poll_delay=0.05,
    )
    try:
        await asyncio.wait_for(worker.main(), 120)
    finally:
        with warnings.catch_warnings():  # arq closes its pool with redis-py's deprecated close()
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()
        await resources.close()


def system(span: ReadableSpan) -> str | None:
    attributes = span.attributes or {}
    found = attributes.get("db.system") or attributes.get("db.system.name")
    return str(found) if found else None


def under(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    """Whether ``ancestor`` is on ``span``'s chain of parents."""
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


async def test_a_write_and_its_job_form_one_trace(
    exporter: InMemorySpanExporter, traced: tracing.Tracing, settings: Settings
) -> None:
    captured = Captured()
    access = logging.getLogger("tests.tracing.access")
    access.addHandler(captured)
    access.propagate = False
    root = logging.getLogger()
    root.addHandler(captured)
    try:
        # Tracing on: the OpenTelemetry middleware is outermost.
        app = build(settings, tracing=traced)
        async with served(app, access) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            ann = await account(http)
            exporter.clear()
            written = await http.post(
                "/api/v1/articles",
                json={"title": "Ferries", "content": "Ferries run every ten minutes."},
                headers=ann.api_key,
            )
            assert written.status_code == 201, written.text
            article_id = written.json()["id"]
            await run_queued_jobs(settings, traced)
            # Two reads: the second is a cache hit, answered before Flask by the fast path.
            reads = [await http.get(f"/api/v1/articles/{article_id}") for _ in range(2)]
            assert reads[1].headers.get("X-Cache") == "HIT"
            for _ in range(200):  # a server span ends just after its response is sent
                if sum(s.kind == SpanKind.SERVER for s in exporter.get_finished_spans()) == 3:
                    break
                await asyncio.sleep(0.05)
    finally:
        root.removeHandler(captured)
        access.removeHandler(captured)

    spans = exporter.get_finished_spans()
    servers = sorted(
        (s for s in spans if s.kind == SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    # Named by route template, never by raw path, cache hits included.
    assert [s.name for s in servers] == ["POST /api/v1/articles"] + [
        "GET /api/v1/articles/<id:article_id>"
    ] * 2
    server = servers[0]
    assert (server.attributes or {}).get("http.route") == "/api/v1/articles"
    assert server.resource.attributes["service.name"] == "newsdesk-api"
    trace_id = server.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}
    assert all(under(s, server, by_id) for s in in_trace if s is not server)

    # The request's own SQL (the INSERT) and Redis calls (the enqueue) are in the trace.
    request_side = [s for s in in_trace if s.parent == server.context and s.kind == SpanKind.CLIENT]
    assert any(s.name == "INSERT" for s in request_side if system(s) == "postgresql")
    assert any(system(s) == "redis" for s in request_side)

    # The job: a consumer span under the request, with SQL and Redis spans of its own.
    jobs = [s for s in in_trace if s.kind == SpanKind.CONSUMER]
    assert [s.name for s in jobs] == ["process_article process"]
    job = jobs[0]
    assert (job.attributes or {})["messaging.message.id"] == f"process:{article_id}:1"
    in_job = [s for s in in_trace if under(s, job, by_id)]
    assert {"postgresql", "redis"} <= {system(s) for s in in_job}
    assert any(s.name == "UPDATE" for s in in_job if system(s) == "postgresql")
    # Statement parameters are not recorded.
    assert not any("db.statement.parameters" in (s.attributes or {}) for s in spans)

    # Log lines carry the trace: the job's line and the request's access line.
    hex_id = format(trace_id, "032x")
    done = [line for line in captured.lines if line["message"].startswith(f"article {article_id} ")]
    assert done and done[-1]["trace_id"] == hex_id and done[-1]["span_id"]
    posted = [
        line
        for line in captured.lines
        if line["logger"] == "tests.tracing.access" and line.get("route") == "/api/v1/articles"
    ]
    assert [line["trace_id"] for line in posted] == [hex_id]
