"""service.cli.harness: ``spawn`` starts a process with its output in a log file, waits for a
URL, a port or a log line, fails with the log's tail when the process dies first, and
``stop`` ends even a process that ignores SIGTERM."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from service.cli.embedded import free_port
from service.cli.harness import NotReady, spawn, tail


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_ready_on_a_log_line(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    code = "import time; time.sleep(0.3); print('up'); time.sleep(60)"
    process = spawn(python(code), {}, log, ready="up", timeout=30)
    try:
        assert process.running() and "up" in process.log()
    finally:
        assert process.stop(10) != 0  # terminated


def test_ready_on_a_port_and_on_a_url(tmp_path: Path) -> None:
    port = free_port()
    serve = (
        f"import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', {port}),"
        " h.SimpleHTTPRequestHandler).serve_forever()"
    )
    for ready in (port, f"http://127.0.0.1:{port}/"):
        log = tmp_path / "http.log"
        process = spawn(python(serve), {}, log, ready=ready, timeout=30, cwd=tmp_path)
        try:
            assert process.running()
        finally:
            process.stop(10)


def test_an_early_exit_names_the_code_and_shows_the_log(tmp_path: Path) -> None:
    code = "import sys; print('the reason it failed'); sys.exit(3)"
    with pytest.raises(NotReady, match="exited with code 3") as failed:
        spawn(python(code), {}, tmp_path / "p.log", ready="never printed", timeout=30)
    assert "the reason it failed" in str(failed.value)


def test_a_timeout_stops_the_process_and_shows_the_log(tmp_path: Path) -> None:
    code = "import time; print('starting'); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(NotReady, match="not ready within 1s") as failed:
        spawn(python(code), {}, tmp_path / "p.log", ready="never printed", timeout=1)
    assert "starting" in str(failed.value)
    assert time.monotonic() - started < 30


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready');"
        " time.sleep(60)"
    )
    process = spawn(python(code), {}, tmp_path / "p.log", ready="ready", timeout=30)
    assert process.stop(0.5) == -9  # SIGKILL after the wait


def test_env_is_added_to_the_environment_unless_told_otherwise(tmp_path: Path) -> None:
    code = "import os; print(os.environ.get('EXTRA'), 'PATH' in os.environ)"
    inherited = spawn(python(code), {"EXTRA": "x"}, tmp_path / "a.log")
    alone = spawn(python(code), {"EXTRA": "y"}, tmp_path / "b.log", inherit_env=False)
    assert inherited.proc.wait(30) == 0 and alone.proc.wait(30) == 0
    assert inherited.log().strip() == "x True"
    assert alone.log().strip() == "y False"


def test_tail_starts_at_a_whole_line(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    log.write_text("".join(f"line {n}\n" for n in range(1000)))
    assert tail(log, 100).startswith("line ")
    assert tail(log, 100).endswith("line 999\n")
    assert tail(tmp_path / "missing.log") == ""
