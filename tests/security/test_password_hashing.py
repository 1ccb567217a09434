"""A burst of logins cannot take a worker past its memory bound (service.domain.passwords):
argon2id holds 64 MiB per hash, and at most PASSWORD_HASH_CONCURRENCY hashes run at once in
a process; a login that waits too long for a slot gets 503 with Retry-After."""

from __future__ import annotations

import asyncio

import httpx

from bench.abuse import proc_status, serving_pids
from service.domain.passwords import HASH_MEMORY_MIB
from tests.security.conftest import StartServer
from tests.support.api import register

MIB = 1024 * 1024
CONCURRENCY = 2
BURST = 60
# Interpreter, allocator and request buffers beside the hashes: what one burst may add to a
# worker's resident memory besides CONCURRENCY x 64 MiB.
SLACK_MIB = 48


async def test_a_burst_of_logins_keeps_each_worker_under_its_memory_bound(
    serve: StartServer,
) -> None:
    server = serve(PASSWORD_HASH_CONCURRENCY=str(CONCURRENCY), PASSWORD_HASH_WAIT_SECONDS="1")
    assert server.proc is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        user = await register(http)  # one hash first: argon2 loaded, its first arena made
        pids = serving_pids(server.proc.pid)
        before = {pid: proc_status(pid, "VmRSS") for pid in pids}

        async def wrong_login() -> httpx.Response:
            return await http.post(
                "/api/v1/auth/login", json={"email": user["email"], "password": "a wrong one"}
            )

        answers = await asyncio.gather(*(wrong_login() for _ in range(BURST)))
    statuses = sorted({answer.status_code for answer in answers})
    assert set(statuses) <= {401, 503}, statuses
    assert 401 in statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"]
            assert answer.json()["error"]["code"] == "service_unavailable"
    bound = (CONCURRENCY * HASH_MEMORY_MIB + SLACK_MIB) * MIB
    for pid in pids:
        grown = proc_status(pid, "VmHWM") - before[pid]
        assert grown <= bound, f"pid {pid} grew {grown / MIB:.0f} MiB (bound {bound / MIB:.0f})"


async def test_logins_waiting_for_a_hash_hold_no_database_connection(serve: StartServer) -> None:
    """One connection in the pool, one hashing thread, a burst of logins: the logins queue for
    the hash without the connection, so database reads beside them are answered (before, each
    waiting login held its connection and the reads waited DB_POOL_TIMEOUT for a 503)."""
    server = serve(
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT="2",
        PASSWORD_HASH_CONCURRENCY="1",
        PASSWORD_HASH_WAIT_SECONDS="30",
        CACHE_ENABLED="false",  # every read below needs the database
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        user = await register(http)

        async def login() -> httpx.Response:
            return await http.post(
                "/api/v1/auth/login", json={"email": user["email"], "password": "a wrong one"}
            )

        logins = [asyncio.create_task(login()) for _ in range(8)]
        await asyncio.sleep(0.2)  # the logins have read the user and queue for the hash
        reads = [await http.get("/api/v1/articles") for _ in range(5)]
        answered = await asyncio.gather(*logins)
    assert [read.status_code for read in reads] == [200] * 5, reads[-1].text
    assert {answer.status_code for answer in answered} == {401}
