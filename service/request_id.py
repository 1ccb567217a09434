"""Request ids: taken from a well-formed ``X-Request-ID`` or generated, kept in a context var.

The ASGI adapter sets the id as soon as a request arrives, so every log line of that request,
from the adapter, Flask, SQLAlchemy or a view, carries it (see ``service.logs``), and the
response echoes it in ``X-Request-ID``.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")


def new_request_id() -> str:
    """A fresh id: 32 hex characters."""
    return uuid.uuid4().hex


def choose_request_id(header_value: str | None) -> str:
    """The client's id when it is well-formed (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if header_value and _WELL_FORMED.fullmatch(header_value):
        return header_value
    return new_request_id()
