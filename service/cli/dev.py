"""``python -m service dev`` (``make dev``): what to watch for code changes, and the watching.

The stack is the one ``run`` starts (``service.cli.stack.run_stack``), with debug logging in
text (``LOG_LEVEL=DEBUG``, ``LOG_FORMAT=text``, one API worker) unless the environment or
``.env`` says otherwise. Python files under the ``service`` package, and under every directory
named in ``RELOAD_DIRS`` (separated by ``:``), are watched; a change (a file written, added or
removed) stops the API and the worker, in that order, and starts both again on the new code.
A process that dies (a syntax error, say) is started again on the next change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from watchfiles import PythonFilter, watch

PACKAGE = Path(__file__).resolve().parents[1]
RELOAD_DIRS = "RELOAD_DIRS"
DEFAULTS = {"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "text", "WEB_CONCURRENCY": "1"}


def watch_paths(env: Mapping[str, str]) -> list[Path]:
    """The ``service`` package and the existing directories named in ``RELOAD_DIRS``."""
    extra = [Path(item) for item in env.get(RELOAD_DIRS, "").split(os.pathsep) if item.strip()]
    missing = [str(path) for path in extra if not path.is_dir()]
    if missing:
        raise SystemExit(f"{RELOAD_DIRS}: not a directory: {', '.join(missing)}")
    return [PACKAGE, *(path.resolve() for path in extra)]


def changes(paths: list[Path], *, every_ms: int = 1000) -> Iterator[list[str]]:
    """The Python files changed since the last step, sorted; an empty list every ``every_ms``
    without a change (so the caller can look after its processes). Signal handlers run
    while it waits; what they raise ends the iteration."""
    for batch in watch(
        *paths,
        watch_filter=PythonFilter(),
        rust_timeout=every_ms,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        yield sorted({path for _, path in batch})
