"""Every URL prefix the API serves, written once: the blueprints mount at them, the ASGI fast
path (``service.edge.fastpath``) recognises its cached reads by them, and answers that name
a path (``Location``) build it from them."""

from __future__ import annotations

API = "/api/v1"
USERS = f"{API}/users"
AUTH = f"{API}/auth"
API_KEYS = f"{API}/api-keys"
ARTICLES = f"{API}/articles"
POPULAR_ARTICLES = f"{ARTICLES}/popular"
OPENAPI_DOCUMENT = f"{API}/openapi.json"


def article_path(article_id: int) -> str:
    """The path of one article, as ``Location`` names it."""
    return f"{ARTICLES}/{article_id}"
