"""service.core.redis_url: the ``redis+sentinel://`` form, and REDIS_URL validation with it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.core.redis_url import SentinelTarget, parse_sentinel_url
from service.core.settings import Settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/newsdesk/2",
            SentinelTarget(
                (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26379)), "newsdesk", 2
            ),
        ),
        (
            "redis+sentinel://:s%40cret@s1/mymaster",
            SentinelTarget((("s1", 26379),), "mymaster", 0, None, "s@cret"),
        ),
        (
            "redis+sentinel://app:pw@[::1]:5000,s2/my.master-1/",
            SentinelTarget((("::1", 5000), ("s2", 26379)), "my.master-1", 0, "app", "pw"),
        ),
    ],
)
def test_the_sentinel_url_form(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://s1:26379", "service name is missing"),
        ("redis+sentinel://s1/", "/<service>[/<db>]"),
        ("redis+sentinel://s1/newsdesk/one", "is not a number"),
        ("redis+sentinel://s1/newsdesk/0/extra", "/<service>[/<db>]"),
        ("redis+sentinel://s1:99999/newsdesk", "out of range"),
        ("redis+sentinel://s1,,s2/newsdesk", "is not host[:port]"),
        ("redis+sentinel://s1/newsdesk?socket_timeout=1", "no query string"),
        ("rediss+sentinel://s1/newsdesk", "must be a Redis URL"),
        ("http://s1/newsdesk", "must be a Redis URL"),
    ],
)
def test_a_malformed_redis_url_is_refused_saying_why(url: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(redis_url=url)
    assert complaint in str(refused.value)


def test_plain_redis_urls_are_still_accepted() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.internal:6380/1", "unix:///run/r.sock"):
        assert Settings(redis_url=url).redis_url == url
