"""Two instances on one PostgreSQL and one Redis, nginx in front: what one instance writes,
the other and nginx read at once. The response cache, sessions and view counts live in the
shared Redis and PostgreSQL, never in an instance, so no answer depends on which instance a
client reaches: a cached article is never served stale after an edit made elsewhere, a logout
ends the session everywhere, and views counted by different instances add up exactly."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import LiveServers, Proxies, Workers
from tests.support.api import account, login, publish, register
from tests.support.fleet import Fleet, clients, start

ROUNDS = 4  # edits, each read at once on the other instance and through nginx
READERS = 6  # concurrent readers of the views test, two each on A, B and nginx
READS = 15  # reads of each reader: 90 views in all


@pytest.fixture(scope="module")
def fleet(module_live_server: LiveServers, module_nginx: Proxies) -> Fleet:
    return start(module_live_server, module_nginx)


async def test_an_edit_on_one_instance_is_never_read_stale_on_the_other(fleet: Fleet) -> None:
    async with clients(fleet) as (a, b, edge):
        ann = await account(a)
        article = await publish(a, ann, title="Fleet edit 0")
        url = f"/api/v1/articles/{article['id']}"
        # B caches the article (in the Redis both instances share).
        cached = [await b.get(url) for _ in range(2)]
        assert [r.status_code for r in cached] == [200, 200]
        assert [r.headers["X-Cache"] for r in cached] == ["MISS", "HIT"]
        etag = cached[1].headers["ETag"]
        assert cached[1].json() == article
        for edit in range(1, ROUNDS + 1):
            # Edits alternate between A and B; the other instance and nginx read right after,
            # in alternating order.
            writer, other = (a, b) if edit % 2 else (b, a)
            readers = (other, edge) if edit % 2 else (edge, other)
            updated = await writer.patch(
                url,
                json={"title": f"Fleet edit {edit}", "content": f"Content of edit {edit}."},
                headers={**ann.api_key, "If-Match": etag},
            )
            assert updated.status_code == 200, updated.text
            assert updated.headers["ETag"] != etag
            etag = updated.headers["ETag"]
            seen = [await reader.get(url) for reader in readers]
            for response in seen:
                assert response.status_code == 200, response.text
                assert response.headers["ETag"] == etag, (edit, response.url)
                assert response.json() == updated.json()
                assert response.json()["title"] == f"Fleet edit {edit}"
            # The edit moved the entry's generation: the first read computed it again, and the
            # second was served what the first stored.
            assert [r.headers["X-Cache"] for r in seen] == ["MISS", "HIT"]


async def test_a_logout_on_one_instance_ends_the_session_on_every_instance(fleet: Fleet) -> None:
    async with clients(fleet) as (a, b, edge):
        user = await register(a)
        session = {"Authorization": f"Bearer {await login(a, user['email'])}"}
        # A session made on A is valid on B and through nginx.
        for http in (b, edge):
            me = await http.get("/api/v1/users/me", headers=session)
            assert me.status_code == 200, me.text
            assert me.json()["id"] == user["id"]
        created = await b.post(
            "/api/v1/articles", json={"title": "Before logout", "content": "."}, headers=session
        )
        assert created.status_code == 201, created.text
        url = f"/api/v1/articles/{created.json()['id']}"
        assert (await b.get(url)).headers["X-Cache"] == "MISS"  # cached for the fast path

        logout = await a.post("/api/v1/auth/logout", headers=session)
        assert logout.status_code == 204, logout.text

        # At once (no wait, no retry) on B and through nginx, on every kind of route that
        # takes a session: a read, a session-only read, a create and an edit.
        attempts: list[tuple[str, str, dict[str, str] | None]] = [
            ("GET", "/api/v1/users/me", None),
            ("GET", "/api/v1/api-keys", None),
            ("POST", "/api/v1/articles", {"title": "After logout", "content": "."}),
            ("PATCH", url, {"title": "After logout"}),
        ]
        for http in (b, edge, a):
            for method, path, body in attempts:
                refused = await http.request(method, path, json=body, headers=session)
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.json()["error"]["code"] == "unauthorized"
                assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        # The fast path answers public reads only, and never reads a credential (neither does
        # Flask on a public route): the ended token changes nothing there, as no token does.
        hit = await b.get(url, headers=session)
        assert hit.status_code == 200
        assert hit.headers["X-Cache"] == "HIT"
        assert hit.json()["title"] == "Before logout"


async def _stored_views(pg: asyncpg.Connection, article_id: int) -> int:
    return int(await pg.fetchval("SELECT views FROM articles WHERE id = $1", article_id))


async def test_views_spread_over_instances_are_counted_exactly(
    fleet: Fleet, worker: Workers, pg: asyncpg.Connection
) -> None:
    """Concurrent reads through A, B and nginx while a worker flushes every second: once
    flushed, PostgreSQL holds exactly as many views as reads were answered, and every
    instance says so."""
    process = worker(VIEW_FLUSH_SECONDS="1")
    async with clients(fleet) as (a, b, edge):
        ann = await account(a)
        article = await publish(b, ann, title=f"Fleet views {uuid.uuid4().hex[:8]}")
        url = f"/api/v1/articles/{article['id']}"
        targets = (a, b, edge)

        async def reader(http: httpx.AsyncClient) -> int:
            for _ in range(READS):
                response = await http.get(url)
                assert response.status_code == 200, response.text
            return READS

        answered = sum(await asyncio.gather(*(reader(targets[i % 3]) for i in range(READERS))))
        assert answered == READERS * READS

        deadline = time.monotonic() + 120
        while await _stored_views(pg, article["id"]) < answered:
            assert time.monotonic() < deadline, process.log()
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # two more flushes: nothing is applied twice
        assert await _stored_views(pg, article["id"]) == answered, process.log()
        for http in targets:
            views = await http.get(f"{url}/views")
            assert views.status_code == 200, views.text
            assert views.json() == {"id": article["id"], "views": answered}
