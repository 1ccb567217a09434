"""Command line: ``python -m service run | dev | serve | migrate | worker``.

- ``run``: the local stack in the foreground (``make run``, ``service.cli.stack``). Starts
  embedded PostgreSQL and Redis in ``.data/`` unless ``DATABASE_URL`` / ``REDIS_URL`` are set,
  migrates, then serves the API on 127.0.0.1:``PORT`` (8000) with one arq worker beside it.
  Ctrl-C or SIGTERM stops the API, waits for it to exit, then the worker (its running jobs may
  finish), then the embedded servers, and leaves no process behind. Variables missing from
  the environment are taken from ``.env`` (see ``service.core.settings``).
- ``dev``: ``run`` with debug logging in text, restarting the API and the worker when a Python
  file under ``service/`` (or a ``RELOAD_DIRS`` directory) changes (``service.cli.dev``).
- ``cluster [--instances N] [--synchronous-commit on|off] [--port P] [--check] [--image I]``: the
  scalability guide's architecture on this machine (``make cluster``, ``service.cli.cluster``):
  nginx on 127.0.0.1:``P`` (8080) in front of N API instances (3), Redis under Sentinel,
  PostgreSQL primary and streaming replica, a worker process per role, all under
  ``--work-dir`` (``.data/cluster``). ``--check``: up, a smoke request through nginx, down.
  ``--image newsdesk:local``: the instances, workers and migration run from the image.
- ``serve``: the API on Hypercorn with ``hypercorn.toml``, bind and worker count from the
  environment (``BIND``, or ``HOST``/``PORT``; ``WEB_CONCURRENCY``); ``SERVER=uvicorn`` or
  ``SERVER=granian`` serves it on another server (``service.edge.serve``).
- ``migrate``: ``alembic upgrade head``.
- ``worker [--settings module:Class]``: the arq workers, supervised
  (``service.jobs.worker.main``), one per role of ``WORKER_ROLES`` (interactive, bulk,
  periodic: a queue each) on one event loop, or the one ``--settings`` names: they survive
  Redis restarts and let running jobs finish on SIGTERM.
- ``create-user --email E --name N``: a user; the password comes from ``NEWSDESK_PASSWORD``,
  else a prompt (or the first line of a piped stdin). Prints the new user's id.
- ``create-api-key --email E --name N``: an API key for that user, printed once with its
  prefix.
- ``seed --count N [--authors A]``: N fake articles by A seed authors (``service.cli.seed``).
- ``healthcheck [--role api|worker|migrate]``: the image's HEALTHCHECK; the role defaults to
  the container's main command (``service.cli.healthcheck``).
- ``queue [--json]``: per job queue its depth, the age of its oldest job and whether a worker
  runs it, and the view-flush lag, read from ``REDIS_URL`` (``service.cli.queue_status``).
- ``image [--tag T] [--base B] [--standin] [--standins]``: build the Dockerfile (``make
  image``), on a stand-in base made from Debian's packages when the base cannot be pulled;
  ``--standins``: the compose file's PostgreSQL and Redis too (``service.cli.image``).
- ``budget [--manifests DIR | --env] [--api-pods N] [--web-concurrency N] [--surge N]
  [--worker NAME=REPLICAS ...] [--max-connections N] [--reserved N]``: the PostgreSQL
  connections the fleet may open at its maximum against ``max_connections``; exit 1 when it
  does not fit (``service.cli.budget``).

The last three use ``DATABASE_URL``; their errors (e-mail taken, unknown e-mail, invalid input,
database unreachable) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from service.cli import budget, healthcheck, image, queue_status
from service.cli.admin import count_arg, data_command, positive_arg
from service.cli.stack import migrate, run_stack
from service.edge import metrics_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="the local stack in the foreground")
    run_parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    dev_parser = commands.add_parser(
        "dev", help="the local stack, restarted on code changes, with debug logging"
    )
    dev_parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    cluster_parser = commands.add_parser(
        "cluster", help="nginx, API instances, Redis Sentinel, primary and replica, workers"
    )
    cluster_parser.add_argument("--work-dir", type=Path, default=Path(".data/cluster"))
    cluster_parser.add_argument("--instances", type=positive_arg, default=3)
    cluster_parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    cluster_parser.add_argument("--port", type=positive_arg, default=8080, help="nginx's port")
    cluster_parser.add_argument(
        "--check", action="store_true", help="bring it up, a smoke request through nginx, stop"
    )
    cluster_parser.add_argument(
        "--image", default=None, help="run the instances, workers and migration from this image"
    )
    commands.add_parser("serve", help="Hypercorn with hypercorn.toml (SERVER=uvicorn|granian)")
    commands.add_parser("migrate", help="alembic upgrade head")
    worker_parser = commands.add_parser("worker", help="the arq worker, supervised")
    worker_parser.add_argument(
        "--settings",
        default=None,
        help="one arq WorkerSettings class, as module:Class (default: a worker per role of "
        "WORKER_ROLES: worker:InteractiveSettings, worker:BulkSettings, worker:PeriodicSettings)",
    )
    user_parser = commands.add_parser(
        "create-user", help="create a user (password from NEWSDESK_PASSWORD or a prompt)"
    )
    user_parser.add_argument("--email", required=True)
    user_parser.add_argument("--name", required=True)
    key_parser = commands.add_parser(
        "create-api-key", help="issue an API key for a user; printed once"
    )
    key_parser.add_argument("--email", required=True, help="the user's e-mail")
    key_parser.add_argument("--name", required=True, help="a label for the key")
    seed_parser = commands.add_parser("seed", help="insert fake articles (bulk COPY)")
    seed_parser.add_argument("--count", type=count_arg, required=True, help="articles to insert")
    seed_parser.add_argument("--authors", type=positive_arg, default=100, help="seed authors")
    seed_parser.add_argument("--batch", type=positive_arg, default=50_000, help="rows per COPY")
    seed_parser.add_argument("--random-seed", type=int, default=1, help="for repeatable data")
    seed_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    health_parser = commands.add_parser("healthcheck", help="the image's HEALTHCHECK, per role")
    health_parser.add_argument("--role", choices=["auto", *healthcheck.ROLES], default="auto")
    queue_parser = commands.add_parser(
        "queue", help="job queue depth, oldest job age, workers and view-flush lag"
    )
    queue_parser.add_argument("--json", action="store_true", help="one JSON object")
    budget_parser = commands.add_parser(
        "budget", help="PostgreSQL connections of the fleet at its maximum, against the limit"
    )
    source = budget_parser.add_mutually_exclusive_group()
    source.add_argument(
        "--manifests",
        default=None,
        help="a folder of manifests, a file, or - for stdin (default: deploy/kubernetes)",
    )
    source.add_argument(
        "--env", action="store_true", help="no manifests: pools from this environment's settings"
    )
    budget_parser.add_argument("--api-pods", type=count_arg, help="API pods at the maximum")
    budget_parser.add_argument("--web-concurrency", type=positive_arg, help="workers per API pod")
    budget_parser.add_argument("--surge", type=count_arg, help="surge pods per Deployment")
    budget_parser.add_argument(
        "--worker",
        action="append",
        type=budget.worker_arg,
        default=[],
        metavar="NAME=REPLICAS",
        help="worker Deployment (or role) replicas; repeat for each",
    )
    budget_parser.add_argument(
        "--max-connections", type=positive_arg, default=budget.POSTGRES_DEFAULT_MAX_CONNECTIONS
    )
    budget_parser.add_argument(
        "--reserved",
        type=count_arg,
        default=budget.POSTGRES_DEFAULT_RESERVED,
        help="superuser_reserved_connections",
    )
    budget_parser.add_argument(
        "--read-engine",
        choices=["none", "primary", "replica"],
        default=None,
        help="DATABASE_READ_URL's pools: none, on the primary's server, or on a replica",
    )
    image_parser = commands.add_parser("image", help="build the Dockerfile (make image)")
    image_parser.add_argument("--tag", default=image.TAG, help=f"default {image.TAG}")
    image_parser.add_argument("--base", default=None, help="the base image (the Dockerfile's BASE)")
    image_parser.add_argument(
        "--standin", action="store_true", help="on the stand-in base, no registry tried"
    )
    image_parser.add_argument(
        "--standins",
        action="store_true",
        help="also the compose file's PostgreSQL and Redis: pulled, else stand-ins",
    )
    args = parser.parse_args(argv)
    if args.command == "image":
        return image.run(args.tag, args.base, standin=args.standin, services=args.standins)
    if args.command == "budget":
        return budget.run(
            manifests=args.manifests,
            from_env=args.env,
            api_pods=args.api_pods,
            web_concurrency=args.web_concurrency,
            surge=args.surge,
            workers=args.worker,
            max_connections=args.max_connections,
            reserved=args.reserved,
            read_engine=args.read_engine,
        )
    if args.command == "queue":
        return queue_status.run(args.json)
    if args.command in ("create-user", "create-api-key", "seed"):
        return data_command(args)
    if args.command in ("run", "dev"):
        return run_stack(args.data_dir, reload=args.command == "dev")
    if args.command == "cluster":
        from service.cli.cluster import run_cluster

        return run_cluster(
            args.work_dir,
            instances=args.instances,
            synchronous_commit=args.synchronous_commit == "on",
            port=args.port,
            check=args.check,
            image=args.image,
        )
    if args.command == "serve":
        from service.edge.serve import serve

        return serve()
    if args.command == "healthcheck":
        return healthcheck.run(args.role)
    if args.command == "worker":
        import importlib

        # One process, one in-memory registry on its own port (service.jobs.metrics): no
        # multiprocess files, whatever the environment says (before prometheus_client loads).
        os.environ.pop(metrics_dir.VARIABLE, None)
        from service.jobs import worker

        if args.settings is None:
            return worker.main()  # a worker per role of WORKER_ROLES
        module, _, name = args.settings.partition(":")
        settings_cls = getattr(importlib.import_module(module), name or "WorkerSettings")
        return worker.main(settings_cls)
    migrate()
    return 0
