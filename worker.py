"""The arq entry points, one per worker role: ``arq worker.InteractiveSettings``,
``arq worker.BulkSettings`` (also ``arq worker.WorkerSettings``) and ``arq
worker.PeriodicSettings``; ``python -m service worker`` runs the roles of ``WORKER_ROLES``
supervised in one process. Everything is in ``service.jobs.worker``.

Importing this module reads nothing: a class is built (with the settings of the
environment, once) when arq, or anyone, first asks for it by name."""

from typing import Any

from service.jobs import worker as _worker
from service.jobs.worker import main

__all__ = [
    "BulkSettings",  # noqa: F822  (found by __getattr__)
    "InteractiveSettings",  # noqa: F822
    "PeriodicSettings",  # noqa: F822
    "WorkerSettings",  # noqa: F822
    "main",
    "settings",  # noqa: F822
]


def __getattr__(name: str) -> Any:
    return getattr(_worker, name)


if __name__ == "__main__":
    raise SystemExit(main())
