"""service.cli.stack: stopping ``python -m service run`` is quiet and exits 0 however many
signals arrive (a supervisor that signals again, Ctrl-C pressed twice): the first SIGTERM
starts the stop, the others are ignored, and none interrupts the stop's own logging.

The stack runs on the session's PostgreSQL server (a database of its own) and Redis (a
database number of its own), so it starts no embedded servers and its worker touches no
other test's data."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from service.cli.embedded import free_port
from tests.support import stack_run
from tests.support.databases import ServerStack


def _other_redis_db(url: str, db: int = 13) -> str:
    base, _, tail = url.rpartition("/")
    return f"{base}/{db}" if re.fullmatch(r"\d*", tail) else f"{url}/{db}"


def test_many_sigterms_stop_the_stack_quietly_with_exit_code_0(
    stack: ServerStack, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": stack.new_database("newsdesk_stop"),
        "REDIS_URL": _other_redis_db(stack.redis_url),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WORKER_METRICS_PORT": str(free_port()),
        "WORKER_SHUTDOWN_WAIT_SECONDS": "2",
    }
    proc, log = stack_run.start("run", env, tmp_path)
    try:
        stack_run.wait_until_up(proc, log)

        # A burst: the first starts the stop; the rest arrive while it logs and stops the API.
        sent = 0
        for _ in range(40):
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGTERM)
            sent += 1
            time.sleep(0.005 if sent < 20 else 0.05)
        assert sent >= 2
        assert proc.wait(120) == 0, log.read_text()

        text = log.read_text()
        assert "Traceback" not in text, text
        assert text.count("SIGTERM received; stopping") == 1, text
        assert "the API has stopped (exit code 0)" in text, text
        assert text.rstrip().endswith("stopped"), text[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
