"""Logging set-up: one line per record, each carrying the request id of the request it serves."""

from __future__ import annotations

import logging

from service.request_id import current_request_id

FORMAT = "%(asctime)s %(levelname)s %(name)s [rid=%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the current context (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


# Loggers that come with a handler of their own (Hypercorn's, arq's CLI): without this each
# of their lines would be printed twice.
SELF_HANDLED = ("hypercorn.error", "hypercorn.access", "arq")


def configure_logging(level: str = "INFO") -> None:
    """Install the request-id aware format on the root logger (idempotent)."""
    for name in SELF_HANDLED:
        logging.getLogger(name).propagate = False
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, "_newsdesk", False):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    handler._newsdesk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
