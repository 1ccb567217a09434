"""The reset link never follows a Host header a client chose (service.web.pages.reset_link):
only development, asked on a loopback host, builds it from the request; everywhere else
PASSWORD_RESET_URL is required at start-up."""

from __future__ import annotations

import subprocess
import sys

import httpx
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.security.conftest import StartServer
from tests.support.api import register
from tests.support.live import ROOT


async def test_development_mails_a_link_only_for_a_loopback_host(
    serve: StartServer, own_redis: EmbeddedRedis
) -> None:
    server = serve(ENV="development", PASSWORD_RESET_URL="", LOG_FORMAT="text")
    redis = Redis.from_url(own_redis.url())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)

        async def reset(host: str) -> tuple[int, int]:
            answer = await http.post(
                "/api/v1/auth/reset-password", json={"email": user["email"]}, headers={"Host": host}
            )
            return answer.status_code, int(await redis.zcard(keys.QUEUE_INTERACTIVE))

        assert await reset("attacker.example:8000") == (202, 0)
        assert await reset("127.0.0.1.attacker.example") == (202, 0)
        assert await reset(f"127.0.0.1:{server.port}") == (202, 1)
        assert await reset(f"localhost:{server.port}") == (202, 2)
    await redis.aclose()
    assert "the request's Host is not a loopback one; nothing sent" in server.log()


def test_outside_development_the_server_will_not_start_without_a_reset_url() -> None:
    for env in ("test", "production"):
        result = subprocess.run(
            [sys.executable, "-c", "from service.core.settings import Settings; Settings()"],
            env={"ENV": env, "SECRET_KEY": "x" * 48, "PASSWORD_RESET_URL": "", "ENV_FILE": ""},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0
        assert "PASSWORD_RESET_URL is not set" in result.stderr
