"""deploy/nginx/newsdesk.conf: its numbers agree with the app's, ``nginx -t`` accepts it, and a
real nginx running it in front of a real Newsdesk (loopback only) passes the client's address
on in a form TRUSTED_PROXIES accepts, keeps upstream connections alive, carries request ids,
and refuses a body over MAX_CONTENT_LENGTH itself with the app's 413 envelope."""

from __future__ import annotations

import random
import re
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.cli.embedded import free_port
from service.cli.nginx import SHIPPED, Nginx, nginx_binary, render, write
from service.core.settings import Settings
from tests.conftest import PROBE_APP, LiveServers, Proxies
from tests.support.databases import ROOT
from tests.support.live import LiveServer

MAX_BODY = Settings.model_fields["max_content_length"].default
SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
READ_LIMIT = 100_000  # per day: a window that cannot roll over between two requests of a test


def _text() -> str:
    return SHIPPED.read_text()


def _block(text: str, header: str) -> str:
    """The body of the first ``header { ... }`` block (blocks nest one level at most here)."""
    start = text.index(header + " {")
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    raise AssertionError(f"unclosed {header}")


def _directive(text: str, name: str) -> list[str]:
    """The values of every ``name ...;`` directive in ``text`` (full-line comments ignored)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(name + " ") and line.endswith(";"):
            found.append(line[len(name) :].strip().rstrip(";").strip())
    return found


def _bytes(size: str) -> int:
    match = SIZE.match(size)
    assert match, size
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def _seconds(value: str) -> float:
    assert value.endswith("s") and value[:-1].isdigit(), value
    return float(value[:-1])


def _nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.fail("nginx is not installed: `make test` installs it (Makefile test-deps)")
    return binary


# --- the file's numbers against the app's -------------------------------------------------


def test_body_limit_is_max_content_length() -> None:
    server = _block(_text(), "server")
    (limit,) = _directive(server, "client_max_body_size")
    assert _bytes(limit) == MAX_BODY
    (too_large,) = [v for v in _directive(server, "return") if v.startswith("413 ")]
    assert f"larger than {MAX_BODY} bytes" in too_large
    assert '"code":"request_entity_too_large"' in too_large  # the app's own code for it


def test_upstream_keepalive_is_http11_and_closes_before_hypercorn() -> None:
    text = _text()
    hypercorn = tomllib.loads((ROOT / "hypercorn.toml").read_text())
    upstream = _block(text, "upstream newsdesk")
    (idle,) = _directive(upstream, "keepalive_timeout")
    assert _seconds(idle) < hypercorn["keep_alive_timeout"]
    (pool,) = _directive(upstream, "keepalive")
    assert int(pool) > 0
    location = _block(text, "location /")
    assert _directive(location, "proxy_pass") == ["http://newsdesk"]
    assert _directive(location, "proxy_http_version") == ["1.1"]
    headers = _directive(location, "proxy_set_header")
    assert 'Connection ""' in headers
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in headers
    assert "X-Forwarded-Proto $scheme" in headers
    assert "X-Request-ID $newsdesk_request_id" in headers


def test_nginx_waits_longer_than_the_longest_query_the_app_allows() -> None:
    location = _block(_text(), "location /")
    (read,) = _directive(location, "proxy_read_timeout")
    statement_ms = Settings.model_fields["db_statement_timeout_ms"].default
    assert _seconds(read) > statement_ms / 1000


def test_rendering_changes_only_addresses_and_the_log_path(tmp_path: Path) -> None:
    shipped = _text().splitlines()
    rendered = render(["127.0.0.1:1"], "127.0.0.1:2", tmp_path / "a.log").splitlines()
    assert len(shipped) == len(rendered)
    changed = [(a.strip(), b.strip()) for a, b in zip(shipped, rendered, strict=True) if a != b]
    assert [a.split()[0] for a, _ in changed] == ["server", "listen", "access_log"]
    assert changed[0][1] == "server 127.0.0.1:1 max_fails=3 fail_timeout=10s;"
    # Three instances: three server lines with the same parameters, nothing else added.
    three = render([f"127.0.0.1:{p}" for p in (1, 2, 3)], "127.0.0.1:9", tmp_path / "a.log")
    assert len(three.splitlines()) == len(shipped) + 2


def test_nginx_t_accepts_the_rendered_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "nginx", ["127.0.0.1:1"], f"127.0.0.1:{free_port()}")
    done = subprocess.run(
        [_nginx(), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


# --- a real nginx in front of a real Newsdesk -------------------------------------------------


@pytest.fixture(scope="module")
def app(module_live_server: LiveServers) -> LiveServer:
    """Newsdesk (with the test probes) as it runs behind nginx: nginx's address trusted, the
    default body limit."""
    return module_live_server(
        PROBE_APP,
        TRUSTED_PROXIES="127.0.0.1",
        MAX_CONTENT_LENGTH=str(MAX_BODY),
        RATE_LIMIT_READ=f"{READ_LIMIT}/day",
    )


@pytest.fixture(scope="module")
def front(app: LiveServer, module_nginx: Proxies) -> Nginx:
    """nginx with the shipped configuration in front of ``app``."""
    return module_nginx(app)


def _loopback_clients(count: int) -> list[str]:
    """Distinct loopback addresses other than 127.0.0.1, new on every run (fresh rate-limit
    identities even on a Redis kept between runs)."""
    chosen: set[str] = set()
    while len(chosen) < count:
        chosen.add(
            f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        )
    return sorted(chosen)


def _remaining_after_read(url: str, source: str, **headers: str) -> int:
    """One article list read through ``url`` from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as http:
        response = http.get(url + "/api/v1/articles?per_page=1", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["RateLimit-Limit"] == str(READ_LIMIT)
    return int(response.headers["RateLimit-Remaining"])


def test_each_client_behind_nginx_is_counted_as_itself(front: Nginx) -> None:
    """Every request reaches the app from nginx (127.0.0.1); with TRUSTED_PROXIES=127.0.0.1 the
    app counts each one against the address nginx appended to X-Forwarded-For."""
    a, b, c = _loopback_clients(3)
    # A new client starts with a full allowance, and a second client is not charged for the
    # first one's reads: counted per forwarded address, not per nginx.
    assert _remaining_after_read(front.url, a) == READ_LIMIT - 1
    assert _remaining_after_read(front.url, a) == READ_LIMIT - 2
    assert _remaining_after_read(front.url, b) == READ_LIMIT - 1
    # A client cannot borrow another's identity: nginx appends the real peer, and the app takes
    # the right-most hop that is not a trusted proxy. (c claims to be a.)
    assert _remaining_after_read(front.url, c, **{"X-Forwarded-For": a}) == READ_LIMIT - 1
    assert _remaining_after_read(front.url, a) == READ_LIMIT - 3


def test_upstream_connections_are_kept_alive(front: Nginx) -> None:
    with httpx.Client(base_url=front.url, timeout=30) as http:
        seen = [http.get("/_test/environ").json() for _ in range(5)]
    assert {s["SERVER_PROTOCOL"] for s in seen} == {"HTTP/1.1"}
    assert {s["REMOTE_ADDR"] for s in seen} == {"127.0.0.1"}
    # One nginx worker, requests one after another: all five over one upstream connection.
    assert len({s["REMOTE_PORT"] for s in seen}) == 1, seen


def _logged(read: Callable[[], str], text: str) -> str:
    """Polls ``read()`` (a log, written through a buffer) until ``text`` is in it (bounded)."""
    for _ in range(300):
        found = read()
        if text in found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged")


def test_request_ids_pass_through_or_come_from_nginx(front: Nginx, app: LiveServer) -> None:
    with httpx.Client(base_url=front.url, timeout=30) as http:
        chosen = http.get("/healthz", headers={"X-Request-ID": "deploy-test:1.a_b"})
        made = http.get("/healthz")
        malformed = http.get("/healthz", headers={"X-Request-ID": "not an id!"})
    assert chosen.headers["X-Request-ID"] == "deploy-test:1.a_b"
    for response in (made, malformed):
        rid = response.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
        # The id nginx logged is the one the app used and answered with.
        _logged(front.access_log, f"rid={rid}")
        _logged(app.log, rid)  # the app's access log line (text or JSON) carries the id
    _logged(app.log, "deploy-test:1.a_b")


def test_a_body_over_the_limit_is_refused_by_nginx_in_the_app_envelope(
    front: Nginx, app: LiveServer
) -> None:
    with httpx.Client(base_url=front.url, timeout=60) as http:
        at_limit = http.post("/_test/body", content=b"x" * MAX_BODY)
        over = http.post("/_test/body", content=b"x" * (MAX_BODY + 1))
        after = http.get("/healthz")
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["length"] == MAX_BODY
    assert over.status_code == 413
    assert over.headers["Content-Type"] == "application/json"
    error = over.json()["error"]
    assert error["code"] == "request_entity_too_large"
    assert error["message"] == f"The request body is larger than {MAX_BODY} bytes."
    assert error["request_id"] == over.headers["X-Request-ID"]
    # nginx answered it: the app logged the request after it, never the refused one.
    log = _logged(app.log, after.headers["X-Request-ID"])
    assert over.headers["X-Request-ID"] not in log
    assert at_limit.headers["X-Request-ID"] in log


def test_no_instance_answering_is_a_502_in_the_envelope(tmp_path: Path) -> None:
    proxy = Nginx(tmp_path / "nginx", [f"127.0.0.1:{free_port()}"])  # nothing listens there
    try:
        response = httpx.get(proxy.wait_listening().url + "/api/v1/articles", timeout=30)
    finally:
        proxy.stop()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "bad_gateway"
    assert error["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "path",
    ["/metrics", "/readyz", "/metrics?name=x", "//metrics", "/%6Detrics", "/api/../readyz"],
)
def test_internal_endpoints_are_refused_by_nginx_in_the_app_envelope(
    front: Nginx, app: LiveServer, path: str
) -> None:
    """/metrics and /readyz are for Prometheus and the orchestrator, which reach each instance
    directly: through nginx they do not exist, however the path is spelt."""
    with httpx.Client(base_url=front.url, timeout=30) as http:
        # httpx would normalise the path: send it exactly as written.
        refused = http.send(http.build_request("GET", front.url, extensions={"target": path}))
        after = http.get("/healthz")
    assert refused.status_code == 404, refused.text
    assert refused.headers["Content-Type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "not_found"  # the app's own code for an unknown URL
    assert error["request_id"] == refused.headers["X-Request-ID"]
    # nginx answered it: the app logged the request after it, never the refused one.
    log = _logged(app.log, after.headers["X-Request-ID"])
    assert refused.headers["X-Request-ID"] not in log


def test_the_public_api_and_its_documentation_pass_through_nginx(
    front: Nginx, app: LiveServer
) -> None:
    with httpx.Client(base_url=front.url, timeout=30) as http:
        answers = [http.get(path) for path in ("/api/v1/articles", "/docs", "/healthz")]
    assert [a.status_code for a in answers] == [200, 200, 200]
    # Each reached the app, which still serves /metrics and /readyz to whoever reaches it
    # directly (Prometheus, the orchestrator).
    for answer in answers:
        _logged(app.log, answer.headers["X-Request-ID"])
    assert httpx.get(app.url + "/metrics", timeout=30).status_code == 200
    assert httpx.get(app.url + "/readyz", timeout=30).status_code == 200
