"""Request ids: taken from a well-formed ``X-Request-ID`` or generated, kept in a context var.

The ASGI adapter sets ``current_request_id`` as soon as a request arrives (``bind_request_id``
is its request-id hook; the request's greenlet shares its task's context), so every log line
of that request, from the adapter, Flask, SQLAlchemy or a view, carries it (see
``service.core.logs``); error envelopes quote it, and the adapter adds it to every response as
``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")


_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _new_process() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_process)


def new_request_id() -> str:
    """A fresh id: 32 hex characters, a random per-process prefix and a counter (unique
    without a system call per request; ids identify requests, they are not secrets)."""
    return f"{_prefix}{next(_counter):016x}"


def choose_request_id(header_value: str | None) -> str:
    """The client's id when it is well-formed (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if header_value and _WELL_FORMED.fullmatch(header_value):
        return header_value
    return new_request_id()


def bind_request_id(header_value: str | None) -> str:
    """``choose_request_id``, kept as the current request's (``current_request_id``)."""
    request_id = choose_request_id(header_value)
    current_request_id.set(request_id)
    return request_id
