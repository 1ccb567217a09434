"""``python -m service run`` (or ``dev``) as a real process for tests: started through the
harness (``service.cli.harness``) with its output in a log file, and waited for until it says
it is up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from service.cli.harness import NotReady, Process, log_has, spawn
from tests.support.databases import ROOT

UP = "Newsdesk is up."


def start(
    command: str, env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """The process and its log (stdout and stderr), data in ``tmp_path / "data"``; ``env`` is
    its whole environment."""
    log = tmp_path / f"{command}.log"
    process = spawn(
        [sys.executable, "-m", "service", command, "--data-dir", str(tmp_path / "data")],
        env,
        log,
        cwd=ROOT,
        inherit_env=False,
        name=f"service {command}",
    )
    return process.proc, log


def wait_until(
    proc: subprocess.Popen[bytes],
    log: Path,
    check: Callable[[], bool],
    what: str,
    timeout: float = 180,
    interval: float = 0.3,
) -> None:
    """Until ``check()`` holds while ``proc`` runs (checked every ``interval`` seconds); fails
    (``AssertionError``) with the log."""
    try:
        Process(proc, log, "the stack").wait_ready(check, timeout, interval)
    except NotReady as error:
        raise AssertionError(f"{what}: {error}") from None


def wait_until_up(
    proc: subprocess.Popen[bytes], log: Path, *also: str, timeout: float = 180
) -> None:
    """Until the log says the stack is up (and holds every one of ``also``); fails with it."""
    wait_until(proc, log, log_has(log, UP, *also), "not up", timeout)
