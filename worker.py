"""The arq entry point: ``arq worker.WorkerSettings`` (``python -m service worker`` runs the
same settings supervised). Everything is in ``service.jobs.worker``."""

from service.jobs.worker import WorkerSettings, main, settings, shutdown, startup

__all__ = ["WorkerSettings", "main", "settings", "shutdown", "startup"]

if __name__ == "__main__":
    raise SystemExit(main())
