"""``python -m service run`` (or ``dev``) as a real process for tests: started with its output
in a log file, and waited for until it says it is up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.databases import ROOT

UP = "Newsdesk is up."


def start(
    command: str, env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """The process and its log (stdout and stderr), data in ``tmp_path / "data"``."""
    log = tmp_path / f"{command}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", command, "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def wait_until_up(
    proc: subprocess.Popen[bytes], log: Path, *also: str, timeout: float = 180
) -> None:
    """Until the log says the stack is up (and holds every one of ``also``); fails with it."""
    wanted = (UP, *also)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if all(text in log.read_text() for text in wanted):
            return
        time.sleep(0.3)
    raise AssertionError(f"not up (exit {proc.poll()}):\n{log.read_text()}")
