"""service.domain.password_reset and its endpoints: signed single-use tokens, the mail job in a real
worker, a real SMTP server, and the reset through the live API."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from arq import Retry
from itsdangerous import URLSafeSerializer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.cli.embedded import free_port
from service.core.settings import DEFAULT_SECRET_KEY, Settings
from service.domain.login_sessions import create_session, session_user
from service.domain.models import User
from service.domain.password_reset import (
    InvalidResetToken,
    make_token,
    read_token,
    request_reset,
    reset_mail_text,
    reset_password,
)
from service.domain.passwords import hash_password, verify_password
from service.domain.schemas import CONTROL_CHARACTERS
from service.domain.users import create_user
from service.infra.resources import Resources
from service.jobs.tasks import send_email
from tests.conftest import Workers
from tests.support.api import PASSWORD, login, register, unique_email
from tests.support.databases import ServerStack
from tests.support.live import LiveServer
from tests.support.smtp import SmtpServer, smtp_server
from tests.support.worker import WorkerProcess

SECRET = "unit-test-secret-unit-test-secret"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
NOW = 1_800_000_000.0
NEW_PASSWORD = "a brand new passphrase"
# The live server's signing key (tests/conftest.py does not set one).
LIVE_SECRET = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
TOKEN_IN_MAIL = re.compile(r"token=([A-Za-z0-9_.\-]+)")


def tamper(token: str) -> str:
    """``token`` with one character of its signature changed (in the middle: the last one
    carries padding bits, where a change may decode to the same bytes)."""
    payload, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "x" if signature[middle] != "x" else "y"
    return f"{payload}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


# --- tokens ------------------------------------------------------------------------------


def test_a_fresh_token_names_its_user_and_matches_the_current_password() -> None:
    token = make_token(SECRET, user_id=7, password_hash=HASH, ttl=600, now=NOW)
    claim = read_token(SECRET, token, now=NOW + 599)
    assert claim.user_id == 7 and claim.expires_at == NOW + 600
    assert claim.matches(HASH)
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)  # safe in a URL as it is


def test_a_token_expires_after_its_lifetime() -> None:
    token = make_token(SECRET, user_id=7, password_hash=HASH, ttl=600, now=NOW)
    with pytest.raises(InvalidResetToken, match="expired"):
        read_token(SECRET, token, now=NOW + 600)


def test_a_tampered_token_is_refused() -> None:
    token = make_token(SECRET, user_id=7, password_hash=HASH, ttl=600, now=NOW)
    signature = token.rpartition(".")[2]
    forged_payload = make_token(SECRET, user_id=8, password_hash=HASH, ttl=600, now=NOW)
    for forged in (
        tamper(token),
        forged_payload.rpartition(".")[0] + "." + signature,  # another user, this signature
        "not-a-token",
    ):
        with pytest.raises(InvalidResetToken):
            read_token(SECRET, forged, now=NOW)


def test_a_token_signed_with_another_secret_or_purpose_is_refused() -> None:
    other_secret = make_token("another-secret", user_id=7, password_hash=HASH, ttl=600, now=NOW)
    payload = {"u": 7, "f": "0" * 16, "e": int(NOW) + 600}
    other_salt = URLSafeSerializer(SECRET, salt="something-else").dumps(payload)
    for token in (other_secret, other_salt):
        with pytest.raises(InvalidResetToken, match="signature"):
            read_token(SECRET, token, now=NOW)


def test_a_well_signed_token_of_the_wrong_shape_is_refused() -> None:
    serializer = URLSafeSerializer(SECRET, salt="password-reset")
    for payload in ([7], {"u": "7", "f": "x", "e": int(NOW) + 600}, {"u": 7}):
        with pytest.raises(InvalidResetToken, match="malformed"):
            read_token(SECRET, str(serializer.dumps(payload)), now=NOW)


def test_a_token_stops_matching_once_the_password_changes() -> None:
    token = make_token(SECRET, user_id=7, password_hash=HASH, ttl=600, now=NOW)
    claim = read_token(SECRET, token, now=NOW)
    assert not claim.matches(HASH.replace("aGFz", "b3Ro"))


# --- data functions and the job, against real PostgreSQL and Redis ---------------------------


@asynccontextmanager
async def started(stack: ServerStack, **settings: Any) -> AsyncIterator[Resources]:
    base = {"database_url": stack.database_url, "redis_url": stack.redis_url, "env": "test"}
    res = Resources(Settings(**{**base, **settings}), application_name="newsdesk-tests")
    await res.start()
    assert res.redis is not None and res.cache is not None
    # Resources.close() leaves the Redis pools' connections open (the clients were given
    # their pools, so aclose() does not disconnect them): disconnect them here.
    pools = [res.redis.connection_pool, res.cache.redis.connection_pool]
    try:
        yield res
    finally:
        await res.close()
        for pool in pools:
            await pool.disconnect()


@pytest.fixture
async def res(stack: ServerStack) -> AsyncIterator[Resources]:
    async with started(stack, secret_key=SECRET) as resources:
        yield resources


async def new_user(res: Resources) -> User:
    assert res.sessionmaker is not None
    async with res.sessionmaker() as session:
        user = await create_user(
            session,
            email=unique_email("reset"),
            name="Ann",
            password_hash=await hash_password(PASSWORD),
        )
        await session.commit()
    return user


async def use_token(res: Resources, token: str, password: str = NEW_PASSWORD) -> int:
    assert res.sessionmaker is not None and res.redis is not None
    async with res.sessionmaker() as session:
        return await reset_password(
            session, res.redis, secret=SECRET, token=token, new_password=password, now=time.time()
        )


async def stored_hash(res: Resources, user_id: int) -> str:
    assert res.sessionmaker is not None
    async with res.sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return str(user.password_hash)


async def test_a_reset_sets_the_password_ends_sessions_and_works_once(res: Resources) -> None:
    assert res.redis is not None
    user = await new_user(res)
    sessions = [(await create_session(res.redis, user_id=user.id, ttl=60))[0] for _ in range(2)]
    token = make_token(
        SECRET, user_id=user.id, password_hash=user.password_hash, ttl=60, now=time.time()
    )
    assert await use_token(res, token) == user.id
    assert await verify_password(await stored_hash(res, user.id), NEW_PASSWORD)
    assert [await session_user(res.redis, s) for s in sessions] == [None, None]
    with pytest.raises(InvalidResetToken):
        await use_token(res, token, "yet another passphrase")
    assert await verify_password(await stored_hash(res, user.id), NEW_PASSWORD)


async def test_two_concurrent_uses_of_one_token_change_the_password_once(
    res: Resources, pg: asyncpg.Connection
) -> None:
    user = await new_user(res)
    token = make_token(
        SECRET, user_id=user.id, password_hash=user.password_hash, ttl=60, now=time.time()
    )
    # Hold the user's row so that both uses are under way, waiting on it, at the same time.
    held = pg.transaction()
    await held.start()
    await pg.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user.id)
    both = asyncio.gather(
        use_token(res, token, "first new passphrase"),
        use_token(res, token, "second new passphrase"),
        return_exceptions=True,
    )
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = $1 AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while await pg.fetchval(waiting, res.application_name) < 2:
        assert time.monotonic() < deadline, "the two uses never both reached the database"
        await asyncio.sleep(0.02)
        await pg.execute("SELECT pg_stat_clear_snapshot()")  # else frozen for the transaction
    await held.rollback()
    outcomes = await both
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidResetToken", "int"], outcomes
    winner = ["first new passphrase", "second new passphrase"][outcomes.index(user.id)]
    assert await verify_password(await stored_hash(res, user.id), winner)


async def test_a_token_of_a_deleted_user_is_refused(res: Resources, pg: asyncpg.Connection) -> None:
    user = await new_user(res)
    token = make_token(
        SECRET, user_id=user.id, password_hash=user.password_hash, ttl=60, now=time.time()
    )
    await pg.execute("DELETE FROM users WHERE id = $1", user.id)
    with pytest.raises(InvalidResetToken):
        await use_token(res, token)


async def test_without_redis_nothing_changes_and_the_token_stays_good(
    stack: ServerStack, res: Resources
) -> None:
    user = await new_user(res)
    token = make_token(
        SECRET, user_id=user.id, password_hash=user.password_hash, ttl=60, now=time.time()
    )
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with started(stack, secret_key=SECRET, redis_url=dead) as no_redis:
        assert await request_reset(no_redis, user.email) is False  # the view answers 503
        with pytest.raises(RedisConnectionError):
            await use_token(no_redis, token)
    assert await stored_hash(res, user.id) == user.password_hash
    assert await use_token(res, token) == user.id


async def test_the_job_mails_a_working_token_to_a_known_address_only(
    stack: ServerStack, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    async with started(stack, secret_key=SECRET, mail_outbox=str(outbox)) as res:
        user = await new_user(res)
        ctx = {"resources": res, "job_id": "test-job"}
        assert await send_email(ctx, "password_reset", unique_email("nobody")) == "skipped"
        assert not outbox.exists()
        assert await send_email(ctx, "newsletter", user.email) == "skipped"
        assert await send_email(ctx, "password_reset", user.email) == "sent"
        (eml,) = outbox.iterdir()
        found = TOKEN_IN_MAIL.search(eml.read_text())
        assert found is not None
        claim = read_token(SECRET, found.group(1), now=time.time())
        assert claim.user_id == user.id and claim.matches(user.password_hash)
        assert claim.expires_at == pytest.approx(time.time() + 3600, abs=5)


def test_the_mail_text_carries_the_name_without_control_characters() -> None:
    settings = Settings(_env_file=None, password_reset_url="https://news.example/r#t={token}")
    name = "Ann\r\nBcc: eve@example.com\x1b[2J\x00\x7f\x85\x9fLee"
    text = reset_mail_text(settings, name=name, token="tok")
    assert text.startswith("Hello AnnBcc: eve@example.com[2JLee,\n\n")
    assert not set(text) & set(CONTROL_CHARACTERS) - {"\n"}


async def test_a_stored_name_with_control_characters_reaches_the_mail_without_them(
    stack: ServerStack,
) -> None:
    """A name stored before control characters were refused (written here directly, past the
    API's validation) is mailed on one line, as text only."""
    with smtp_server() as server:
        async with started(
            stack, secret_key=SECRET, smtp_host=server.host, smtp_port=server.port
        ) as res:
            assert res.sessionmaker is not None
            async with res.sessionmaker() as session:
                user = await create_user(
                    session,
                    email=unique_email("ctl"),
                    name="Eve\r\n\r\nClick http://evil.example\x1b]8;;\x07",
                    password_hash=await hash_password(PASSWORD),
                )
                await session.commit()
            ctx = {"resources": res, "job_id": "test-job"}
            assert await send_email(ctx, "password_reset", user.email) == "sent"
        text = (await server.inbox.wait_for(user.email, within=10)).get_content()
    first, _, rest = text.partition("\n")
    assert first == "Hello EveClick http://evil.example]8;;,"
    assert "evil" not in rest
    assert not set(text) & set(CONTROL_CHARACTERS) - {"\n"}


@pytest.mark.parametrize(
    ("configured", "link", "expected"),
    [
        (
            None,
            "https://news.example:8443/reset-password?token={token}",
            "https://news.example:8443/reset-password?token=",
        ),
        ("https://www.example.org/reset#t={token}", None, "https://www.example.org/reset#t="),
        (None, None, "http://127.0.0.1:8000/reset-password#token="),  # a job from an older API
    ],
)
async def test_the_mail_links_where_the_request_said_else_to_the_setting(
    stack: ServerStack, tmp_path: Path, configured: str | None, link: str | None, expected: str
) -> None:
    outbox = tmp_path / "outbox"
    # Without PASSWORD_RESET_URL only development starts (a job from before the setting).
    env = "test" if configured else "development"
    async with started(
        stack, secret_key=SECRET, mail_outbox=str(outbox), password_reset_url=configured, env=env
    ) as res:
        user = await new_user(res)
        ctx = {"resources": res, "job_id": "test-job"}
        assert await send_email(ctx, "password_reset", user.email, link) == "sent"
        (eml,) = outbox.iterdir()
        text = eml.read_text()
        found = re.search(re.escape(expected) + r"([A-Za-z0-9_.\-]+)", text)
        assert found is not None, text
        assert read_token(SECRET, found.group(1), now=time.time()).user_id == user.id


async def test_the_job_retries_later_when_the_mail_server_is_down(stack: ServerStack) -> None:
    async with started(
        stack, secret_key=SECRET, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2
    ) as res:
        user = await new_user(res)
        with pytest.raises(Retry) as retry:
            await send_email({"resources": res, "job_try": 2}, "password_reset", user.email)
        assert retry.value.defer_score == 20_000  # milliseconds


# --- end to end: live API, real worker, real SMTP server ---------------------------------


@pytest.fixture(scope="module")
def worker(smtp: SmtpServer, module_worker: Workers) -> WorkerProcess:
    return module_worker(SMTP_HOST=smtp.host, SMTP_PORT=str(smtp.port))


def running(worker: WorkerProcess) -> bool:
    return worker.proc is not None and worker.proc.poll() is None


async def wait_for_log(worker: WorkerProcess, pattern: str, within: float = 30) -> str:
    """The first worker log line matching ``pattern``, polling for at most ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and running(worker):
        if found := re.search(pattern, worker.log()):
            return found.group(0)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line /{pattern}/ in {within}s; worker log:\n{worker.log()}")


async def mail_to(smtp: SmtpServer, worker: WorkerProcess, address: str) -> str:
    try:
        message = await smtp.inbox.wait_for(address, within=30, alive=lambda: running(worker))
    except AssertionError:
        raise AssertionError(f"no mail to {address}; worker log:\n{worker.log()}") from None
    text = message.get_content()
    assert isinstance(text, str)
    return text


async def me(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def request_id() -> str:
    return f"reset-{uuid.uuid4().hex}"


async def test_a_mailed_token_sets_a_new_password_and_ends_every_session(
    client: httpx.AsyncClient, smtp: SmtpServer, worker: WorkerProcess, stack: ServerStack
) -> None:
    user = await register(client)
    sessions = [await login(client, user["email"]), await login(client, user["email"])]
    rid = request_id()

    asked = await client.post(
        "/api/v1/auth/reset-password",
        json={"email": user["email"].upper()},  # addresses are compared normalised
        headers={"X-Request-ID": rid},
    )
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "accepted"

    text = await mail_to(smtp, worker, user["email"])
    found = TOKEN_IN_MAIL.search(text)
    assert found is not None, text
    token = found.group(1)
    assert "Hello Ann" in text and token in text.replace(found.group(0), "")  # link and token
    # The job's lines carry its job id and the id of the request that caused it.
    await wait_for_log(worker, rf"\[rid={rid} job=\S+\] .*mail sent to user {user['id']}\b")
    # The token went from the worker to the mail server, never through Redis.
    redis = Redis.from_url(stack.redis_url)
    try:
        async for key in redis.scan_iter(count=1000):
            if await redis.type(key) == b"string":
                assert token.encode() not in (await redis.get(key) or b""), key
    finally:
        await redis.aclose()

    assert [await me(client, s) for s in sessions] == [200, 200]
    confirm = {"token": token, "new_password": NEW_PASSWORD}
    done = await client.post("/api/v1/auth/reset-password/confirm", json=confirm)
    assert done.status_code == 204, done.text
    assert done.content == b"" and "content-type" not in done.headers

    assert [await me(client, s) for s in sessions] == [401, 401]
    old = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    assert await me(client, new.json()["token"]) == 200

    again = await client.post(
        "/api/v1/auth/reset-password/confirm", json={**confirm, "new_password": "third passphrase"}
    )
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_token"


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    client: httpx.AsyncClient, smtp: SmtpServer, worker: WorkerProcess
) -> None:
    known = (await register(client))["email"]
    nobody = unique_email("nobody")
    rid = request_id()
    answers = [
        await client.post(
            "/api/v1/auth/reset-password", json={"email": email}, headers={"X-Request-ID": rid}
        )
        for email in (nobody, known)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content
    await wait_for_log(worker, rf"\[rid={rid} job=\S+\] .*no account has this address")
    await mail_to(smtp, worker, known)
    assert smtp.inbox.to(nobody) == []


async def test_forged_expired_and_malformed_tokens_get_400(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    user = await register(client)
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])

    def token(secret: str = LIVE_SECRET, *, now: float | None = None) -> str:
        return make_token(
            secret,
            user_id=user["id"],
            password_hash=password_hash,
            ttl=3600,
            now=time.time() if now is None else now,
        )

    genuine = token()
    for bad in (
        token("not the server's secret"),
        tamper(genuine),
        token(now=time.time() - 3601),  # expired
        "not-a-token",
    ):
        response = await client.post(
            "/api/v1/auth/reset-password/confirm", json={"token": bad, "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_token"
        assert response.json()["error"]["request_id"]
    # The control: the same token unaltered is accepted.
    response = await client.post(
        "/api/v1/auth/reset-password/confirm", json={"token": genuine, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/reset-password", {}),
        ("/api/v1/auth/reset-password", {"email": "not an address"}),
        ("/api/v1/auth/reset-password", {"email": "a@example.com", "name": "Ann"}),
        ("/api/v1/auth/reset-password/confirm", {"token": "t"}),
        ("/api/v1/auth/reset-password/confirm", {"token": "t", "new_password": "short"}),
        ("/api/v1/auth/reset-password/confirm", {"token": "", "new_password": NEW_PASSWORD}),
        ("/api/v1/auth/reset-password/confirm", {"token": "t" * 513, "new_password": NEW_PASSWORD}),
    ],
)
async def test_invalid_bodies_get_422(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/reset-password", "/api/v1/auth/reset-password/confirm"]
)
async def test_bodies_that_are_not_json_get_415(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, data={"email": "a@example.com"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_the_sixth_request_for_one_address_within_the_hour_sends_nothing(
    client: httpx.AsyncClient, live: LiveServer
) -> None:
    email = unique_email("often")
    codes = [
        (await client.post("/api/v1/auth/reset-password", json={"email": email})).status_code
        for _ in range(6)
    ]
    # Still 202: the answer tells nothing, and nobody can make it refuse the owner.
    assert codes == [202] * 6
    assert "password reset: reset-email limit reached; nothing sent" in live.log()
    other = await client.post("/api/v1/auth/reset-password", json={"email": unique_email()})
    assert other.status_code == 202  # counted per address
