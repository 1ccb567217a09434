"""OpenTelemetry tracing: off unless configured, by the standard ``OTEL_*`` variables.

**On or off.** Tracing is on in a process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER`` (other than ``none``) is
set and ``OTEL_SDK_DISABLED`` is not ``true``; ``setup`` decides once, at start-up. These
variables are read from the process environment, as every OpenTelemetry SDK reads them (not
from ``.env``). ``start`` returns what the process's ``Runtime`` holds (``runtime.tracing``,
also on its ``Resources`` and in a job's ``ctx["tracing"]``): ``Tracing`` when on, ``OFF``
when not. ``OFF`` imports nothing of OpenTelemetry and its methods (``traceparent``,
``job_span``, ``middleware``) return at once; the API process then loads no OpenTelemetry
module at all.

**What is traced** when on:

- every HTTP request: a server span at the ASGI level (``Tracing.middleware``, the outermost
  layer, so cache hits answered before Flask are traced too), named ``<METHOD> <route
  template>`` once the route is known (never the raw path), continuing the caller's
  ``traceparent`` header if it sends one;
- every PostgreSQL statement (the asyncpg instrumentation) and Redis command (the redis
  instrumentation, ``redis.asyncio`` included), as children of whatever span is current. The
  request's greenlet shares its task's context (``service.greenlet_asgi.bridge``), and asyncpg and
  Redis calls are awaited by the task itself, so they land under the request's span. (The
  SQLAlchemy instrumentation is not used: it refuses SQLAlchemy 2.1.) Statement parameters
  and Redis arguments are not recorded, only the SQL text and the command name;
- every arq job: ``service.infra.queue.enqueue`` adds the current span's W3C
  ``traceparent`` to the job's keywords, and ``service.jobs.runner.job`` runs the job inside
  a consumer span (``Tracing.job_span``) whose parent is that context, so the job's own SQL
  and Redis spans join the trace of the request that enqueued it.

**Configuration** is the SDK's: ``OTEL_SERVICE_NAME`` (default ``newsdesk-api`` for the API,
``newsdesk-worker`` for the worker), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``
and ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*`` (batching), ``OTEL_EXPORTER_OTLP_*``
(endpoint, headers, timeout, protocol), ``OTEL_PROPAGATORS`` for incoming requests.
``OTEL_TRACES_EXPORTER`` is a comma-separated list: ``otlp`` (default; OTLP over HTTP with
protobuf, or gRPC when ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` and
``opentelemetry-exporter-otlp-proto-grpc`` is installed), ``console``, or any exporter
registered under the ``opentelemetry_traces_exporter`` entry point.

With tracing on, JSON log lines carry ``trace_id`` and ``span_id`` (``service.core.logs``)
and access lines the trace id of their request (``TRACE_SCOPE_KEY``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from service.core import logs
from service.core.types import ROUTE_SCOPE_KEY, ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

API_SERVICE = "newsdesk-api"
WORKER_SERVICE = "newsdesk-worker"

# The job keyword that carries the enqueueing span's context (W3C trace context).
TRACEPARENT = "traceparent"
# Where the tracing middleware leaves the request's trace id in the ASGI scope, for the access
# log line Hypercorn writes after the request's context is gone (``service.web.access_log``).
TRACE_SCOPE_KEY = "newsdesk.trace_id"

_TRUE = ("true", "1", "yes", "on")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables of ``environ`` ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = _exporter_names(environ)
    return bool(exporters) and exporters != ["none"]


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names:
        return names
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return ["otlp"]
    return []


def start(
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Tracing:
    """Tracing for this process if ``environ`` asks for it (or an ``exporter`` is given, for
    tests: its spans are exported synchronously as each ends), else ``OFF``.
    ``service_name`` is the default for ``OTEL_SERVICE_NAME``. Call it once per process (the
    ``Runtime`` does): the instrumentations it turns on are the process's."""
    if exporter is None and not wanted(environ):
        return OFF

    from opentelemetry import trace
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for name in _exporter_names(environ):
            if name != "none":
                provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
        # The global provider, for any library that traces by itself; set once per process.
        trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=provider)
    logs.trace_ids = _current_ids
    log.info("tracing on: service %s", resource.attributes.get(SERVICE_NAME))
    return Tracing(provider)


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """The exporter ``OTEL_TRACES_EXPORTER`` names, as the SDK's auto-configuration finds it."""
    from importlib.metadata import entry_points

    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER: no trace exporter named {name!r} is installed "
            "(otlp over HTTP and console are)"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def _current_ids() -> tuple[str, str] | None:
    """Hex trace and span ids of the current span, for log lines (``service.core.logs``)."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class Tracing:
    """Tracing on, exporting through ``provider`` (made by ``start``), or off (``OFF``: no
    provider, nothing traced, nothing of OpenTelemetry imported)."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: Tracer | None = provider.get_tracer(__name__) if provider else None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` inside OpenTelemetry's ASGI middleware (one server span per request); ``app``
        itself when off."""
        if self.provider is None:
            return app
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        traced = OpenTelemetryMiddleware(
            _RouteNamedSpan(app),
            default_span_details=_span_details,
            tracer_provider=self.provider,
            # One span per request, not one more per body chunk sent or received.
            exclude_spans=["receive", "send"],
        )
        return cast(ASGIApp, traced)

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the current span, to hand to a job; None when off or no
        span is current."""
        if self.provider is None:
            return None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        return carrier.get(TRACEPARENT)

    @contextlib.contextmanager
    def job_span(
        self,
        function: str,
        parent: str | None,
        *,
        job_id: str,
        job_try: int,
        expected: tuple[type[BaseException], ...] = (),
    ) -> Iterator[None]:
        """Run the body in a consumer span ``<function> process`` whose parent is the
        ``traceparent`` ``parent`` (a new trace without one, e.g. a cron job). An exception of
        an ``expected`` class (arq's ``Retry``) is recorded but does not mark the span as
        failed. Nothing when off."""
        if self.tracer is None:
            yield
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = TraceContextTextMapPropagator().extract({TRACEPARENT: parent} if parent else {})
        with self.tracer.start_as_current_span(
            f"{function} process",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "arq",
                "messaging.operation.type": "process",
                "messaging.message.id": job_id,
                "arq.job.function": function,
                "arq.job.try": job_try,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.record_exception(exc)
                if not isinstance(exc, expected):
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def shutdown(self) -> None:
        """Flush and stop tracing, undo the instrumentations (the runtime's close)."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        logs.trace_ids = None
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
        RedisInstrumentor().uninstrument()
        self.provider.shutdown()


OFF = Tracing(None)


# --- requests ----------------------------------------------------------------------------------


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The server span's first name: the method alone. The raw path would make a name per
    URL; ``_RouteNamedSpan`` renames the span once the route template is known."""
    return str(scope.get("method") or "HTTP"), {}


class _RouteNamedSpan:
    """Inside the server span: names it ``<METHOD> <route template>`` with ``http.route``
    when a route matched, and leaves the trace id in the scope for the access log.

    The renaming happens as the response starts: the route is known by then (Flask and the
    fast path write it before answering), and OpenTelemetry's middleware ends the span with
    the last body message, before the application returns."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        context = span.get_span_context()
        if not context.is_valid:
            await self.app(scope, receive, send)
            return
        scope[TRACE_SCOPE_KEY] = format(context.trace_id, "032x")

        async def send_naming_span(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get(ROUTE_SCOPE_KEY)
                if route and span.is_recording():
                    span.update_name(f"{scope.get('method', 'HTTP')} {route}")
                    span.set_attribute("http.route", route)
            await send(message)

        await self.app(scope, receive, send_naming_span)
