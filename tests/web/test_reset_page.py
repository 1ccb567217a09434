"""service.web.pages: the password reset page, in a real headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright) against the live server, a real arq worker and a
real SMTP server; its headers, its template's escaping, and the token kept out of the log."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from markupsafe import Markup

from service.core.settings import DEFAULT_SECRET_KEY, Settings
from service.domain.password_reset import make_token
from service.web.app import create_app
from service.web.pages import reset_link
from tests.conftest import Workers
from tests.support.api import PASSWORD, register
from tests.support.databases import ServerStack
from tests.support.live import LiveServer
from tests.support.smtp import SmtpServer
from tests.support.worker import WorkerProcess

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make test-deps`); never a downloaded one
# The live server's signing key (tests/conftest.py does not set one).
LIVE_SECRET = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
NEW_PASSWORD = "a page-set passphrase"
LINK_IN_MAIL = re.compile(r"https?://\S+/reset-password#token=([A-Za-z0-9_.\-]+)")
WAIT_MS = 60_000  # a loaded 2-core machine: generous, never a timing assertion

USED = "expired or has already been used"
DONE = "Your password has been changed"
LENGTH = "10 to 128 characters long"


# --- servers and the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(smtp: SmtpServer, module_worker: Workers) -> WorkerProcess:
    return module_worker(SMTP_HOST=smtp.host, SMTP_PORT=str(smtp.port))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium from Debian's package; the test skips, naming what is missing, when
    Playwright or the browser is not installed (``make test-deps`` installs both)."""
    async_api = pytest.importorskip(
        "playwright.async_api", reason="Playwright for Python is missing (pip install playwright)"
    )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or `make test-deps`)")
    # Chromium's sandbox cannot start as root (CI containers); its shared memory in /dev/shm
    # may be tiny there.
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=args, timeout=WAIT_MS
        )
        yield chromium
        await chromium.close()


class Tab:
    """A fresh browser context and page, noting what the browser refused under the page's
    Content-Security-Policy (it says so on the console) and any dialog a script opens."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.csp_violations: list[str] = []
        self.dialogs: list[str] = []
        page.set_default_timeout(WAIT_MS)
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def open(self, url: str) -> None:
        # From a blank page: a link that differs from the current address only by its
        # fragment would otherwise be a same-document jump, not a load.
        await self.page.goto("about:blank")
        response = await self.page.goto(url, wait_until="load")
        assert response is not None and response.status == 200

    async def submit(self, password: str, repeat: str | None = None) -> None:
        await self.page.fill("#new-password", password)
        await self.page.fill("#repeat-password", password if repeat is None else repeat)
        await self.page.click("#submit")

    async def outcome(self, kind: str) -> str:
        """The message's text once the page shows a message of ``kind`` (success, error)."""
        message = self.page.locator(f'#message[data-outcome="{kind}"]')
        await message.wait_for(state="visible")
        return str(await message.inner_text())

    async def form_visible(self) -> bool:
        return bool(await self.page.locator("#reset-form").is_visible())


@pytest.fixture
async def tab(browser: Any) -> AsyncIterator[Tab]:
    context = await browser.new_context()
    try:
        yield Tab(await context.new_page())
    finally:
        await context.close()


# --- helpers ---------------------------------------------------------------------------------


def running(worker: WorkerProcess) -> bool:
    return worker.proc is not None and worker.proc.poll() is None


async def mailed_link(smtp: SmtpServer, worker: WorkerProcess, address: str) -> tuple[str, str]:
    """The reset link in the mail to ``address``, and its token."""
    try:
        message = await smtp.inbox.wait_for(address, within=90, alive=lambda: running(worker))
    except AssertionError:
        raise AssertionError(f"no mail to {address}; worker log:\n{worker.log()}") from None
    text = message.get_content()
    found = LINK_IN_MAIL.search(text)
    assert found is not None, text
    return found.group(0), found.group(1)


async def fresh_token(client: httpx.AsyncClient, pg: asyncpg.Connection) -> tuple[Any, str]:
    """A new user and a genuine reset token for them, signed with the live server's key (as
    the worker would make it)."""
    user = await register(client)
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    token = make_token(
        LIVE_SECRET, user_id=user["id"], password_hash=password_hash, ttl=3600, now=time.time()
    )
    return user, token


async def login_status(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return response.status_code


async def access_line(live: LiveServer, request_id: str, within: float = 30) -> str:
    """The live server's access line of the request with ``request_id`` (written after the
    response, by Hypercorn's own task: polled for)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in live.log().splitlines():
            if f"rid={request_id}" in line and '"GET /reset-password' in line:
                return line
        await asyncio.sleep(0.1)
    raise AssertionError(f"no access line for {request_id}; server log:\n{live.log()[-4000:]}")


# --- the whole flow in a browser ---------------------------------------------------------------


async def test_the_mailed_link_sets_a_new_password_in_the_browser(
    client: httpx.AsyncClient,
    live: LiveServer,
    smtp: SmtpServer,
    worker: WorkerProcess,
    tab: Tab,
) -> None:
    user = await register(client)
    asked = await client.post("/api/v1/auth/reset-password", json={"email": user["email"]})
    assert asked.status_code == 202, asked.text

    link, token = await mailed_link(smtp, worker, user["email"])
    # The live server's PASSWORD_RESET_URL is its own reset page (tests/conftest.py).
    assert link == f"{live.url}/reset-password#token={token}", link

    await tab.open(link)
    # The script took the token out of the address bar (and so out of the history).
    await tab.page.wait_for_function("!window.location.search && !window.location.hash")
    assert token not in tab.page.url
    await tab.submit(NEW_PASSWORD)
    assert DONE in await tab.outcome("success")
    assert not await tab.form_visible()
    assert tab.csp_violations == []  # the page works under its own CSP

    assert await login_status(client, user["email"], NEW_PASSWORD) == 200
    assert await login_status(client, user["email"], PASSWORD) == 401

    # Opening the link again: the token is spent.
    await tab.open(link)
    await tab.submit("yet another passphrase")
    assert USED in await tab.outcome("error")
    assert await login_status(client, user["email"], NEW_PASSWORD) == 200

    # Neither the page loads nor the confirmations wrote the token into the server's log.
    rid = f"reset-page-{uuid.uuid4().hex}"
    page = await client.get(f"/reset-password?token={token}", headers={"X-Request-ID": rid})
    assert page.status_code == 200
    line = await access_line(live, rid)
    assert "/reset-password" in line and token not in line
    assert token not in live.log()
    assert token not in worker.log()


async def test_a_used_token_gets_the_expired_or_used_message(
    client: httpx.AsyncClient, pg: asyncpg.Connection, live: LiveServer, tab: Tab
) -> None:
    user, token = await fresh_token(client, pg)
    spent = await client.post(
        "/api/v1/auth/reset-password/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert spent.status_code == 204, spent.text

    await tab.open(f"{live.url}/reset-password?token={token}")
    await tab.submit("the second passphrase")
    assert USED in await tab.outcome("error")
    assert not await tab.form_visible()  # nothing more to try with this link
    assert await login_status(client, user["email"], NEW_PASSWORD) == 200


async def test_a_forged_token_gets_the_same_message(live: LiveServer, tab: Tab) -> None:
    await tab.open(f"{live.url}/reset-password?token=eyJ1IjoxfQ.not-a-signature")
    await tab.submit(NEW_PASSWORD)
    assert USED in await tab.outcome("error")


async def test_a_password_the_api_refuses_keeps_the_form_for_another_try(
    client: httpx.AsyncClient, pg: asyncpg.Connection, live: LiveServer, tab: Tab
) -> None:
    user, token = await fresh_token(client, pg)
    await tab.open(f"{live.url}/reset-password?token={token}")

    await tab.submit("short")  # the API takes 10 to 128 characters
    assert LENGTH in await tab.outcome("error")
    assert await tab.form_visible()
    await tab.submit("x" * 129)
    assert LENGTH in await tab.outcome("error")

    await tab.submit(NEW_PASSWORD, repeat=NEW_PASSWORD + "!")  # checked before any request
    assert "differ" in await tab.outcome("error")

    await tab.submit(NEW_PASSWORD)  # the same token still works after the refusals
    assert DONE in await tab.outcome("success")
    assert await login_status(client, user["email"], NEW_PASSWORD) == 200


async def test_a_link_without_a_token_says_what_to_do(live: LiveServer, tab: Tab) -> None:
    await tab.open(f"{live.url}/reset-password")
    assert "no reset token" in await tab.outcome("error")
    assert not await tab.form_visible()


async def test_a_hostile_token_is_never_run_or_rendered(live: LiveServer, tab: Tab) -> None:
    hostile = "\"><script>alert('token')</script><img src=x onerror=alert(1)>"
    await tab.open(f"{live.url}/reset-password?{httpx.QueryParams(token=hostile)}")
    await tab.submit(NEW_PASSWORD)
    assert USED in await tab.outcome("error")  # the API refused it: 400 or 422
    assert tab.dialogs == []
    assert tab.csp_violations == []
    assert await tab.page.locator("script").count() == 1  # only the page's own
    assert await tab.page.locator("img").count() == 0


# --- over plain HTTP -------------------------------------------------------------------------


async def test_the_page_is_html_with_strict_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/reset-password", params={"token": "abc"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Extends the base layout; its script and style come from this server.
    assert "<main>" in response.text and "Choose a new password" in response.text
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', response.text):
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.headers["x-content-type-options"] == "nosniff"


async def test_nothing_from_the_request_is_reflected(client: httpx.AsyncClient) -> None:
    hostile = "<script>alert(1)</script>"
    response = await client.get("/reset-password", params={"token": hostile, "x": hostile})
    assert response.status_code == 200
    assert "alert(1)" not in response.text  # the token is read by the script, not rendered


def test_the_templates_escape_what_they_are_given(stack: ServerStack) -> None:
    """Jinja2 autoescaping is on for the page: a hostile value comes out as text."""
    app = create_app(Settings(env="test", database_url=stack.database_url))
    hostile = "\"><script>alert('x')</script>"
    with app.test_request_context("/reset-password"):
        template = app.jinja_env.get_template("reset_password.html")
        html = template.render(confirm_url=hostile, min_length=10, max_length=128)
    assert "<script>alert" not in html
    assert str(Markup.escape(hostile)) in html


async def test_the_page_is_not_an_api_operation(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert [path for path in paths if "reset-password" in path] == [
        "/api/v1/auth/reset-password",
        "/api/v1/auth/reset-password/confirm",
    ]
    assert not [path for path in paths if path.startswith("/assets")]


# --- the link in the mail --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "base_url", "configured", "expected"),
    [
        (
            "development",
            "http://127.0.0.1:8000",
            None,
            "http://127.0.0.1:8000/reset-password#token={token}",
        ),
        (
            "development",
            "http://[::1]:8000",
            None,
            "http://[::1]:8000/reset-password#token={token}",
        ),
        (
            "development",
            "http://localhost:8000",
            None,
            "http://localhost:8000/reset-password#token={token}",
        ),
        # A Host a client chose is never where another person's token goes.
        ("development", "http://attacker.example:8000", None, None),
        ("development", "http://127.0.0.1.attacker.example", None, None),
        (
            "test",
            "https://news.example:8443",
            "https://www.example.org/account/reset#token={token}",
            "https://www.example.org/account/reset#token={token}",
        ),
    ],
)
def test_the_link_is_the_setting_else_this_page_on_a_loopback_host_in_development(
    stack: ServerStack, env: str, base_url: str, configured: str | None, expected: str | None
) -> None:
    settings = Settings(
        env=env,
        database_url=stack.database_url,
        password_reset_url=configured,
    )
    app = create_app(settings)
    with app.test_request_context("/api/v1/auth/reset-password", base_url=base_url):
        assert reset_link() == expected
