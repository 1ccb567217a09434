"""Whatever a client puts in the cursor, offset, limit, id and tag parameters, the answer is
never a 5xx (Hypothesis against the live server).

Cursors are generated both as arbitrary text and as well-formed cursors (base64 of JSON)
holding arbitrary times, time zones and ids: the crafted ones are what could reach
PostgreSQL as an out-of-range value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.live import LiveServer

FUZZ = settings(
    max_examples=150,
    deadline=None,  # a shared, busy machine: time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

huge_ints = st.integers(min_value=-(2**70), max_value=2**70)
numberish = st.one_of(huge_ints.map(str), st.text(max_size=30), st.floats().map(str))


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


crafted_cursors = st.builds(
    lambda when, zone, article_id: _cursor(
        {"t": when.replace(tzinfo=zone).isoformat(), "i": article_id}
    ),
    st.datetimes(),
    st.timezones(),
    st.one_of(huge_ints, st.floats(allow_nan=False), st.text(max_size=5)),
)
cursors = st.one_of(st.text(max_size=60), crafted_cursors)
tags = st.text(max_size=60)


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


def _never_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.url, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["code"]  # the envelope, not a bare page


@FUZZ
@given(cursor=cursors, per_page=st.one_of(st.none(), numberish), tag=st.one_of(st.none(), tags))
def test_cursor_pages_never_fail(
    http: httpx.Client, cursor: str, per_page: str | None, tag: str | None
) -> None:
    params = {"cursor": cursor}
    if per_page is not None:
        params["per_page"] = per_page
    if tag is not None:
        params["tag"] = tag
    _never_5xx(http.get("/api/v1/articles", params=params))


@FUZZ
@given(
    page=numberish,
    per_page=numberish,
    author_id=st.one_of(st.none(), numberish),
    q=st.one_of(st.none(), st.text(max_size=120)),
)
def test_offset_pages_never_fail(
    http: httpx.Client, page: str, per_page: str, author_id: str | None, q: str | None
) -> None:
    params = {"page": page, "per_page": per_page}
    if author_id is not None:
        params["author_id"] = author_id
    if q is not None:
        params["q"] = q
    _never_5xx(http.get("/api/v1/articles", params=params))


@FUZZ
@given(article_id=st.one_of(huge_ints.map(str), st.text(min_size=1, max_size=40)))
def test_any_article_id_is_a_4xx_or_an_article(http: httpx.Client, article_id: str) -> None:
    path = "/api/v1/articles/" + quote(article_id, safe="")
    for method in ("GET", "PATCH", "DELETE"):
        response = http.request(method, path, json={"title": "x"} if method == "PATCH" else None)
        assert response.status_code < 500, (method, path, response.text)
    _never_5xx(http.get(path + "/views"))


def test_the_crafted_cursor_of_the_report_is_a_422(http: httpx.Client) -> None:
    cursor = "eyJ0IjoiMDAwMS0wMS0wMVQwMDowMDowMCsxNDowMCIsImkiOjF9"  # 0001-01-01T00:00+14:00
    response = http.get("/api/v1/articles", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_cursor"
