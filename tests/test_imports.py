"""Nothing is configured at import: every module of ``service`` (and ``worker.py``, what
``arq worker.WorkerSettings`` imports) imports in an empty environment, and with settings that
would not even validate, so no module reads ``Settings()`` when it is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ``service.__main__`` is the program (``python -m service``): importing it runs the CLI.
IMPORT_ALL = """
import importlib, pkgutil, service
names = [m.name for m in pkgutil.walk_packages(service.__path__, "service.")]
names = [n for n in names if n != "service.__main__"]
for name in names:
    importlib.import_module(name)
import worker
print(len(names))
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "ENV_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_module_imports_in_an_empty_environment() -> None:
    done = _python(IMPORT_ALL)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 50  # the walk found the package's modules


def test_no_module_reads_the_settings_at_import() -> None:
    # Settings() fails with this environment, so a module that read them at import would too.
    refused = _python("from service.core.settings import Settings; Settings()", REDIS_URL="x")
    assert refused.returncode != 0 and "redis_url" in refused.stderr, refused.stderr
    done = _python(IMPORT_ALL, REDIS_URL="x")
    assert done.returncode == 0, done.stderr
