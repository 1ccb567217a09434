"""What the adapter leaves to the application it serves: ``Hooks``, passed to ``GreenletASGI``.

* ``request_id(header)``: the id of a request, given its ``X-Request-ID`` header (None when
  absent). Called once per request, on the request's task before the app runs, so it may also
  keep the id where the app and its log lines read it (a context variable: the request's
  greenlet shares its task's context, ``bridge``). The id goes into the environ
  (``REQUEST_ID_KEY``), into every response as ``X-Request-ID`` and into the adapter's own
  error bodies. Default: a new random id, whatever the header says.
* ``error_body(code, message, request_id)``: the JSON body of an error the adapter answers
  itself (400 or 413 for the Content-Length, 500 for an error escaping the app, 503 for a
  request cut when the worker stops). Default: ``{"error": {"code", "message",
  "request_id"}}``.
* ``on_body_cut()``: called when a request body is cut for arriving too slowly (``BodyRate``),
  e.g. to count it. Default: nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

REQUEST_ID_KEY = "greenlet_asgi.request_id"  # the environ key holding the request id


def new_request_id(header: str | None) -> str:
    """A new random id (32 hex characters); the client's header is not trusted."""
    return uuid.uuid4().hex


def json_error_body(code: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}},
        separators=(",", ":"),
    ).encode()


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Hooks:
    """The adapter's extension points (see the module docstring)."""

    request_id: Callable[[str | None], str] = new_request_id
    error_body: Callable[[str, str, str], bytes] = json_error_body
    on_body_cut: Callable[[], None] = _nothing


DEFAULT_HOOKS = Hooks()
