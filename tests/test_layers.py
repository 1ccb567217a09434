"""The package's layers (pyproject.toml's import-linter contracts), as the processes see them:
an API worker never loads the keyword extractor; the arq worker does."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("yake", "numpy", "networkx")


def _loaded_after(module: str) -> set[str]:
    probe = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(out.split())


def test_an_api_worker_never_imports_the_keyword_extractor() -> None:
    loaded = _loaded_after("service.asgi")
    assert "flask" in loaded and "service.web.app" in loaded  # the probe saw the app load
    assert not loaded & set(HEAVY)
    assert "service.domain.text_analysis" not in loaded


def test_the_job_worker_does() -> None:
    loaded = _loaded_after("service.jobs.tasks")
    assert set(HEAVY) <= loaded
