"""Whose budget a request spends (service.web.rate_limits, service.domain.rate_limits): an
IPv6 client by its /64 (RATE_LIMIT_IPV6_PREFIX), and behind a proxy nobody told the server to
trust, a warning rather than every client silently pooled into the proxy's bucket."""

from __future__ import annotations

import secrets

import httpx

from tests.security.conftest import StartServer


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"{address}, 127.0.0.1"}


async def test_ipv6_clients_share_a_bucket_per_64(serve: StartServer) -> None:
    server = serve(RATE_LIMIT_READ="3/day", TRUSTED_PROXIES="127.0.0.1/32")
    network = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

        async def read(address: str) -> int:
            return (await http.get("/api/v1/articles", headers=_from(address))).status_code

        # A fresh address in the same /64 is the same client...
        same = [await read(f"{network}::{host:x}") for host in (1, 2, 0xBEEF, 0xFFFF)]
        assert same == [200, 200, 200, 429]
        # ...another /64 is another client, and an IPv4-mapped address is its IPv4 client.
        assert await read("2001:db8:ffff:ffff::1") == 200
        assert await read("::ffff:192.0.2.9") == 200
        assert await read("192.0.2.9") == 200  # the same bucket: 2 of 3 spent
        assert await read("192.0.2.9") == 200
        assert await read("::ffff:192.0.2.9") == 429


async def test_a_proxy_nobody_trusts_is_warned_about_once_in_production(
    serve: StartServer,
) -> None:
    server = serve(
        ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        LOG_FORMAT="text",
        TRUSTED_PROXIES="",
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for number in range(3):
            answer = await http.get(
                "/api/v1/articles", headers={"X-Forwarded-For": f"192.0.2.{number + 1}"}
            )
            assert answer.status_code == 200
    assert server.log().count("TRUSTED_PROXIES is empty") == 1
