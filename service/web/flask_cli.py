"""``flask run`` cannot serve Newsdesk: ``create_app`` refuses it at start-up, saying what to run.

Newsdesk's async views await PostgreSQL and Redis on the ASGI server's event loop, from a
greenlet the ASGI adapter starts per request (``service.greenlet_asgi.bridge``). Werkzeug's
development server, which ``flask run`` starts, calls the WSGI app from a plain thread: every
async route would answer 500 (``await_() called outside run_in_greenlet()``). So under
``flask run`` (with any ``--app`` that reaches ``create_app``) the app is not built and the
command ends with a message naming ``make dev``. Other ``flask`` commands (``routes``,
``shell``) build the app as usual.
"""

from __future__ import annotations

import click
from flask.cli import run_command

MESSAGE = (
    "Newsdesk cannot be served by `flask run`: its async views await PostgreSQL and Redis on "
    "the ASGI server's event loop through a greenlet bridge that the Werkzeug development "
    "server does not have, so every async route would answer 500. Run `make dev` (or "
    "`python -m service dev`) for the API and the worker with code reloading and debug "
    "logging, or `make run` without reloading. Other flask commands (flask routes, "
    "flask shell) work."
)


def refuse_flask_run() -> None:
    """Raise a ``click.ClickException`` (``Error: ...``, exit status 1) inside ``flask run``."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.command is run_command:
        raise click.ClickException(MESSAGE)
