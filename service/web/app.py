"""The Flask application: ``create_app(settings)`` and the loop-native Flask subclass."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from flask import Flask, Request, Response, has_request_context, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.routing import MapAdapter
from werkzeug.wsgi import get_host

from service.core.settings import Settings
from service.core.types import ROUTE_SCOPE_KEY
from service.domain import passwords
from service.domain.view_counts import ViewCounter
from service.greenlet_asgi.bridge import await_
from service.infra.resources import Resources
from service.infra.runtime import Runtime
from service.infra.tracing import API_SERVICE
from service.web import context, errors, flask_cli, rate_limits, security, transactions
from service.web.converters import IdConverter
from service.web.jsonio import OrjsonProvider


class LoopNativeFlask(Flask):
    """Flask whose async views, hooks and error handlers are awaited on the server's loop.

    Flask's default ``async_to_sync`` (asgiref) starts a thread and a new event loop for every
    call, which forbids shared connection pools. Here the request already runs in a greenlet
    on the server's loop (see ``service.asgi``), so awaiting is a switch back to that loop.

    An async view runs as a coroutine on the loop, where synchronous reads of the request body
    (``request.get_json()``, ``request.form``) cannot wait for the network. So before an async
    callable runs, the body is read in the greenlet and cached; it is bounded by
    ``MAX_CONTENT_LENGTH``. Synchronous views may still stream it (``request.stream``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_versions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks this for every view and hook on every request; remember the answers.
        try:
            return self._sync_versions[func]
        except (KeyError, TypeError):
            wrapped = super().ensure_sync(func)
            with contextlib.suppress(TypeError):  # unhashable callables are not remembered
                self._sync_versions[func] = wrapped
            return wrapped

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Flask's adapter, minus work this app never needs (no host or subdomain matching,
        no SERVER_NAME, no TRUSTED_HOSTS): the host is read once instead of twice."""
        if (
            request is None
            or self.url_map.host_matching
            or self.subdomain_matching
            or self.config["SERVER_NAME"] is not None
            or self.config["TRUSTED_HOSTS"] is not None
        ):
            return super().create_url_adapter(request)
        env = request.environ
        return self.url_map.bind(
            get_host(env).lower(),
            script_name=_wsgi_str(env.get("SCRIPT_NAME", "")),
            subdomain=self.url_map.default_subdomain or "",
            url_scheme=env["wsgi.url_scheme"],
            default_method=env["REQUEST_METHOD"],
            path_info=_wsgi_str(env.get("PATH_INFO", "")),
            query_args=_wsgi_str(env.get("QUERY_STRING", "")),
        )

    def full_dispatch_request(self) -> Response:
        """Flask's dispatch, after writing the matched route template into the ASGI scope
        (``ROUTE_SCOPE_KEY``) for the request metrics around the app: routing is done by
        now, and no hook or error can skip this."""
        rule = request.url_rule
        scope = request.environ.get("asgi.scope")
        if rule is not None and scope is not None:
            scope[ROUTE_SCOPE_KEY] = rule.rule
        return super().full_dispatch_request()

    def make_default_options_response(self) -> Response:
        """``OPTIONS``: 204 with ``Allow`` naming the route's methods, no body and no
        ``Content-Type`` (Flask's is a 200 with an empty text/html body). A CORS preflight
        gets this too, with flask-cors's headers added after."""
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response

    def async_to_sync(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if has_request_context() and not getattr(
                request.environ["wsgi.input"], "complete", True
            ):
                request.get_data(cache=True)
            return await_(func(*args, **kwargs))

        return run


def _wsgi_str(value: str) -> str:
    """A PEP 3333 latin-1 native string back to the text it carries (UTF-8)."""
    return value.encode("latin-1").decode(errors="replace")


class NoFlaskSession(SessionInterface):
    """The API authenticates with tokens and keys, never with Flask's signed-cookie session;
    skipping it saves building a signing serializer on every request."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application for ``settings`` (read from the environment when omitted).

    No I/O happens here: engines and the Redis client are created by ``Resources.start()``
    on the serving loop (the ASGI lifespan). Article views are recorded by a ``ViewCounter``
    (one Redis increment per view); ``context.use_views`` replaces it.
    """
    flask_cli.refuse_flask_run()  # no greenlet bridge under `flask run`: say what to run
    settings = settings or Settings()
    app = LoopNativeFlask("service")
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value(),
        # The body limit is enforced by the ASGI adapter (413 before reading, or as a chunked
        # body streams past it). Werkzeug's own limit would silently truncate a chunked body.
        MAX_CONTENT_LENGTH=None,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.session_interface = NoFlaskSession()
    app.url_map.converters["id"] = IdConverter
    app.json = OrjsonProvider(app)
    # The process's runtime, started and closed by the ASGI lifespan (``service.asgi``).
    runtime = Runtime(
        settings, application_name="newsdesk-api", service_name=API_SERVICE, loop_lag=True
    )
    context.install(app, context.AppState(settings, runtime, views=ViewCounter()))

    # The process's password hashing threads, sized from the settings (see the module).
    passwords.configure(settings.password_hash_concurrency, settings.password_hash_wait_seconds)
    transactions.init_app(app)
    errors.register_error_handlers(app)
    rate_limits.init_app(app)
    security.init_app(app, settings)

    from service.web import pages
    from service.web.api import api_keys, articles, auth, docs, health, users

    for module in (health, docs, users, auth, api_keys, articles, pages):
        app.register_blueprint(module.bp)
    return app


def app_resources(app: Flask) -> Resources:
    """The ``Resources`` that ``app``'s lifespan starts and closes."""
    return context.app_state(app).resources
