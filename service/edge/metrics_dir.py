"""``PROMETHEUS_MULTIPROC_DIR`` for one API instance, ready before Hypercorn spawns workers.

prometheus_client reads the variable when it is imported, in each worker, so it must be in
the environment the workers inherit, and the directory must hold no file of an earlier
instance: a stale counter file would be added to this instance's totals, and a stale gauge
file would add a dead process's pool to this one's. ``prepared()``:

* with ``PROMETHEUS_MULTIPROC_DIR`` set, creates the directory if needed and deletes the
  ``*.db`` files in it (nothing else: it may be a mounted volume holding other things);
* without it, creates a private temporary directory, sets the variable to it, and removes it
  when the server exits.

No prometheus_client import here: the serving process itself must not pick a mode before the
variable is set.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def clean(directory: Path) -> int:
    """Create ``directory`` if needed and delete its metric files; how many were deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = glob.glob(os.path.join(directory, "*.db"))
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    return len(stale)


@contextlib.contextmanager
def prepared(environ: MutableMapping[str, str] = os.environ) -> Iterator[Path]:
    """The instance's metrics directory, clean, named in ``environ`` (see the module
    docstring)."""
    given = environ.get(VARIABLE)
    if given:
        clean(Path(given))
        yield Path(given)
        return
    private = Path(tempfile.mkdtemp(prefix="newsdesk-metrics-"))
    environ[VARIABLE] = str(private)
    try:
        yield private
    finally:
        environ.pop(VARIABLE, None)
        shutil.rmtree(private, ignore_errors=True)
