"""Logging set-up: one line per record, each carrying the request id of the request it serves
(and, in a worker, the job id of the job it runs)."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from service.core.request_id import current_request_id

FORMAT = "%(asctime)s %(levelname)s %(name)s [rid=%(request_id)s%(job)s] %(message)s"

# The arq job being run, in a worker (set by ``service.infra.queue.job``).
current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the current context (``-`` outside a request) and, in a
    job, `` job=<job id>`` as ``record.job``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        job_id = current_job_id.get()
        record.job = f" job={job_id}" if job_id else ""
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
