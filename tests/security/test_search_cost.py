"""What a search may cost (service.domain.search, service.web.api.articles), against live
servers with tight settings of their own: one-letter prefixes and too many words are refused
before any query, a search past SEARCH_TIMEOUT_MS is stopped and answered 422
``search_too_broad`` (the connection it ran on serving the next request), and searches have
a rate limit of their own on top of the read limit."""

from __future__ import annotations

import httpx
import pytest

from tests.security.conftest import StartServer
from tests.support.databases import ServerStack
from tests.support.metrics import ascrape
from tests.support.seeded import seeded_database

ARTICLES = "/api/v1/articles"


async def test_one_letter_prefixes_are_refused(serve: StartServer) -> None:
    server = serve(SEARCH_MIN_PREFIX="3")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for q in ("c", "fl", "climate c", "x_y_z", "ab²"):
            refused = await http.get(ARTICLES, params={"q": q})
            assert refused.status_code == 422, q
            error = refused.json()["error"]
            assert error["code"] == "validation_error"
            assert "at least 3 characters" in error["message"]
            assert [d["type"] for d in error["details"]] == ["search_word_too_short"]
        assert (await http.get(ARTICLES, params={"q": "fla"})).status_code == 200


async def test_too_many_words_are_refused(serve: StartServer) -> None:
    server = serve(SEARCH_MAX_TERMS="2")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        refused = await http.get(ARTICLES, params={"q": "heat pumps rise"})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert "at most 2 different words (3 given)" in error["message"]
        assert error["details"] == [
            {
                "loc": ["query", "q"],
                "message": "3 words; at most 2",
                "type": "search_too_many_words",
            }
        ]
        assert (await http.get(ARTICLES, params={"q": "heat pumps heat"})).status_code == 200


@pytest.fixture(scope="module")
def seeded_url(stack: ServerStack) -> str:
    return seeded_database(stack, 20_000)


async def test_a_search_past_its_timeout_is_stopped_and_answered_422(
    serve: StartServer, seeded_url: str
) -> None:
    # One pooled connection: the requests after the stopped search run on the same one.
    server = serve(
        DATABASE_URL=seeded_url, SEARCH_TIMEOUT_MS="1", DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0"
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for page in (40, 41):  # two cache entries: each is a search that runs
            cut = await http.get(ARTICLES, params={"q": "co", "page": page, "per_page": 100})
            assert cut.status_code == 422, cut.text
            assert "retry-after" not in cut.headers  # repeating it would be stopped again
            error = cut.json()["error"]
            assert error["code"] == "search_too_broad"
            assert "longer than 1 ms" in error["message"]
            assert error["details"] == [
                {"loc": ["query", "q"], "message": "stopped after 1 ms", "type": "search_timeout"}
            ]
        # Nothing else is bounded by it, and the connection serves on.
        plain = await http.get(ARTICLES, params={"page": 40, "per_page": 100})
        assert plain.status_code == 200 and len(plain.json()["articles"]) == 100
        metrics = await ascrape(http)
        assert metrics.total("searches_cut_total") == 2
    assert "Traceback" not in server.log()


async def test_searches_have_a_rate_limit_of_their_own(serve: StartServer) -> None:
    server = serve(
        RATE_LIMIT_SEARCH="3/day", RATE_LIMIT_READ="1000/day", TRUSTED_PROXIES="127.0.0.1/32"
    )
    client = {"X-Forwarded-For": "198.51.100.20"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for q in ("heat", "heat", "pumps"):  # cache hits count too
            answer = await http.get(ARTICLES, params={"q": q}, headers=client)
            assert answer.status_code == 200
        assert answer.headers["ratelimit-limit"] == "3"  # the tightest limit it counted in
        assert answer.headers["ratelimit-remaining"] == "0"
        refused = await http.get(ARTICLES, params={"q": "rail"}, headers=client)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "3/day" in refused.json()["error"]["message"]
        assert 0 < int(refused.headers["retry-after"]) <= 86_400
        # Its other reads go on, and so do other clients' searches.
        assert (await http.get(ARTICLES, headers=client)).status_code == 200
        other = {"X-Forwarded-For": "198.51.100.21"}
        assert (await http.get(ARTICLES, params={"q": "rail"}, headers=other)).status_code == 200
        # Words the rules refuse are a 422 before anything is counted: they cost nothing.
        assert (await http.get(ARTICLES, params={"q": "a"}, headers=client)).status_code == 422
        metrics = await ascrape(http)
        assert metrics.total("rate_limit_refusals_total", limit="search") == 1
