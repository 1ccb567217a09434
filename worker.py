"""The arq entry points, one per worker role: ``arq worker.InteractiveSettings``,
``arq worker.BulkSettings`` (also ``arq worker.WorkerSettings``) and ``arq
worker.PeriodicSettings``; ``python -m service worker`` runs the roles of ``WORKER_ROLES``
supervised in one process. Everything is in ``service.jobs.worker``."""

from service.jobs.worker import (
    BulkSettings,
    InteractiveSettings,
    PeriodicSettings,
    WorkerSettings,
    main,
    settings,
    shutdown,
    startup,
)

__all__ = [
    "BulkSettings",
    "InteractiveSettings",
    "PeriodicSettings",
    "WorkerSettings",
    "main",
    "settings",
    "shutdown",
    "startup",
]

if __name__ == "__main__":
    raise SystemExit(main())
