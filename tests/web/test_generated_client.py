"""A client generated from the served OpenAPI document runs the README's whole flow.

``openapi-python-client`` (offline: it reads the document from a file) generates a typed
package into a temporary directory; the test imports it and uses nothing else to talk to the
server: register, log in, make an API key, publish, page through offset pages and cursor
pages to the end, read, revalidate (``If-None-Match`` -> 304), edit with ``If-Match`` (200,
and 412 for a stale tag), read the view count, delete, revoke the key, log out. Each answer
is parsed into the generated model of its documented schema: a client typed from the document
can trust it.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer

PACKAGE = "newsdesk_client"
PASSWORD = "correct horse battery staple"
ARTICLES = 5
PER_PAGE = 2


def _generator() -> str | None:
    """The generator's command, from this interpreter's environment."""
    beside = Path(sys.executable).with_name("openapi-python-client")
    return str(beside) if beside.exists() else shutil.which("openapi-python-client")


@pytest.fixture(scope="module")
def generated(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported (the ``dev`` extra installs the generator)."""
    command = _generator()
    if command is None:
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    where = tmp_path_factory.mktemp("client")
    document = where / "openapi.json"
    # The first request builds the document (about a second of CPU; longer on a busy machine).
    spec = httpx.get(live.url + "/api/v1/openapi.json", timeout=120)
    document.write_text(json.dumps(spec.json()))
    config = where / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    done = subprocess.run(
        [
            command,
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(where / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


class Api:
    """The generated package's modules by short name: ``api.op("articles", "get_article")``."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module(f"{PACKAGE}.models")

    def op(self, tag: str, operation_id: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation_id}")


def _retry_on_stale(attempt: Callable[[str], Any], read: Callable[[], str]) -> Any:
    """``attempt(etag)`` with the current ETag; again if it moved on meanwhile (an article's
    processing can finish between the read and the write)."""
    for _ in range(5):
        response = attempt(read())
        if response.status_code != 412:
            return response
    return response


def test_a_generated_client_runs_the_whole_flow(
    generated: ModuleType, live: LiveServer, request: pytest.FixtureRequest
) -> None:
    api = Api(generated)
    m = api.models
    timeout = httpx.Timeout(30)
    anonymous = generated.Client(
        base_url=live.url, timeout=timeout, raise_on_unexpected_status=True
    )
    request.addfinalizer(lambda: anonymous.get_httpx_client().close())

    # Register, log in, who am I.
    email = f"client-{uuid.uuid4().hex[:12]}@example.com"
    made = api.op("users", "register").sync_detailed(
        client=anonymous, body=m.UserCreate(email=email, password=PASSWORD, name="Grace Hopper")
    )
    assert made.status_code == 201 and isinstance(made.parsed, m.UserPublic)
    token = api.op("auth", "login").sync(
        client=anonymous, body=m.LoginRequest(email=email, password=PASSWORD)
    )
    assert isinstance(token, m.SessionToken) and token.token_type == "bearer"
    session = generated.AuthenticatedClient(
        base_url=live.url, token=token.token, timeout=timeout, raise_on_unexpected_status=True
    )
    request.addfinalizer(lambda: session.get_httpx_client().close())
    me = api.op("users", "me").sync(client=session)
    assert isinstance(me, m.UserPublic) and me.email == email and me.id == made.parsed.id

    # An API key, then writes with it.
    created_key = api.op("api_keys", "create_api_key").sync(
        client=session, body=m.ApiKeyCreate(name="generated client")
    )
    assert isinstance(created_key, m.ApiKeyCreated) and created_key.key.startswith("nd_")
    keys = api.op("api_keys", "list_api_keys").sync(client=session)
    assert created_key.id in [key.id for key in keys.api_keys]
    keyed = generated.AuthenticatedClient(
        base_url=live.url,
        token=created_key.key,
        prefix="",
        auth_header_name="API-Key",
        timeout=timeout,
        raise_on_unexpected_status=True,
    )
    request.addfinalizer(lambda: keyed.get_httpx_client().close())
    tag = f"gen{uuid.uuid4().hex[:10]}"
    ids = []
    for n in range(ARTICLES):
        response = api.op("articles", "create_article").sync_detailed(
            client=keyed,
            body=m.ArticleCreate(title=f"Generated {n}", content=f"Body {n}.", tags=[tag.upper()]),
        )
        assert response.status_code == 201
        article = response.parsed
        assert isinstance(article, m.ArticlePublic) and article.tags == [tag]  # lower-cased
        assert response.headers["Location"] == f"/api/v1/articles/{article.id}"
        assert response.headers["ETag"]
        ids.append(article.id)
    newest_first = list(reversed(ids))

    # Offset pages to the end.
    list_articles = api.op("articles", "list_articles")
    seen, page_number = [], 1
    while True:
        page = list_articles.sync(client=anonymous, tag=tag, per_page=PER_PAGE, page=page_number)
        assert isinstance(page, m.ArticlePage) and page.kind == "offset"
        assert page.total == ARTICLES and page.total_is_estimate is False
        seen += [a.id for a in page.articles]
        if page.current_page == page.pages:
            assert page.next_cursor is None
            break
        page_number += 1
    assert seen == newest_first

    # Cursor pages to the end, from the first (offset) page's cursor.
    first = list_articles.sync(client=anonymous, tag=tag, per_page=PER_PAGE)
    assert isinstance(first, m.ArticlePage)
    seen, cursor = [a.id for a in first.articles], first.next_cursor
    while cursor is not None:
        page = list_articles.sync(client=anonymous, tag=tag, per_page=PER_PAGE, cursor=cursor)
        assert isinstance(page, m.ArticleCursorPage) and page.kind == "cursor"
        seen += [a.id for a in page.articles]
        cursor = page.next_cursor
    assert seen == newest_first
    # page and cursor together: a 422 in the envelope, parsed as the document says.
    both = list_articles.sync_detailed(client=anonymous, tag=tag, page=1, cursor=first.next_cursor)
    assert both.status_code == 422 and isinstance(both.parsed, m.ErrorEnvelope)
    assert both.parsed.error.code == "validation_error"

    # Read and revalidate.
    get_article = api.op("articles", "get_article")
    article_id = ids[0]

    def current_etag() -> str:
        read = get_article.sync_detailed(article_id, client=anonymous)
        assert read.status_code == 200 and isinstance(read.parsed, m.ArticlePublic)
        return str(read.headers["ETag"])

    etag = current_etag()
    again = get_article.sync_detailed(article_id, client=anonymous, if_none_match=etag)
    assert again.status_code in (304, 200)  # 200 only if processing moved the ETag on
    if again.status_code == 200:
        again = get_article.sync_detailed(
            article_id, client=anonymous, if_none_match=str(again.headers["ETag"])
        )
    assert again.status_code == 304 and again.content == b""

    # Edit with If-Match: the current tag -> 200; the tag from before the edit -> 412.
    update = api.op("articles", "update_article")
    before: list[str] = []

    def edit(tag_now: str) -> Any:
        before.append(tag_now)
        return update.sync_detailed(
            article_id, client=keyed, body=m.ArticleUpdate(title="Edited"), if_match=tag_now
        )

    edited = _retry_on_stale(edit, current_etag)
    assert edited.status_code == 200 and edited.parsed.title == "Edited", edited.content
    assert edited.headers["ETag"] != before[-1]
    stale = update.sync_detailed(
        article_id, client=keyed, body=m.ArticleUpdate(title="Lost"), if_match=before[-1]
    )
    assert stale.status_code == 412 and isinstance(stale.parsed, m.ErrorEnvelope)
    assert stale.parsed.error.code == "precondition_failed"

    views = api.op("articles", "get_article_views").sync(article_id, client=anonymous)
    assert isinstance(views, m.ArticleViews) and views.id == article_id and views.views >= 1

    # Delete (conditionally), then it is gone.
    delete_article = api.op("articles", "delete_article")
    deleted = _retry_on_stale(
        lambda tag_now: delete_article.sync_detailed(article_id, client=keyed, if_match=tag_now),
        current_etag,
    )
    assert deleted.status_code == 204
    gone = get_article.sync_detailed(article_id, client=anonymous)
    assert gone.status_code == 404 and isinstance(gone.parsed, m.ErrorEnvelope)

    # Revoke the key, log out: both credentials stop working.
    revoked = api.op("api_keys", "delete_api_key").sync_detailed(created_key.id, client=session)
    assert revoked.status_code == 204
    refused = api.op("articles", "create_article").sync_detailed(
        client=keyed, body=m.ArticleCreate(title="T", content="C")
    )
    assert refused.status_code == 401
    assert api.op("auth", "logout").sync_detailed(client=session).status_code == 204
    assert api.op("users", "me").sync_detailed(client=session).status_code == 401
