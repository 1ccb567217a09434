"""service.jobs.runner with tracing: a job runs in a consumer span whose parent is the
``traceparent`` it was enqueued with; a ``Retry`` does not mark the span failed, an error does;
with tracing off the keyword is accepted and ignored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from arq import Retry
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service.core.logs import current_job_id
from service.infra import tracing
from service.jobs.runner import job

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@job
async def echo(ctx: dict[str, Any], value: int) -> tuple[int, str | None]:
    return value, current_job_id.get()


@job
async def retry_later(ctx: dict[str, Any]) -> None:
    raise Retry(defer=1)


@job
async def broken(ctx: dict[str, Any]) -> None:
    raise ValueError("broken")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> Iterator[tracing.Tracing]:
    """Tracing on, as the worker's runtime puts it in each job's ctx."""
    on = tracing.start(tracing.WORKER_SERVICE, exporter=exporter)
    assert on.enabled
    yield on
    on.shutdown()


async def test_off_the_traceparent_is_accepted_and_ignored() -> None:
    ctx = {"job_id": "echo-1", "job_try": 1}  # no "tracing": off
    assert await echo(ctx, 5, request_id="r1", traceparent=TRACEPARENT) == (5, "echo-1")
    assert await echo(ctx, 6) == (6, "echo-1")  # a job enqueued before tracing existed


async def test_a_job_continues_the_trace_it_was_enqueued_in(
    exporter: InMemorySpanExporter, traced: tracing.Tracing
) -> None:
    ctx = {"job_id": "echo-2", "job_try": 2, "tracing": traced}
    assert await echo(ctx, 7, request_id="r2", traceparent=TRACEPARENT) == (7, "echo-2")
    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("echo process", SpanKind.CONSUMER)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    attributes = span.attributes or {}
    assert attributes["messaging.message.id"] == "echo-2" and attributes["arq.job.try"] == 2
    assert span.resource.attributes["service.name"] == "newsdesk-worker"


async def test_without_a_traceparent_a_job_starts_a_trace(
    exporter: InMemorySpanExporter, traced: tracing.Tracing
) -> None:
    await echo({"job_id": "cron:flush", "tracing": traced}, 1)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


async def test_a_retry_is_not_a_failure_and_an_error_is(
    exporter: InMemorySpanExporter, traced: tracing.Tracing
) -> None:
    with pytest.raises(Retry):
        await retry_later({"job_id": "r", "tracing": traced}, traceparent=TRACEPARENT)
    with pytest.raises(ValueError):
        await broken({"job_id": "b", "tracing": traced}, traceparent=TRACEPARENT)
    retried, failed = exporter.get_finished_spans()
    assert retried.status.status_code == StatusCode.UNSET
    assert [event.name for event in retried.events] == ["exception"]
    assert failed.status.status_code == StatusCode.ERROR
