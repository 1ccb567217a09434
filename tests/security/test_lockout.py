"""Nobody can lock an owner out (service.web.api.auth): login failures count per address and
client, so failures from other clients never refuse the right password, and reset requests
past the per-address limits still answer 202 while sending nothing."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.security.conftest import StartServer
from tests.support.api import PASSWORD, register


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"{address}, 127.0.0.1"}


async def test_failures_from_other_clients_never_refuse_the_right_password(
    serve: StartServer,
) -> None:
    server = serve(RATE_LIMIT_LOGIN_EMAIL="3/day", TRUSTED_PROXIES="127.0.0.1/32")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)

        async def log_in(address: str, password: str) -> int:
            answer = await http.post(
                "/api/v1/auth/login",
                json={"email": user["email"], "password": password},
                headers=_from(address),
            )
            return answer.status_code

        # Two attackers spend their budget on the owner's address...
        for attacker in ("198.51.100.1", "198.51.100.2"):
            assert [await log_in(attacker, "guess guess") for _ in range(4)] == [401] * 3 + [429]
        # ...and the owner, from anywhere else, logs in.
        assert await log_in("192.0.2.10", PASSWORD) == 200
        # A success clears that client's failures on the address.
        assert await log_in("192.0.2.10", "a typo") == 401
        assert await log_in("192.0.2.10", PASSWORD) == 200


async def test_reset_requests_past_the_limits_answer_202_and_send_nothing(
    serve: StartServer, own_redis: EmbeddedRedis
) -> None:
    server = serve(
        RATE_LIMIT_RESET="2/day", RATE_LIMIT_RESET_ADDRESS="3/day", TRUSTED_PROXIES="127.0.0.1/32"
    )
    redis = Redis.from_url(own_redis.url())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)

        async def reset(address: str) -> tuple[int, int]:
            """The answer, and how many mail jobs are queued after it."""
            answer = await http.post(
                "/api/v1/auth/reset-password", json={"email": user["email"]}, headers=_from(address)
            )
            return answer.status_code, int(await redis.zcard(keys.QUEUE_INTERACTIVE))

        # Per address and client: the third from one client sends nothing...
        assert [await reset("198.51.100.5") for _ in range(3)] == [(202, 1), (202, 2), (202, 2)]
        # ...another client still can, until the address's ceiling (3) is reached.
        assert await reset("192.0.2.20") == (202, 3)
        assert await reset("192.0.2.21") == (202, 3)
    await redis.aclose()
