"""service.web.api.articles: publish, read, edit with ETags, delete, list, search, rank."""

from __future__ import annotations

from typing import Any

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
    assert response.headers["etag"] == '"1-pending"'
    assert article["title"] == "Scaling Flask"
    assert article["tags"] == ["python", "web"]
    assert article["status"] == "pending"
    assert article["author"] == {"id": ann.id, "name": "Ann"}
    assert article["version"] == 1 and "views" not in article


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
    details = response.json()["error"]["details"]
    assert details and all(detail["loc"][0] == "body" for detail in details), details


async def test_body_errors_are_located_under_body(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.post(
        "/api/v1/articles", json={"title": "", "content": "c", "views": 1}, headers=ann.api_key
    )
    locs = [detail["loc"] for detail in response.json()["error"]["details"]]
    assert sorted(locs) == [["body", "title"], ["body", "views"]]
    tags = await client.post(
        "/api/v1/articles",
        json={"title": "t", "content": "c", "tags": ["ok", ""]},
        headers=ann.api_key,
    )
    assert [d["loc"] for d in tags.json()["error"]["details"]] == [["body", "tags", 1]]


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
    assert response.headers["etag"] == '"1-pending"'
    assert set(response.json()) == {
        "id",
        "title",
        "content",
        "summary",
        "keywords",
        "tags",
        "status",
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
        headers={**ann.api_key, "If-Match": '"1-pending"'},  # the ETag publish answered
    )
    assert response.status_code == 200
    assert response.json()["title"] == "New title"
    assert response.json()["content"] == "Some content."
    assert response.json()["version"] == 2
    assert response.headers["etag"] == '"2-pending"'
    # The ETag just read works as If-Match, alone or in a list.
    again = await client.patch(
        f"/api/v1/articles/{created['id']}",
        json={"tags": ["x"]},
        headers={**ann.api_key, "If-Match": f'"1-pending", {response.headers["etag"]}'},
    )
    assert again.status_code == 200 and again.headers["etag"] == '"3-pending"'
    star = await client.patch(
        f"/api/v1/articles/{created['id']}",
        json={"tags": ["y"]},
        headers={**ann.api_key, "If-Match": "*"},
    )
    assert star.status_code == 200 and star.headers["etag"] == '"4-pending"'


async def test_a_stale_if_match_is_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    await client.patch(url, json={"title": "First edit"}, headers=ann.api_key)
    response = await client.patch(
        url, json={"title": "Lost update"}, headers={**ann.api_key, "If-Match": '"1-pending"'}
    )
    assert response.status_code == 412
    assert response.json()["error"]["code"] == "precondition_failed"
    assert (await client.get(url)).json()["title"] == "First edit"


@pytest.mark.parametrize(
    "if_match",
    [
        '"2-0-pending"',  # the current version in an older tag format (with views)
        '"2-processed"',  # the current version, another status
        '"2"',  # the version alone
        'W/"2-pending"',  # weak tags never match If-Match
        "2-pending",  # not an entity tag
    ],
)
async def test_if_match_compares_the_whole_strong_etag(
    client: httpx.AsyncClient, if_match: str
) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    edited = await client.patch(url, json={"title": "Second"}, headers=ann.api_key)
    assert edited.headers["etag"] == '"2-pending"'
    stale = {**ann.api_key, "If-Match": if_match}
    assert (await client.patch(url, json={"title": "Lost"}, headers=stale)).status_code == 412
    assert (await client.delete(url, headers=stale)).status_code == 412
    assert (await client.get(url)).json()["title"] == "Second"


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
    deleted = await client.delete(url, headers={**ann.api_key, "If-Match": '"1-pending"'})
    assert deleted.status_code == 204
    assert deleted.content == b"" and "content-type" not in deleted.headers
    assert (await client.get(url)).status_code == 404


async def test_options_answers_204_with_allow_and_no_content_type(
    client: httpx.AsyncClient,
) -> None:
    for path, methods in (
        ("/api/v1/articles", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/api/v1/articles/1", {"GET", "HEAD", "OPTIONS", "PATCH", "DELETE"}),
    ):
        response = await client.options(path)
        assert response.status_code == 204, path
        assert response.content == b"" and "content-type" not in response.headers
        assert {m.strip() for m in response.headers["allow"].split(",")} == methods


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


async def test_the_last_offset_page_has_no_next_cursor(client: httpx.AsyncClient) -> None:
    who, ids = await _author_with_articles(client, 4)
    params: dict[str, Any] = {"author_id": who.id, "per_page": 2}
    full = (await client.get("/api/v1/articles", params={**params, "page": 2})).json()
    assert [a["id"] for a in full["articles"]] == list(reversed(ids))[2:]
    assert full["next_cursor"] is None  # a full page, and nothing after it
    partial = await client.get("/api/v1/articles", params={**params, "per_page": 3, "page": 2})
    assert partial.json()["next_cursor"] is None
    # The cursor of a page that is not the last continues where it ends.
    first = (await client.get("/api/v1/articles", params={**params, "page": 1})).json()
    rest = await client.get("/api/v1/articles", params={**params, "cursor": first["next_cursor"]})
    assert [a["id"] for a in rest.json()["articles"]] == list(reversed(ids))[2:]
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize(("count", "requests"), [(7, 3), (6, 2), (3, 1), (0, 1)])
async def test_cursor_pages_walk_the_whole_list_once_with_no_empty_page(
    client: httpx.AsyncClient, count: int, requests: int
) -> None:
    who, ids = await _author_with_articles(client, count)
    seen: list[int] = []
    pages = 0
    params: dict[str, Any] = {"author_id": who.id, "per_page": 3}
    while True:
        body = (await client.get("/api/v1/articles", params=params)).json()
        pages += 1
        assert body["articles"] or count == 0  # no request ends on an empty page
        seen += [a["id"] for a in body["articles"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == list(reversed(ids))
    assert pages == requests


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
        {"q": "a"},
        {"q": "climate c"},
        {"q": "snake_a"},
        {"q": "one two three four five"},
        {"page": 600},
        {"unknown": "1"},
        {"tag": ["a", "b"]},
    ],
)
async def test_bad_list_parameters_are_422_never_500(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/articles", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in {"validation_error", "invalid_cursor", "page_too_deep"}
    # Every query error names its parameter the same way.
    assert [d["loc"][0] for d in error["details"]] == ["query"] * len(error["details"])
    assert {d["loc"][1] for d in error["details"]} <= set(params)


async def test_a_search_too_broad_is_refused_with_the_rule_it_breaks(
    client: httpx.AsyncClient,
) -> None:
    """The shared server's defaults: SEARCH_MIN_PREFIX=2, SEARCH_MAX_TERMS=4."""
    short = await client.get("/api/v1/articles", params={"q": "Flask a b"})
    assert short.status_code == 422
    error = short.json()["error"]
    assert error["code"] == "validation_error"
    assert "at least 2 characters ('a', 'b' have fewer)" in error["message"]
    assert error["details"] == [
        {
            "loc": ["query", "q"],
            "message": "shorter than 2 characters: 'a', 'b'",
            "type": "search_word_too_short",
        }
    ]
    many = await client.get("/api/v1/articles", params={"q": "one two three four five"})
    assert many.status_code == 422
    assert many.json()["error"]["details"] == [
        {"loc": ["query", "q"], "message": "5 words; at most 4", "type": "search_too_many_words"}
    ]
    # Repeated words count once; four words of two letters are within the rules.
    assert (await client.get("/api/v1/articles", params={"q": "ab ab ab ab ab"})).status_code == 200
    assert (await client.get("/api/v1/articles", params={"q": "ab cd ef gh"})).status_code == 200


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/api/v1/articles", "foo=bar", "foo"),
        ("/api/v1/articles", "tag=a&tag=b", "tag"),
        ("/api/v1/articles", "page=1&page=1", "page"),
        ("/api/v1/articles/popular", "foo=1", "foo"),
        ("/api/v1/articles/popular", "limit=3", "limit"),
        ("/api/v1/articles/{id}", "fields=title", "fields"),
    ],
)
async def test_unknown_or_repeated_query_parameters_are_422_naming_them(
    client: httpx.AsyncClient, path: str, query: str, name: str
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = path.format(id=article["id"]) + "?" + query
    response = await client.get(url)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and repr(name) in error["message"]
    assert [d["loc"] for d in error["details"]] == [["query", name]]
    # Writes and deletes take no parameter either.
    item = f"/api/v1/articles/{article['id']}?{query}"
    assert (await client.delete(item, headers=ann.api_key)).status_code == 422
    assert (await client.get(f"/api/v1/articles/{article['id']}")).status_code == 200


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


async def test_ids_that_cannot_exist_are_404_for_every_method(client: httpx.AsyncClient) -> None:
    """0, one past the largest bigint, 21 and 5,000 digits: no such article, whatever the
    method (never a 405 with an Allow header made up from the path's other routes)."""
    ann = await account(client)
    for number in ("0", "9223372036854775808", "1" * 21, "9" * 5000, "00"):
        for method, path in (
            ("GET", "/api/v1/articles/{}"),
            ("PATCH", "/api/v1/articles/{}"),
            ("DELETE", "/api/v1/articles/{}"),
            ("GET", "/api/v1/articles/{}/views"),
            ("DELETE", "/api/v1/api-keys/{}"),
        ):
            url = path.format(number)
            response = await client.request(method, url, json={"title": "x"}, headers=ann.session)
            assert response.status_code == 404, (method, url[:60], response.text[:200])
            assert "Allow" not in response.headers
            assert response.json()["error"]["code"] == "not_found"
    # Leading zeros name the same id.
    article = await publish(client, ann)
    padded = await client.get(f"/api/v1/articles/000{article['id']}")
    assert padded.status_code == 200 and padded.json()["id"] == article["id"]
    # A method the path does not take is still a 405, with the true Allow.
    put = await client.put(f"/api/v1/articles/{article['id']}", json={})
    assert put.status_code == 405
    assert set(put.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PATCH", "DELETE"}


async def test_nul_characters_are_422_not_500(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.post(
        "/api/v1/articles", json={"title": "a\u0000b", "content": "c"}, headers=ann.api_key
    )
    assert response.status_code == 422
    assert (await client.get("/api/v1/articles", params={"q": "a\u0000"})).status_code == 422


async def test_views_are_a_sub_resource_and_reading_keeps_the_etag(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    created = await publish(client, ann)
    url = f"/api/v1/articles/{created['id']}"
    first = await client.get(url)
    for _ in range(3):
        again = await client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304  # a view is not an edit: revalidation pays off
    counted = (await client.get(f"{url}/views")).json()
    assert counted == {"id": created["id"], "views": 1}  # the 200 read; a 304 is no view
    assert (await client.get(f"{url}/views")).json()["views"] == 1  # not itself a view
    missing = await client.get("/api/v1/articles/999999999/views")
    assert missing.status_code == 404
