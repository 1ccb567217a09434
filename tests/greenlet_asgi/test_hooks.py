"""service.greenlet_asgi.hooks: what the adapter leaves to the application. Without Newsdesk's
hooks it chooses its own request ids and error bodies; with them (``service.asgi.HOOKS``) it
answers as Newsdesk does; either way it loads nothing else of ``service``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from werkzeug.exceptions import HTTPException

from service.asgi import HOOKS
from service.core.errors import envelope_bytes
from service.core.request_id import current_request_id
from service.greenlet_asgi.adapter import GreenletASGI
from service.greenlet_asgi.body import BodyRate
from service.greenlet_asgi.hooks import Hooks
from service.greenlet_asgi.types import Message

SEEN: list[str] = []  # the request id as the app's code (its log lines) sees it


def _failing_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    SEEN.append(current_request_id.get())
    raise RuntimeError("boom")


def _reading_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    try:
        environ["wsgi.input"].read()
    except HTTPException as error:  # as Flask would answer it
        start_response(f"{error.code} {error.name}", [("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


async def _call(
    app: GreenletASGI, messages: list[Message], headers: list[tuple[bytes, bytes]]
) -> list[Message]:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    sent: list[Message] = []
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(10)  # a client that sends nothing more
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.create_task(app(scope, receive, send))  # a request's own task and context
    return sent


def _answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def test_without_hooks_the_adapter_chooses_its_own_ids_and_error_bodies() -> None:
    app = GreenletASGI(_failing_app, max_body=1024)
    sent = await _call(app, [{"type": "http.request"}], [(b"x-request-id", b"from-client")])
    status, headers, body = _answer(sent)
    request_id = headers[b"x-request-id"].decode()
    assert status == 500 and request_id != "from-client" and len(request_id) == 32
    assert json.loads(body) == {
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred.",
            "request_id": request_id,
        }
    }


async def test_newsdesks_hooks_keep_the_clients_id_and_answer_the_envelope() -> None:
    app = GreenletASGI(_failing_app, max_body=1024, hooks=HOOKS)
    sent = await _call(app, [{"type": "http.request"}], [(b"x-request-id", b"from-client")])
    status, headers, body = _answer(sent)
    assert status == 500 and headers[b"x-request-id"] == b"from-client"
    assert body == envelope_bytes("internal_error", "An unexpected error occurred.", "from-client")
    assert SEEN[-1] == "from-client"  # kept for the request's log lines
    assert current_request_id.get() == "-"  # in the request's own context only


async def test_a_body_cut_for_its_rate_calls_on_body_cut() -> None:
    cuts: list[None] = []
    hooks = Hooks(on_body_cut=lambda: cuts.append(None))
    app = GreenletASGI(_reading_app, max_body=1024, body_rate=BodyRate(1000, 0.2), hooks=hooks)
    first = {"type": "http.request", "body": b"x", "more_body": True}
    sent = await _call(app, [first], [(b"transfer-encoding", b"chunked")])
    assert _answer(sent)[0] == 408 and len(cuts) == 1


def test_the_adapter_loads_nothing_else_of_service() -> None:
    probe = (
        "import sys, service.greenlet_asgi.adapter; "
        "print(' '.join(m for m in sys.modules if m.startswith('service')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert {m for m in loaded if not m.startswith("service.greenlet_asgi")} == {"service"}
