"""``python -m service serve``: the API on Hypercorn (or uvicorn, or granian), the image's
command.

Hypercorn with ``hypercorn.toml`` (``HYPERCORN_CONFIG`` names another file), bind and worker
count from the environment (``BIND``, or ``HOST``/``PORT``; ``WEB_CONCURRENCY``, by default the
container's CPU quota, see ``service.core.cpus``), its workers under Newsdesk's master
(``service.edge.master``: every worker finishes its requests on SIGTERM) and its access lines
in ``LOG_FORMAT`` (``service.web.access_log``). ``SERVER=uvicorn`` (uvloop, httptools) or
``SERVER=granian`` (``--interface asgi``, uvloop) serves the same app with the same bind,
workers, backlog and graceful timeout (from ``hypercorn.toml``; uvicorn also its keep-alive),
as the table of servers says (``service.edge.servers``). uvicorn serves HTTP/1.1 only; their
access lines are their own (no route template or request id fields). They come with the
``servers`` extra (``pip install 'newsdesk[servers]'``).

Every worker records its metrics in one directory, emptied at start, that ``/metrics`` merges
(``service.edge.metrics_dir``).
"""

from __future__ import annotations

import logging
import os

from service.core.cpus import default_workers
from service.core.logs import configure_logging
from service.edge import metrics_dir, servers

log = logging.getLogger(__name__)
APP = "service.asgi:app"


def _bind() -> str | None:
    """``BIND``, else ``HOST``/``PORT`` (either defaulted), else None: ``hypercorn.toml``'s."""
    if os.environ.get("BIND"):
        return os.environ["BIND"]
    if os.environ.get("HOST") or os.environ.get("PORT"):
        return f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
    return None


def serve() -> int:
    """Serve the API with ``SERVER`` (see the module docstring); its exit status."""
    name = os.environ.get("SERVER", "hypercorn")
    if name not in servers.SERVERS:
        raise SystemExit(f"SERVER={name}: one of {', '.join(servers.SERVERS)}")
    if os.environ.get("WEB_CONCURRENCY"):
        workers, why = int(os.environ["WEB_CONCURRENCY"]), "WEB_CONCURRENCY"
    else:
        workers, why = default_workers()
    run = servers.Run(
        APP,
        bind=_bind(),
        workers=workers,
        config=os.environ.get("HYPERCORN_CONFIG", "hypercorn.toml"),
    )
    configure_logging("INFO")
    log.info("serving with %d %s worker(s): %s", workers, servers.SERVERS[name].title, why)
    with metrics_dir.prepared():
        if name == "hypercorn":
            return _hypercorn(run)
        if name == "uvicorn":
            import uvicorn

            # log_config None: its loggers reach the root logger, in LOG_FORMAT.
            uvicorn.run(run.app, **servers.options(name, run), log_config=None)
            return 0
        from granian import Granian
        from granian.constants import Interfaces, Loops

        options = servers.options(name, run)
        options["interface"] = Interfaces(options["interface"])
        options["loop"] = Loops(options["loop"])
        Granian(run.app, **options).serve()
        return 0


def _hypercorn(run: servers.Run) -> int:
    """Hypercorn: ``hypercorn.toml`` with the table's options, our master unless the file asks
    for the reloader (or no worker process)."""
    from hypercorn.run import run as hypercorn_run

    from service.edge import master
    from service.web.access_log import AccessLogger

    config = run.settings()
    for name, value in servers.options("hypercorn", run).items():
        setattr(config, name, value)
    config.application_path = run.app
    config.logger_class = AccessLogger  # access lines in LOG_FORMAT, with route and status
    if config.use_reloader or config.workers == 0:
        return int(hypercorn_run(config) or 0)
    return master.serve(config)  # our master: every worker finishes on SIGTERM
