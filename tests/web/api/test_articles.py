"""service.web.api.articles: publish, read, edit with ETags, delete, list, search, rank."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.support.api import Account, account, publish


async def test_publish_answers_201_with_location_etag_and_pending_status(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    response = await client.post(
        "/api/v1/articles",
        json={
            "title": "  Scaling Flask  ",
            "content": "Text.",
            "tags": ["Python", "python", "web"],
        },
        headers=ann.api_key,
    )
    assert response.status_code == 201
    article = response.json()
    assert response.headers["location"] == f"/api/v1/articles/{article['id']}"
    assert response.headers["etag"] == '"1-0-pending"'
    assert article["title"] == "Scaling Flask"
    assert article["tags"] == ["python", "web"]
    assert article["status"] == "pending"
    assert article["author"] == {"id": ann.id, "name": "Ann"}
    assert article["version"] == 1 and article["views"] == 0


async def test_publish_with_a_session_token_or_a_bearer_key(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    for headers in (ann.session, {"Authorization": f"Bearer {ann.key}"}):
        response = await client.post(
            "/api/v1/articles", json={"title": "t", "content": "c"}, headers=headers
        )
        assert response.status_code == 201


async def test_publish_needs_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/articles", json={"title": "t", "content": "c"})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "content": "c"},
        {"title": "t" * 301, "content": "c"},
        {"title": "t", "content": ""},
        {"title": "t", "content": "c" * 100_001},
        {"title": "t", "content": "c", "tags": [f"t{i}" for i in range(11)]},
        {"title": "t", "content": "c", "tags": ["x" * 41]},
        {"title": "t", "content": "c", "tags": "python"},
        {"title": 5, "content": "c"},
        {"title": "t", "content": "c", "views": 1000},
        {"content": "c"},
    ],
)
async def test_invalid_articles_are_422(client: httpx.AsyncClient, body: object) -> None:
    ann = await account(client)
    response = await client.post("/api/v1/articles", json=body, headers=ann.api_key)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]


async def test_an_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.post(
        "/api/v1/articles", json={"title": "t", "content": "c" * 300_000}, headers=ann.api_key
    )
    assert response.status_code == 413


async def test_read_one_article(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann, title="Readable", content="Full text", tags=["a"])
    response = await client.get(f"/api/v1/articles/{created['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1-0-pending"'
    assert set(response.json()) == {
        "id",
        "title",
        "content",
        "summary",
        "keywords",
        "tags",
        "status",
        "views",
        "author",
        "published_at",
        "updated_at",
        "version",
        "processing_error",
    }
    assert response.json()["content"] == "Full text"


async def test_a_missing_article_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/articles/999999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_author_edits_and_the_version_and_etag_move(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    response = await client.patch(
        f"/api/v1/articles/{created['id']}",
        json={"title": "New title"},
        headers={**ann.api_key, "If-Match": '"1"'},
    )
    assert response.status_code == 200
    assert response.json()["title"] == "New title"
    assert response.json()["content"] == "Some content."
    assert response.json()["version"] == 2
    assert response.headers["etag"] == '"2-0-pending"'
    # The ETag just read works as If-Match: only its version part is compared.
    again = await client.patch(
        f"/api/v1/articles/{created['id']}",
        json={"tags": ["x"]},
        headers={**ann.api_key, "If-Match": response.headers["etag"]},
    )
    assert again.status_code == 200 and again.headers["etag"] == '"3-0-pending"'


async def test_a_stale_if_match_is_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    await client.patch(url, json={"title": "First edit"}, headers=ann.api_key)
    response = await client.patch(
        url, json={"title": "Lost update"}, headers={**ann.api_key, "If-Match": '"1"'}
    )
    assert response.status_code == 412
    assert (await client.get(url)).json()["title"] == "First edit"


async def test_another_user_cannot_edit_or_delete(client: httpx.AsyncClient) -> None:
    ann, mallory = await account(client), await account(client, name="Mallory")
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    assert (
        await client.patch(url, json={"title": "x"}, headers=mallory.api_key)
    ).status_code == 403
    assert (await client.delete(url, headers=mallory.api_key)).status_code == 403
    assert (await client.get(url)).json()["title"] == "A title"


async def test_editing_or_deleting_a_missing_article_is_404(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    url = "/api/v1/articles/999999999"
    assert (await client.patch(url, json={"title": "x"}, headers=ann.api_key)).status_code == 404
    assert (await client.delete(url, headers=ann.api_key)).status_code == 404


async def test_an_empty_edit_is_422(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    assert (await client.patch(url, json={}, headers=ann.api_key)).status_code == 422
    assert (await client.patch(url, json={"title": None}, headers=ann.api_key)).status_code == 422


async def test_the_author_deletes(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    assert (await client.delete(url, headers={**ann.api_key, "If-Match": '"7"'})).status_code == 412
    assert (await client.delete(url, headers=ann.api_key)).status_code == 204
    assert (await client.get(url)).status_code == 404


# --- lists ------------------------------------------------------------------------------


async def _author_with_articles(client: httpx.AsyncClient, count: int) -> tuple[Account, list[int]]:
    who = await account(client, name="Lister")
    ids = [
        (await publish(client, who, title=f"Listing entry {i}", tags=["listing"]))["id"]
        for i in range(count)
    ]
    return who, ids


async def test_offset_pages_have_the_guides_shape(client: httpx.AsyncClient) -> None:
    who, ids = await _author_with_articles(client, 5)
    response = await client.get(
        "/api/v1/articles", params={"author_id": who.id, "per_page": 2, "page": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5 and body["pages"] == 3 and body["current_page"] == 2
    assert body["total_is_estimate"] is False
    assert [a["id"] for a in body["articles"]] == list(reversed(ids))[2:4]
    assert "content" not in body["articles"][0]
    assert body["next_cursor"]


async def test_cursor_pages_walk_the_whole_list_once(client: httpx.AsyncClient) -> None:
    who, ids = await _author_with_articles(client, 7)
    seen: list[int] = []
    params: dict[str, object] = {"author_id": who.id, "per_page": 3}
    while True:
        body = (await client.get("/api/v1/articles", params=params)).json()
        seen += [a["id"] for a in body["articles"]]
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == list(reversed(ids))


async def test_filters_by_tag_and_title_words(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    match = await publish(client, ann, title="Zebra Crossing Guide", tags=["zebras"])
    await publish(client, ann, title="Unrelated", tags=["zebras-not"])
    by_tag = (await client.get("/api/v1/articles", params={"tag": "Zebras"})).json()
    assert [a["id"] for a in by_tag["articles"]] == [match["id"]]
    for q in ("zebra", "ZEBRA cross", "crossing"):
        found = (await client.get("/api/v1/articles", params={"q": q})).json()["articles"]
        assert match["id"] in [a["id"] for a in found], q
    assert (await client.get("/api/v1/articles", params={"q": "zebrafish"})).json()[
        "articles"
    ] == []


@pytest.mark.parametrize(
    "params",
    [
        {"page": "abc"},
        {"page": 0},
        {"page": -1},
        {"per_page": 0},
        {"per_page": 101},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJ0IjoxfQ"},
        {"page": 1, "cursor": "abc"},
        {"author_id": "x"},
        {"q": "!!!"},
        {"q": "x" * 101},
        {"page": 600},
        {"unknown": "1"},
    ],
)
async def test_bad_list_parameters_are_422_never_500(
    client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    response = await client.get("/api/v1/articles", params=params)
    assert response.status_code == 422, response.text


async def test_popular_lists_the_ten_most_viewed(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    ann = await account(client)
    ids = [(await publish(client, ann, title=f"Popular {i}"))["id"] for i in range(12)]
    top = 10**12  # above anything else in the shared test database
    for rank, article_id in enumerate(ids):
        await pg.execute("UPDATE articles SET views = $1 WHERE id = $2", top + rank, article_id)
    body = (await client.get("/api/v1/articles/popular")).json()
    assert [a["id"] for a in body["articles"]] == list(reversed(ids))[:10]


async def test_ids_beyond_bigint_are_404_not_500(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/articles/9223372036854775808", "/api/v1/articles/0"):
        assert (await client.get(path)).status_code == 404


async def test_nul_characters_are_422_not_500(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.post(
        "/api/v1/articles", json={"title": "a\u0000b", "content": "c"}, headers=ann.api_key
    )
    assert response.status_code == 422
    assert (await client.get("/api/v1/articles", params={"q": "a\u0000"})).status_code == 422
