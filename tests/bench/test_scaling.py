"""bench.lab.scaling: the news mix's shares, its wrk script (run for real by wrk against a
loopback server that records what it is sent), the refusals read from nginx's access log and
the verdict (the claim itself runs the cluster: ``python -m bench.lab --only scaling``)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.lab import scaling
from service.cli.seed import SEED_PASSWORD, TAGS
from service.domain.schemas import ArticleCreate

KEY = "nd_" + "k" * 48


def test_the_mix_draws_each_kind_by_its_cumulative_share() -> None:
    assert scaling.thresholds() == [
        ("read", 800),
        ("list", 910),
        ("tag", 960),
        ("write", 995),
        ("login", 1000),
    ]
    with pytest.raises(ValueError, match="999 per 1,000"):
        scaling.thresholds((("read", 999),))


def test_refusals_are_counted_by_route_and_status_without_wrks_own_hang_ups() -> None:
    log = "\n".join(
        f'127.0.0.1 "{request} HTTP/1.1" {status} 10 0.010 upstream=127.0.0.1:1 status={status} '
        "time=0.010 rid=x"
        for request, status in [
            ("GET /api/v1/articles/7", 200),
            ("GET /api/v1/articles/8", 304),
            ("GET /api/v1/articles/9", 503),
            ("GET /api/v1/articles/10", 503),
            ("GET /api/v1/articles?tag=science", 502),
            ("POST /api/v1/auth/login", 503),
            ("POST /api/v1/articles", 499),
        ]
    )
    assert scaling.failures(log) == {
        "GET /api/v1/articles 502": 1,
        "GET /api/v1/articles/{id} 503": 2,
        "POST /api/v1/auth/login 503": 1,
    }


def test_the_verdict_says_what_the_figures_say() -> None:
    flat = scaling.verdict(300.0, 310.0, 312.0, busy=0.97, cores=(0.6, 0.6, 0.61))
    assert flat.startswith("Scaling out did not pay on one machine: behind nginx")
    assert "2 instances gave 1.03x the requests of one and 3 gave 1.04x" in flat
    assert "already 97% busy" in flat
    assert "(the instances used 0.60, 0.60 and 0.61 cores)" in flat
    little = scaling.verdict(300.0, 330.0, 370.0, busy=1.0, cores=(0.8, 0.9, 1.04))
    assert little.startswith("Scaling out on one machine gained little")
    scaled = scaling.verdict(300.0, 540.0, 560.0, busy=0.5, cores=(0.9, 1.6, 1.7))
    assert scaled.startswith("Scaling out works up to the cores there are")
    assert "with one instance the cores were 50% busy" in scaled


def test_busy_is_the_share_of_cpu_time_not_idle() -> None:
    before = {"user": 10.0, "system": 5.0, "idle": 80.0, "iowait": 5.0}
    after = {"user": 16.0, "system": 7.0, "idle": 81.0, "iowait": 6.0}
    assert scaling.busy(before, after) == 0.8
    assert scaling.busy(before, before) == 0.0


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: wrk ends its run by closing connections in the middle of requests."""


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_mix_script_sends_valid_requests_skewed_to_the_newest(
    tmp_path: Path, recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]]
) -> None:
    url, seen = recorder
    script = tmp_path / "mix.lua"
    script.write_text(scaling.mix_lua(101, 1100, KEY, authors=5))
    command = ["wrk", "-t1", "-c2", "-d1s", "--timeout", "5s", "-s", str(script), url]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    assert len(seen) >= 50
    reads = []
    for method, path, headers, body in seen:
        if method == "GET" and path.startswith("/api/v1/articles/"):
            reads.append(int(path.rsplit("/", 1)[1]))
        elif method == "GET":
            assert path == "/api/v1/articles" or path in {
                *(f"/api/v1/articles?page={n}" for n in range(2, 6)),
                *(f"/api/v1/articles?tag={t}" for t in TAGS),
            }
        elif path == "/api/v1/articles":
            assert method == "POST" and headers["API-Key"] == KEY
            article = ArticleCreate.model_validate_json(body)
            assert article.tags and article.tags[0] in TAGS
        else:
            assert (method, path) == ("POST", "/api/v1/auth/login")
            login = json.loads(body)
            assert login["password"] == SEED_PASSWORD
            assert login["email"] in {f"seed-author-{n}@example.com" for n in range(1, 6)}
    assert len(reads) > len(seen) / 2
    assert all(101 <= article <= 1100 for article in reads)
    # P(among the newest 30%) = 0.3 ** (1/3), about 0.67 of the reads, against 0.3 unskewed.
    assert sum(article > 800 for article in reads) > len(reads) / 2
