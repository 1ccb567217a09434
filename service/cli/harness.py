"""One way to run a local process: start it with its output in a log file, wait until it is
ready, stop it (terminate, wait, kill). The tests' and the bench's servers and workers start
through ``spawn``, and so do the API and the worker of ``python -m service run`` (with
``log=None``: their output stays on the terminal).

Why not ``mirakuru`` (the executor behind pytest-postgresql): its ``OutputExecutor`` reads a
pipe, where every caller here needs the output in a file it can read while the process runs
and after it died; its ``stop`` signals the whole process group and then every process that
carries its marker variable, where tests here signal the main process alone (a supervisor's
drain is what they test); its start-up error names the exit code but not the log. What is left
is one small loop, written here with the standard library only (the CLI runs in the image).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

TAIL = 4000  # characters of the log an error shows


class NotReady(RuntimeError):
    """The process exited, or did not become ready in time; the message holds the log tail."""


def tail(log: Path, size: int = TAIL) -> str:
    """The end of ``log`` (empty when there is none yet)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    if len(text) <= size:
        return text
    cut = text[-size:]
    return cut[cut.find("\n") + 1 :]  # from the first whole line


def http_ok(url: str, timeout: float = 2) -> Callable[[], bool]:
    """Ready when ``url`` answers 200 (within ``timeout`` seconds)."""

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

    def check() -> bool:
        try:
            with opener.open(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def port_open(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready when something accepts TCP connections on ``host:port``."""

    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return True
        return False

    return check


def log_has(log: Path, *texts: str) -> Callable[[], bool]:
    """Ready when ``log`` holds every one of ``texts``."""

    def check() -> bool:
        try:
            content = log.read_text(errors="replace")
        except FileNotFoundError:
            return False
        return all(text in content for text in texts)

    return check


Ready = str | int | Callable[[], bool] | None


def _check(ready: Ready, log: Path | None) -> Callable[[], bool] | None:
    """``ready`` as a check: a URL (``http...``) answers 200, a port accepts connections,
    a line of text appears in the log, or a callable says so."""
    if ready is None or callable(ready):
        return ready
    if isinstance(ready, int):
        return port_open(ready)
    if ready.startswith(("http://", "https://")):
        return http_ok(ready)
    if log is None:
        raise ValueError(f"a line to wait for ({ready!r}) needs a log file")
    return log_has(log, ready)


def poll_until(
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    *,
    pause: Callable[[float], object] = time.sleep,
    going_on: Callable[[], bool] = lambda: True,
) -> bool:
    """Whether ``check()`` held within ``timeout`` seconds, checked every ``interval``
    seconds while ``going_on()``. For the command-line tools' own waits (start-up, a smoke
    request): they run outside any event loop, so ``pause`` may block."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and going_on():
        if check():
            return True
        pause(interval)
    return False


def wait_until(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    timeout: float,
    interval: float = 0.1,
) -> bool:
    """Whether ``check()`` held within ``timeout`` seconds while ``proc`` kept running
    (checked every ``interval`` seconds; a pause that also notices the process dying)."""

    def pause(seconds: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(seconds)

    return poll_until(check, timeout, interval, pause=pause, going_on=lambda: proc.poll() is None)


class Process:
    """A started process, its output appended to ``log`` (``None``: this process's own)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path | None, name: str) -> None:
        self.proc = proc
        self.log_path = log
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_ready(self, ready: Ready, timeout: float, interval: float = 0.1) -> Process:
        """Until ``ready`` holds (checked every ``interval`` seconds); ``NotReady`` with the log
        tail if the process exits first or ``timeout`` seconds pass (it is stopped then)."""
        check = _check(ready, self.log_path)
        if check is None or wait_until(check, self.proc, timeout, interval):
            return self
        where = f"; {self.log_path}:\n{tail(self.log_path)}" if self.log_path else ""
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise NotReady(f"{self.name} exited with code {code} before it was ready{where}")
        self.stop()
        raise NotReady(f"{self.name} not ready within {timeout:g}s{where}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def spawn(
    command: Sequence[str],
    env: Mapping[str, str] | None,
    log: Path | None,
    *,
    ready: Ready = None,
    timeout: float = 60,
    cwd: Path | str | None = None,
    name: str | None = None,
    inherit_env: bool = True,
    **popen: Any,
) -> Process:
    """Start ``command`` with ``env`` (on top of this process's environment unless
    ``inherit_env`` is false), stdout and stderr appended to ``log`` (``None``: left on this
    process's own), and wait until ``ready`` (a URL that answers 200, a port that accepts, a
    line in the log, a callable).

    Raises ``NotReady`` with the log tail when the process exits first or ``timeout`` passes.
    Extra keyword arguments go to ``subprocess.Popen`` (``preexec_fn``, ``start_new_session``).
    """
    environment = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
    if log is None:
        proc = subprocess.Popen(list(command), env=environment, cwd=cwd, **popen)
    else:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(command),
                env=environment,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                **popen,
            )
    process = Process(proc, log, name or " ".join(command[:4]))
    return process.wait_ready(ready, timeout)
