"""A smoke request through a running API: a user, a login, an article, the article read back.

``python -m service cluster --check`` runs it through nginx once the whole fleet is up: each
step is a real request a client makes, so a wrong upstream, a database URL the app cannot use
or a Redis it cannot reach shows as the step that failed and its answer. Standard library only
(the CLI runs in the image).

The read back is retried for a bounded time: articles are read from the replica, which may lag
the primary by a moment when commits do not wait for it (``--synchronous-commit off``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from service.cli import harness

PASSWORD = "smoke-test-password"
READ_BACK_SECONDS = 10.0


class SmokeFailed(RuntimeError):
    """A step answered something else than expected; the message holds its answer."""


def _call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _expect(step: str, status: int, answer: Any, wanted: int) -> Any:
    if status != wanted:
        raise SmokeFailed(f"{step}: {status} (expected {wanted}): {answer}")
    return answer


def smoke(base: str) -> dict[str, Any]:
    """Register, log in, publish and read back through ``base`` (``http://host:port``); the
    article as read. ``SmokeFailed`` names the step that failed."""
    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    user = {"email": email, "password": PASSWORD, "name": "Smoke"}
    _expect("register", *_call(base, "POST", "/api/v1/users", user), 201)
    credentials = {"email": email, "password": PASSWORD}
    login = _expect("login", *_call(base, "POST", "/api/v1/auth/login", credentials), 200)
    article = {"title": "Smoke", "content": "Through nginx, written on the primary."}
    created = _expect(
        "publish", *_call(base, "POST", "/api/v1/articles", article, login["token"]), 201
    )
    path = f"/api/v1/articles/{created['id']}"
    last: tuple[int, Any] = (0, None)

    def read_back() -> bool:  # until the write shows (the cache fill reads the primary)
        nonlocal last
        last = _call(base, "GET", path)
        return last[0] == 200

    harness.poll_until(read_back, READ_BACK_SECONDS, 0.2)  # checks at least once
    return dict(_expect("read back", *last, 200))
