"""Shared types and constants: the ASGI aliases, the id range, article statuses, and the
security headers every response carries (whoever builds it: Flask, the ASGI adapter or the
cache fast path)."""

from __future__ import annotations

from enum import StrEnum

# ASGI 3, as starlette.types spells them: the greenlet adapter's own (it imports nothing of ours).
from service.greenlet_asgi.types import ASGIApp as ASGIApp
from service.greenlet_asgi.types import Message as Message
from service.greenlet_asgi.types import Receive as Receive
from service.greenlet_asgi.types import Scope as Scope
from service.greenlet_asgi.types import Send as Send

MAX_ID = 2**63 - 1  # PostgreSQL bigint: the largest id any table hands out

# The ASGI scope key where whoever answers a request writes its route template (Flask's matched
# ``url_rule.rule``, or the cache fast path for its hits), e.g.
# ``/api/v1/articles/<id:article_id>``: request metrics are labelled by it, never by the raw
# path. Absent when no route matched.
ROUTE_SCOPE_KEY = "newsdesk.route"


class ArticleStatus(StrEnum):
    """Where an article's processing stands (summary and keywords)."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
