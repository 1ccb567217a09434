"""Logging set-up: one line per record, in one of two formats, for every process.

``LOG_FORMAT=text`` (the default outside production) is for people: each line carries the
request id of the request it serves and, in a worker, the job id of the job it runs
(``... [rid=<id> job=<id>] message``). ``LOG_FORMAT=json`` (the default with
``ENV=production``) is for log pipelines: one JSON object per line, one schema for the app,
Hypercorn's access and error logs (``service.web.access_log``) and the arq worker:

- always: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
  ``request_id`` and ``job_id`` (``null`` outside a request or a job), ``pid``;
- when known: ``route`` (the route template, never the raw path), ``status``,
  ``duration_ms``, ``method``, ``path``, ``client``, ``bytes`` (access lines), ``trace_id``
  and ``span_id`` (when tracing is on, ``service.infra.tracing``), ``exception`` (the
  traceback of an error).

Both formats pass the message and the traceback through ``redact``: an e-mail address, an
API key, a session token, a password-reset token or a bearer credential that reaches a log
line anyway (an exception's text, arq's line naming a job's arguments) is replaced by a
placeholder. Code logs user ids, not addresses; this is the net under that rule.

One handler serves the whole process (``handler()``); Hypercorn's loggers are given the same
one, so every line of a process has the same shape.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Literal

import orjson

from service.core.request_id import current_request_id

LogFormat = Literal["json", "text"]

FORMAT = "%(asctime)s %(levelname)s %(name)s [rid=%(request_id)s%(job)s%(trace)s] %(message)s"

# The arq job being run, in a worker (set by ``service.jobs.runner.job``).
current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)

# (trace id, span id) of the current span as hex, or None; set by ``service.infra.tracing``
# when tracing is on. A hook rather than an import: with tracing off, nothing of
# OpenTelemetry is loaded.
trace_ids: Callable[[], tuple[str, str] | None] | None = None

# Record attributes (``extra=``) copied into a JSON line when present; anything else a caller
# passes is left out, so a stray ``extra`` cannot put unvetted data in the logs.
EXTRA_FIELDS = ("route", "status", "duration_ms", "method", "path", "client", "bytes")

# Loggers that come with a handler of their own (Hypercorn's, arq's CLI): without this each
# of their lines would be printed twice. ``service.web.access_log`` gives Hypercorn's loggers
# this module's handler instead.
SELF_HANDLED = ("hypercorn.error", "hypercorn.access", "arq")


def default_log_format(env: str | None, log_format: str | None) -> LogFormat:
    """``log_format`` when set, else ``json`` in production and ``text`` elsewhere."""
    if log_format == "json":
        return "json"
    if log_format == "text":
        return "text"
    if log_format:
        raise ValueError(f"LOG_FORMAT must be json or text, not {log_format!r}")
    return "json" if env == "production" else "text"


# --- redaction -------------------------------------------------------------------------------

EMAIL_PLACEHOLDER = "<email>"
SECRET_PLACEHOLDER = "<redacted>"

# The formats of service.domain.credentials (API key, session token) and of the itsdangerous
# reset token (base64url JSON, which starts with ``eyJ``, a dot, a signature), spelled here
# because core imports nothing of ours; tests/core/test_logs.py checks real ones.
# The domain needs no dot: arq shortens the argument list it logs, maybe inside an address.
#
# Linear in the line's length: each alternative may only start where a run of its characters
# starts (the negative lookbehinds), and its runs are possessive (``++``). Without them, a long
# run of address characters holding ``nd_`` but no ``@`` was scanned again from every position
# in it: 2.5 s for one 64 KiB path, with the event loop held.
_LOCAL = r"A-Za-z0-9.!#$%&*+/=?^_`{|}~-"
_TOKEN = r"A-Za-z0-9_-"
_SECRETS = re.compile(
    rf"(?P<email>(?<![{_LOCAL}])[{_LOCAL}]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+)"
    r"|(?P<bearer>(?i:bearer)\s++)\S++"
    rf"|(?<![{_TOKEN}])nds?_[{_TOKEN}]{{16,}}+"
    rf"|(?<![{_TOKEN}])eyJ[{_TOKEN}]{{8,}}+\.[{_TOKEN}]{{16,}}+"
)
# Cheap pre-check: a line without any of these cannot match (most lines).
_MARKERS = ("@", "nd_", "nds_", "eyJ", "earer", "EARER")


class Private(str):
    """A string that logs show as ``<private>``: its ``repr`` hides it. For a job argument
    that must not appear in arq's "job started" line, which lists the job's arguments with
    ``repr`` (an e-mail address handed to ``send_email``); the job receives it as a ``str``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<private>"


def _placeholder(match: re.Match[str]) -> str:
    if match.group("email"):
        return EMAIL_PLACEHOLDER
    if match.group("bearer"):
        return match.group("bearer") + SECRET_PLACEHOLDER
    return SECRET_PLACEHOLDER


def redact(text: str) -> str:
    """``text`` with e-mail addresses, API keys, session tokens, reset tokens and bearer
    credentials replaced by placeholders."""
    if not any(marker in text for marker in _MARKERS):
        return text
    return _SECRETS.sub(_placeholder, text)


# The longest request path an access line carries: a client chooses its path, and each
# character is redaction and log-storage cost. Longer ones are cut and say so.
MAX_LOGGED_PATH = 2048


def cut_path(path: str) -> str:
    """``path`` as an access line logs it: at most ``MAX_LOGGED_PATH`` characters, marked
    ``...[cut, N chars]`` when it was longer."""
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}...[cut, {len(path)} chars]"


# C0 controls, DEL and C1 controls, written as escapes in text lines: a CR, LF or ESC from a
# request path or a user's text must not start a forged line or drive a terminal.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\n``, ``\\r``, ``\\t``, ``\\xNN``."""
    return text.translate(_CONTROLS)


# --- formats ---------------------------------------------------------------------------------


def _context_ids(record: logging.LogRecord) -> None:
    """Request id, job id and trace ids of the current context onto ``record``, unless the
    caller gave them (an access line is logged outside the request's context)."""
    fields = record.__dict__
    if "request_id" not in fields:
        fields["request_id"] = current_request_id.get()
    if "job_id" not in fields:
        fields["job_id"] = current_job_id.get() or _arq_job_id(record)
    if "trace_id" not in fields:
        ids = trace_ids() if trace_ids is not None else None
        fields["trace_id"], fields["span_id"] = ids if ids else (None, None)


# arq's own lines about one job: "→" started, "←" done, "↻" retried, "!" failed or out of tries,
# "⊘" aborted; each has ``<job id>:<function>`` as its second argument.
_ARQ_JOB_LINE = re.compile(r"s [→←↻!⊘] %s")


def _arq_job_id(record: logging.LogRecord) -> str | None:
    """The job id an ``arq.worker`` line is about (arq logs it outside the job's context)."""
    if record.name != "arq.worker" or not isinstance(record.msg, str):
        return None
    args = record.args
    if not (isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], str)):
        return None
    if _ARQ_JOB_LINE.search(record.msg) is None:
        return None
    if "%s:%s" in record.msg:  # "⊘ <job id>:<function> aborted before start"
        return args[1]
    if args[1].startswith("cron:"):  # a cron job's lines name its function, not its id
        return None
    return args[1].rpartition(":")[0] or None


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request), ``record.job_id`` and the trace
    ids from the current context; for the text format, `` job=<id>`` as ``record.job`` and
    `` trace=<id>`` as ``record.trace`` (empty when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _context_ids(record)
        fields = record.__dict__
        fields["job"] = f" job={fields['job_id']}" if fields["job_id"] else ""
        fields["trace"] = f" trace={fields['trace_id']}" if fields["trace_id"] else ""
        return True


class TextFormatter(logging.Formatter):
    """The human format (``FORMAT``), redacted, one line per record: control characters in
    the message are escaped (a traceback still follows on lines of its own)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (schema in the module docstring), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": None if request_id in (None, "-") else request_id,
            "job_id": getattr(record, "job_id", None),
            "pid": record.process,
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            line["trace_id"] = trace_id
            line["span_id"] = getattr(record, "span_id", None)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


# --- the process's handler -------------------------------------------------------------------

_handler: logging.Handler | None = None


def handler() -> logging.Handler:
    """The process's one log handler (stderr; created with the environment's format when
    ``configure_logging`` has not run yet)."""
    global _handler
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.addFilter(RequestIdFilter())
        _handler.setFormatter(formatter(_environ_format(os.environ)))
    return _handler


def _environ_format(environ: Mapping[str, str]) -> LogFormat:
    return default_log_format(environ.get("ENV"), environ.get("LOG_FORMAT"))


def configure_logging(level: str = "INFO", log_format: LogFormat | None = None) -> None:
    """Install the process's handler on the root logger in ``log_format`` (default: from
    ``LOG_FORMAT`` and ``ENV`` in the environment). Safe to call again: the format is
    replaced, never a second handler added."""
    for name in SELF_HANDLED:
        logging.getLogger(name).propagate = False
    root = logging.getLogger()
    root.setLevel(level)
    chosen = handler()
    chosen.setFormatter(formatter(log_format or _environ_format(os.environ)))
    if chosen not in root.handlers:
        root.addHandler(chosen)
