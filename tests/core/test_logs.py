"""service.core.logs: the JSON and text formats, redaction, and, end to end, a real Hypercorn
and a real worker with ``LOG_FORMAT=json`` whose every line is one JSON object of one schema,
with no e-mail address or credential in it after register, login, publish and a password
reset."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.core import logs
from service.core.request_id import current_request_id
from service.core.settings import DEFAULT_SECRET_KEY, Settings
from service.domain.credentials import new_api_key, new_session_token
from service.domain.password_reset import address_tag, make_token
from tests.conftest import LiveServers, Workers
from tests.support.api import account, publish, unique_email
from tests.support.databases import ServerStack
from tests.support.live import LiveServer
from tests.support.worker import WorkerProcess

REQUIRED = {"time", "level", "logger", "message", "request_id", "job_id", "pid"}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("service.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def formatted(fmt: logs.LogFormat, made: logging.LogRecord) -> str:
    logs.RequestIdFilter().filter(made)
    return logs.formatter(fmt).format(made)


# --- the formats ---------------------------------------------------------------------------


def test_a_json_line_has_the_schema_and_the_context_ids() -> None:
    token = current_request_id.set("rid-json-1")
    job = logs.current_job_id.set("process:7:2")
    try:
        line = json.loads(formatted("json", record("article %s: %s", 7, "processed")))
    finally:
        logs.current_job_id.reset(job)
        current_request_id.reset(token)
    assert line.keys() >= REQUIRED
    assert TIME.fullmatch(line["time"])
    assert line["level"] == "INFO" and line["logger"] == "service.test"
    assert line["message"] == "article 7: processed"
    assert (line["request_id"], line["job_id"]) == ("rid-json-1", "process:7:2")
    assert "trace_id" not in line  # tracing is off


def test_outside_a_request_the_ids_are_null() -> None:
    line = json.loads(formatted("json", record("idle")))
    assert (line["request_id"], line["job_id"]) == (None, None)


def test_access_fields_are_kept_and_unknown_extras_are_not() -> None:
    made = record("access", route="/api/v1/articles/<id>", status=200, duration_ms=1.5, secret="x")
    line = json.loads(formatted("json", made))
    assert (line["route"], line["status"], line["duration_ms"]) == (
        "/api/v1/articles/<id>",
        200,
        1.5,
    )
    assert "secret" not in line


def test_an_error_carries_its_traceback() -> None:
    try:
        raise RuntimeError("broken for bob@example.com")
    except RuntimeError:
        made = logging.LogRecord(
            "service.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json.loads(formatted("json", made))
    assert line["level"] == "ERROR"
    assert "Traceback" in line["exception"] and "RuntimeError: broken for" in line["exception"]
    assert "bob@example.com" not in line["exception"]


def test_the_text_format_is_unchanged() -> None:
    token = current_request_id.set("rid-text-1")
    job = logs.current_job_id.set("process:1:1")
    try:
        text = formatted("text", record("hello"))
    finally:
        logs.current_job_id.reset(job)
        current_request_id.reset(token)
    assert text.endswith(" INFO service.test [rid=rid-text-1 job=process:1:1] hello")


def test_real_credentials_and_addresses_are_redacted() -> None:
    key, _ = new_api_key()
    session = new_session_token()
    reset = make_token(DEFAULT_SECRET_KEY, user_id=1, password_hash="h", ttl=60, now=0)
    text = f"to Ann.Lee+x@mail.example.org key={key} {session} token={reset} Bearer {key}"
    cleaned = logs.redact(text)
    for secret in (key, session, reset, "Ann.Lee+x@mail.example.org"):
        assert secret not in cleaned
    assert cleaned.count(logs.EMAIL_PLACEHOLDER) == 1
    # Ordinary lines go through untouched.
    plain = 'GET /api/v1/articles/7 200 "and_then" nd_ short'
    assert logs.redact(plain) == plain


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        ("%6.2fs → %s(%s)%s", (0.1, "process:7:2:process_article", "7, 2", ""), "process:7:2"),
        ("%6.2fs ← %s ● %s", (0.1, "0f3a:send_email", "'sent'"), "0f3a"),
        (
            "%6.2fs ⊘ %s:%s aborted before start",
            (0.1, "process:7:2", "process_article"),
            "process:7:2",
        ),
        ("%6.2fs → %s(%s)%s", (0.1, "cron:sweep_pending", "", ""), None),
        ("recording health: %s", ("j_complete=1",), None),
    ],
)
def test_arq_lines_name_their_job(
    message: str, args: tuple[Any, ...], expected: str | None
) -> None:
    made = logging.LogRecord("arq.worker", logging.INFO, __file__, 1, message, args, None)
    assert json.loads(formatted("json", made))["job_id"] == expected


def test_an_address_cut_short_by_arq_is_still_redacted() -> None:
    # arq shortens the argument list of its "job started" line to 80 characters.
    line = "send_email('password_reset', 'a.very.long.local.part.of.an.address@mail.exam…)"
    assert logs.redact(line) == "send_email('password_reset', '<email>…)"


def test_a_private_argument_is_hidden_from_repr_and_survives_pickling() -> None:
    address = logs.Private("ann@example.com")
    assert repr(address) == "<private>" and "ann@" not in repr(("send_email", address))
    again = pickle.loads(pickle.dumps(address))  # arq's default job serializer
    assert again == "ann@example.com" and isinstance(again, str)


def test_the_address_tag_is_stable_and_keyed() -> None:
    assert address_tag("k1", "Ann@Example.com ") == address_tag("k1", "ann@example.com")
    assert address_tag("k1", "ann@example.com") != address_tag("k2", "ann@example.com")
    assert len(address_tag("k1", "ann@example.com")) == 12


@pytest.mark.parametrize(
    ("env", "chosen", "expected"),
    [
        ("development", None, "text"),
        ("test", None, "text"),
        ("production", None, "json"),
        ("production", "text", "text"),
        ("development", "json", "json"),
    ],
)
def test_the_default_format_follows_env(env: str, chosen: str | None, expected: str) -> None:
    settings = Settings(
        env=env,
        log_format=chosen,
        secret_key="s" * 40,
        password_reset_url="https://news.example.com/reset-password#token={token}",
    )
    assert settings.resolved_log_format == expected


def test_configure_logging_keeps_one_handler() -> None:
    root = logging.getLogger()
    before = root.level
    try:
        logs.configure_logging("INFO", "json")
        logs.configure_logging("INFO", "text")
        assert root.handlers.count(logs.handler()) == 1
        assert isinstance(logs.handler().formatter, logs.TextFormatter)
    finally:
        root.setLevel(before)


# --- a real server and a real worker -------------------------------------------------------


def other_redis_db(url: str, db: int) -> str:
    """The same Redis server, database ``db``: a queue no other test's jobs are on."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


@pytest.fixture
def json_env(stack: ServerStack, tmp_path: Path) -> dict[str, Any]:
    return {
        "ENV": "test",
        "LOG_FORMAT": "json",
        "REDIS_URL": other_redis_db(stack.redis_url, 6),
        "MAIL_OUTBOX": str(tmp_path / "outbox"),
        "WORKER_METRICS_PORT": "0",
    }


@pytest.fixture
def json_server(live_server: LiveServers, json_env: dict[str, Any]) -> LiveServer:
    return live_server(**json_env)


@pytest.fixture
def json_worker(json_env: dict[str, Any], worker: Workers) -> WorkerProcess:
    return worker(**json_env)


def json_lines(text: str, where: str) -> list[dict[str, Any]]:
    """Every line of a log as a JSON object with the common fields (fails on any other)."""
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            found = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{where} line {number} is not JSON: {line!r}") from None
        assert isinstance(found, dict) and found.keys() >= REQUIRED, (where, line)
        parsed.append(found)
    return parsed


async def wait_until(check: Any, what: str, seconds: float = 60) -> None:
    for _ in range(int(seconds * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_server_and_worker_write_one_json_schema_and_no_secrets(
    json_server: LiveServer,
    json_worker: WorkerProcess,
    pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    async with httpx.AsyncClient(base_url=json_server.url, timeout=30) as http:
        ann = await account(http)  # register, log in, make an API key
        article = await publish(http, ann, title="Trams", content="Trams run all night.")
        named = await http.get(
            f"/api/v1/articles/{article['id']}", headers={"X-Request-ID": "logs-json-read-1"}
        )
        assert named.status_code == 200
        reset = await http.post(
            "/api/v1/auth/reset-password",
            json={"email": ann.email},
            headers={"X-Request-ID": "logs-json-reset-1"},
        )
        nobody = unique_email("nobody")
        unknown = await http.post("/api/v1/auth/reset-password", json={"email": nobody})
        assert (reset.status_code, unknown.status_code) == (202, 202)
        missing = await http.get("/api/v1/articles/999999999")
        assert missing.status_code == 404

        async def processed() -> bool:
            status = await pg.fetchval("SELECT status FROM articles WHERE id = $1", article["id"])
            return bool(status == "processed")

        async def mailed() -> bool:
            return any((tmp_path / "outbox").glob("*.eml"))

        await wait_until(processed, "the article to be processed")
        await wait_until(mailed, "the reset mail")
        await json_worker.wait_for_log("no account has this address")
        mail = next((tmp_path / "outbox").glob("*.eml")).read_text()
        found = re.search(r"token=([A-Za-z0-9_.\-]+)", mail)
        assert found is not None
        token = found.group(1)
        confirmed = await http.post(
            "/api/v1/auth/reset-password/confirm",
            json={"token": token, "new_password": "another long passphrase"},
        )
        assert confirmed.status_code == 204, confirmed.text
    json_server.stop()  # every line written
    json_worker.stop()
    server_log, worker_log = json_server.log(), json_worker.log()
    server_lines = json_lines(server_log, "server")
    worker_lines = json_lines(worker_log, "worker")

    # Access lines: the request id answered, the route template, status and duration.
    access = [line for line in server_lines if line["logger"] == "hypercorn.access"]
    by_id = {line["request_id"]: line for line in access}
    read = by_id["logs-json-read-1"]
    assert read["route"] == "/api/v1/articles/<id:article_id>"
    assert (read["method"], read["path"], read["status"]) == (
        "GET",
        f"/api/v1/articles/{article['id']}",
        200,
    )
    assert isinstance(read["duration_ms"], float) and read["duration_ms"] >= 0
    generated = by_id[missing.headers["X-Request-ID"]]  # an id the server made up
    assert (generated["status"], generated["route"]) == (404, read["route"])
    assert all({"route", "status", "duration_ms"} <= line.keys() for line in access)
    assert by_id["logs-json-reset-1"]["route"] == "/api/v1/auth/reset-password"

    # Worker lines: the job id, and the id of the request that enqueued the job.
    job_id = f"process:{article['id']}:1"
    processing = [line for line in worker_lines if f"article {article['id']} " in line["message"]]
    assert processing, worker_log
    assert processing[-1]["job_id"] == job_id
    # arq's own lines about the job (started, done) name it too.
    arq_lines = [line for line in worker_lines if f"{job_id}:process_article" in line["message"]]
    assert len(arq_lines) >= 2 and {line["job_id"] for line in arq_lines} == {job_id}
    mailed_lines = [line for line in worker_lines if "mail sent to user" in line["message"]]
    assert mailed_lines and mailed_lines[0]["request_id"] == "logs-json-reset-1"
    assert mailed_lines[0]["job_id"]
    assert f"user {ann.id}" in mailed_lines[0]["message"]

    # No address, key, session token or reset token anywhere.
    for text in (server_log, worker_log):
        for secret in (ann.email, nobody, ann.key, ann.token, token):
            assert secret not in text
        assert EMAIL.findall(text) == []
