"""service.web.flask_cli: `flask run` refuses to serve Newsdesk (the Werkzeug server has no
greenlet bridge), naming `make dev`, for every --app that reaches the app; other flask
commands still work. Real `flask` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli.embedded import free_port
from tests.support.databases import ROOT

FLASK = Path(sys.executable).parent / "flask"


def _flask(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENV": "test"}
    return subprocess.run(
        [str(FLASK), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("app", ["service", "service.web.app", "service.asgi"])
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_flask_run_stops_at_start_up_and_says_to_run_make_dev(app: str, debug: list[str]) -> None:
    # A port nothing listens on: had the server started, the command would not have ended.
    done = _flask("--app", app, *debug, "run", "--host", "127.0.0.1", "--port", str(free_port()))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot be served by `flask run`" in done.stderr
    assert "make dev" in done.stderr
    assert "Running on" not in done.stdout + done.stderr


def test_other_flask_commands_still_build_the_app() -> None:
    done = _flask("--app", "service", "routes")
    assert done.returncode == 0, done.stderr
    assert "/api/v1/articles" in done.stdout
