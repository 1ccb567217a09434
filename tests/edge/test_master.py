"""service.edge.master: SIGTERM under load with two workers finishes every request received.

``python -m service serve`` with ``WEB_CONCURRENCY=2`` (the production command), real
sockets: uploads still arriving when the signal comes, idle keep-alive connections, then
the whole process tree's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from service.cli.embedded import free_port
from service.cli.harness import http_ok, spawn, wait_until
from tests.conftest import server_env
from tests.support.api import Account, account
from tests.support.databases import ROOT, ServerStack, plain_url
from tests.support.fleet import descendants

UPLOADS = 6


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m service serve`` with ``env`` as its whole environment."""
    command = [sys.executable, "-m", "service", "serve"]
    return spawn(command, env, log, cwd=ROOT, inherit_env=False, name="service serve").proc


def _two_workers(stack: ServerStack, tmp_path: Path, port: int) -> dict[str, str]:
    """The environment of ``service serve`` with two workers on ``port``."""
    return {
        **os.environ,
        **server_env(stack),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    if not wait_until(http_ok(url + "/healthz"), proc, 90, 0.2):
        assert proc.poll() is None, "the server exited during start-up"
        raise AssertionError("the server did not start")


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(60)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


async def _articles_titled(stack: ServerStack, prefix: str) -> int:
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM articles WHERE title LIKE $1", prefix + "%")
        )
    finally:
        await conn.close()


def _read_one(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


async def _new_account(url: str) -> Account:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await account(http)


def test_sigterm_with_two_workers_answers_every_request_received(
    stack: ServerStack, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **server_env(stack),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log = tmp_path / "server.log"
    proc = _start(env, log)
    sockets: list[socket.socket] = []
    uploads: list[tuple[socket.socket, bytes]] = []
    try:
        _wait_ready(url, proc)
        author = asyncio.run(_new_account(url))
        prefix = f"Drained {port} "
        for number in range(UPLOADS):
            body = json.dumps({"title": f"{prefix}{number}", "content": "x" * 2000}).encode()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            head = (
                f"POST /api/v1/articles HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nAPI-Key: {author.key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sockets.append(sock)
            sock.sendall(head + body[:100])  # the request has arrived; its body has not
            uploads.append((sock, body[100:]))
        # Idle keep-alive connections, one request answered on each.
        idle = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sockets.append(sock)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert _read_one(sock).startswith(b"HTTP/1.1 200")
            idle.append(sock)
        time.sleep(1.0)  # every upload's head read by a worker
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        for sock, rest in uploads:  # the rest of each body, after the signal
            for start in range(0, len(rest), 500):
                sock.sendall(rest[start : start + 500])
        answers = [_read_response(sock) for sock, _ in uploads]
        for answer in answers:
            head = answer.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 201"), answer[:300]
            assert b"connection: close" in head, answer[:300]
        for sock in idle:  # closed by the server, not left open until the keep-alive timeout
            assert _read_response(sock) == b""
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for sock in sockets:
            sock.close()
    assert asyncio.run(_articles_titled(stack, prefix)) == UPLOADS
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "stopping 2 worker(s) gracefully" in text
    assert "all workers stopped" in text
    with_workers = [line for line in text.splitlines() if "stopping:" in line]
    assert len(with_workers) == 2, text  # each worker drained itself


def test_a_second_signal_changes_nothing_and_a_stop_without_load_is_quick(
    stack: ServerStack, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start(_two_workers(stack, tmp_path, port), log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert text.count("gracefully") == 1, text
    assert "Traceback" not in text, text


def test_a_request_still_running_at_the_graceful_timeout_is_cut_cleanly(
    stack: ServerStack, tmp_path: Path
) -> None:
    config = tmp_path / "hypercorn.toml"
    toml = (ROOT / "hypercorn.toml").read_text()
    config.write_text(toml.replace("graceful_timeout = 20", "graceful_timeout = 3"))
    port = free_port()
    env = {
        **os.environ,
        **server_env(stack),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "HYPERCORN_CONFIG": str(config),
        "BODY_GRACE_SECONDS": "60",  # the body-rate limit must not be what cuts it
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log = tmp_path / "server.log"
    proc = _start(env, log)
    sock = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc)
        author = asyncio.run(_new_account(url))
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(
            (
                f"POST /api/v1/articles HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nAPI-Key: {author.key}\r\n"
                "Content-Length: 5000\r\n\r\n{"
            ).encode()
        )  # and never the rest
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
        assert b"retry-after" in answer.lower()
        assert proc.wait(60) == 0
    finally:
        if sock is not None:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "1 request(s) still running at the graceful timeout: cut" in text, text
    assert "Traceback" not in text, text


def test_workers_whose_master_was_killed_drain_and_exit(stack: ServerStack, tmp_path: Path) -> None:
    """SIGKILL reaches the master alone and no handler sees it: the workers, which ignore
    SIGTERM, notice their master is gone, drain, and exit; nothing keeps the port open."""
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start(_two_workers(stack, tmp_path, port), log)
    under: list[int] = []
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        under = descendants(proc.pid)
        assert len(under) >= 2, under  # the two workers (and multiprocessing's tracker)
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in under):
            assert time.monotonic() < deadline, f"orphans left: {under}\n{log.read_text()}"
            time.sleep(0.1)
    finally:
        for pid in under:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert text.count("the master process (pid") == 2, text
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # refused: nobody listens


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie whose parent is gone is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
