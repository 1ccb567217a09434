"""The answer to a cacheable GET from its stored entry, built once for both paths that send
it: Flask (``service.web.http_cache``) and the ASGI fast path (``service.edge.fastpath``),
so a hit answered before Flask cannot differ from one Flask answers.

Each path adds only what its transport needs (a ``Content-Type`` and, on ASGI, a
``Content-Length`` for a body; the request id, the security and the rate-limit headers).
"""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.http import parse_etags, unquote_etag

from service.core import keys


@dataclass(frozen=True)
class CachedAnswer:
    """A 200 with the stored JSON body, or a 304 without one; ``headers`` either way."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def not_modified(etag: str, if_none_match: str | None) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    tag, _weak = unquote_etag(etag)
    return tag is not None and parse_etags(if_none_match).contains_weak(tag)


def cached_answer(
    stored: bytes, *, outcome: str, if_none_match: str | None, max_age: int
) -> CachedAnswer:
    """The answer for ``stored`` (``keys.pack_entry``): ``ETag``, ``X-Cache: outcome`` and
    ``Cache-Control``, with a 304 when ``If-None-Match`` names the ETag."""
    raw_etag, body = keys.unpack_entry(stored)
    etag = raw_etag.decode("latin-1")
    headers = [
        ("ETag", etag),
        ("X-Cache", outcome),
        ("Cache-Control", f"public, max-age={max_age}"),
    ]
    if not_modified(etag, if_none_match):
        return CachedAnswer(304, headers, b"")
    return CachedAnswer(200, headers, body)
