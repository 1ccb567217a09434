"""The PEP 3333 environ for an ASGI HTTP scope, and whether the request carries a body.

The WSGI app (Flask) sees an ordinary environ: ``wsgi.input`` is a ``RequestBody`` whose reads
await the body on the serving loop (``body``), and the ASGI scope itself is
there as ``asgi.scope``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from service.greenlet_asgi.body import RequestBody
from service.greenlet_asgi.types import Scope


def build_environ(scope: Scope, body: RequestBody) -> dict[str, Any]:
    """A PEP 3333 environ for an ASGI HTTP scope.

    Native strings are latin-1 per PEP 3333, so non-ASCII paths and raw query bytes survive
    the round trip; repeated headers are joined with ``,`` (cookies with ``;``); headers
    whose names hold ``_`` are left out (``_add_headers``).
    """
    script_name, path_info = _script_name_and_path_info(scope)
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "asgi.scope": scope,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    _add_headers(environ, scope.get("headers", ()))
    return environ


def _script_name_and_path_info(scope: Scope) -> tuple[str, str]:
    """``root_path`` and the path below it, as latin-1 native strings."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    return root_path.encode("utf-8").decode("latin-1"), path.encode("utf-8").decode("latin-1")


def _add_headers(environ: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> None:
    """``CONTENT_LENGTH``, ``CONTENT_TYPE`` and ``HTTP_*`` keys for the scope's raw headers.

    A header whose name holds ``_`` is dropped, as nginx does (``underscores_in_headers
    off``): in the environ ``-`` and ``_`` both become ``_``, so ``API_Key`` would otherwise
    pass for ``API-Key`` and ``X_Forwarded_For`` for ``X-Forwarded-For``, past any proxy
    that checks or sets only the real names."""
    for raw_name, raw_value in headers:
        if b"_" in raw_name:
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + name
        value = raw_value.decode("latin-1")
        if key in environ:
            separator = "; " if key == "HTTP_COOKIE" else ","
            value = environ[key] + separator + value
        environ[key] = value


def expects_body(environ: dict[str, Any]) -> bool:
    """Whether the request announces a body: a non-zero Content-Length, a Transfer-Encoding,
    or (HTTP/2, where neither is required) a method that usually carries one."""
    if environ.get("CONTENT_LENGTH", "0") not in ("", "0"):
        return True
    if "HTTP_TRANSFER_ENCODING" in environ:
        return True
    return environ["SERVER_PROTOCOL"] == "HTTP/2" and environ["REQUEST_METHOD"] in (
        "POST",
        "PUT",
        "PATCH",
    )
