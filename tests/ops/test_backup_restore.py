"""Backup and restore, as deploy/README.md's Procedures tell an operator to do them: a
custom-format ``pg_dump`` of a database a live API has written, ``pg_restore`` into a fresh
PostgreSQL server, and a second API on the restored database serves the same articles.

The second API gets a Redis of its own, empty, as after losing a site: its answers can then
only come from the restored database (the first API's cache would otherwise answer for it),
and what lives in Redis alone is shown to be gone (session tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import LiveServers, outside_basetemp
from tests.support.api import Account, account, login, publish
from tests.support.databases import ServerStack, plain_url
from tests.support.pg_tools import (
    client_tool,
    restore,
    run,
    server_major,
    sets_foreign_column_options,
)
from tests.support.view_flush import flush_once

ARTICLES = [
    ("Harbour reopens", "Ships are back in the harbour.", ["port", "city"], 3),
    ("Budget passed", "The council voted the budget.", ["council"], 1),
    ("Ünïcode in titles", "Bodies keep every character: ✓ «quotes»", [], 0),
    ("Long read", "A paragraph.\n\n" * 200, ["features", "long"], 2),
]


async def _seed(http: httpx.AsyncClient) -> tuple[Account, list[int]]:
    author = await account(http, name="Backup author")
    ids = []
    for title, content, tags, views in ARTICLES:
        article = await publish(http, author, title=title, content=content, tags=tags)
        ids.append(article["id"])
        for _ in range(views):
            assert (await http.get(f"/api/v1/articles/{article['id']}")).status_code == 200
    return author, ids


async def _snapshot(http: httpx.AsyncClient, author: Account, ids: list[int]) -> dict[str, Any]:
    """Every answer the comparison covers: each article's view count, then the article (whose
    read counts one more view, in Redis only), and the author's list."""
    found: dict[str, Any] = {}
    for article_id in ids:
        for path in (f"/api/v1/articles/{article_id}/views", f"/api/v1/articles/{article_id}"):
            response = await http.get(path)
            assert response.status_code == 200, response.text
            found[path] = response.json()
    listing = await http.get("/api/v1/articles", params={"author_id": author.id, "per_page": 50})
    assert listing.status_code == 200, listing.text
    found["list"] = listing.json()
    return found


async def test_a_restored_backup_serves_the_same_articles(
    stack: ServerStack, live_server: LiveServers, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    source = live_server(REDIS_URL=own_redis.url(), DB_POOL_SIZE="3", DB_MAX_OVERFLOW="2")
    async with httpx.AsyncClient(base_url=source.url, timeout=30) as http:
        author, ids = await _seed(http)
        assert await flush_once(stack.database_url, own_redis.url()) == sum(
            views for *_, views in ARTICLES
        )
        before = await _snapshot(http, author, ids)
    assert [before[f"/api/v1/articles/{i}/views"]["views"] for i in ids] == [
        views for *_, views in ARTICLES
    ]
    assert [a["id"] for a in before["list"]["articles"]] == ids[::-1]  # newest first

    major = await server_major(stack.database_url)
    foreign_options = await sets_foreign_column_options(stack.database_url)
    dump = tmp_path / "newsdesk.dump"
    run(
        client_tool("pg_dump", major),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={dump}",
        f"--dbname={plain_url(stack.database_url)}",
    )

    with outside_basetemp("newsdesk-restore-") as directory:
        fresh = EmbeddedPostgres(directory / "postgres", durable=False).start()
        restored_redis = EmbeddedRedis(tmp_path / "restored-redis", durable=False).start()
        try:
            restored_url = fresh.ensure_database("newsdesk")
            restore(dump, restored_url, major=major, foreign_options=foreign_options)
            restored = live_server(
                DATABASE_URL=restored_url,
                REDIS_URL=restored_redis.url(),
                DB_POOL_SIZE="3",
                DB_MAX_OVERFLOW="2",
                log="restored.log",
            )
            async with httpx.AsyncClient(base_url=restored.url, timeout=30) as http:
                assert await _snapshot(http, author, ids) == before
                # Sessions live in Redis only: the old token is gone; logging in again works.
                old = await http.get("/api/v1/users/me", headers=author.session)
                assert old.status_code == 401, old.text
                author.token = await login(http, author.email)
                assert (await http.get("/api/v1/users/me", headers=author.session)).is_success
                # API keys are in PostgreSQL (hashed, no SECRET_KEY involved): they still work,
                # and the restored identity sequence hands out new ids after the old ones.
                article = await publish(http, author, title="After the restore")
                assert article["id"] > max(ids)
            restored.stop()
        finally:
            restored_redis.stop()
            fresh.stop()
