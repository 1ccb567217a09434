"""The HTML pages of the API: only ``GET /reset-password``, where the link of a password reset
mail leads (``service.domain.password_reset``).

The page is a Jinja2 template (``templates/reset_password.html``, extending
``templates/base.html``; Flask autoescapes both) and a script and a style sheet served from
``static/`` under ``/assets/``. It renders nothing the caller sent: the script reads the token
from the page's own address, removes it from the address bar and the history, and sends it
with the new password to ``POST /api/v1/auth/reset-password/confirm``. The server needs the
token in no page request, and the access log writes paths without their query string
(``service.web.access_log``), so the token stays out of the logs.

Pages are not API operations: they are plain Flask views, so the OpenAPI document
(``service.web.openapi``, built from ``endpoint`` views only) leaves them out.
"""

from __future__ import annotations

from annotated_types import MaxLen, MinLen
from flask import Blueprint, Response, render_template, request, url_for

from service.domain.schemas import PasswordResetConfirm
from service.web import context

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# A page loads its own script and style and talks to its own API, nothing else; it may not be
# framed, and the address (which carries the reset token) is never sent as a referrer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _password_lengths() -> tuple[int, int]:
    """The shortest and longest new password the confirm endpoint takes (its schema's)."""
    metadata = PasswordResetConfirm.model_fields["new_password"].metadata
    shortest = next(m.min_length for m in metadata if isinstance(m, MinLen))
    longest = next(m.max_length for m in metadata if isinstance(m, MaxLen))
    return shortest, longest


def page(template: str, **values: object) -> Response:
    """``template`` rendered with ``values``, with the headers of ``PAGE_HEADERS``."""
    response = Response(render_template(template, **values), mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


@bp.get("/reset-password")
def reset_password() -> Response:
    """The form that sets a new password with the token of a reset mail."""
    shortest, longest = _password_lengths()
    return page(
        "reset_password.html",
        confirm_url=url_for("auth.confirm_password_reset"),
        min_length=shortest,
        max_length=longest,
    )


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _loopback(host: str) -> bool:
    """True for a ``Host`` naming this machine: localhost (and ``*.localhost``), 127.0.0.1,
    [::1], with or without a port."""
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.split(":")[0]
    name = name.lower().rstrip(".")
    return name in LOOPBACK_HOSTS or name.endswith(".localhost")


def reset_link() -> str | None:
    """The link of a reset mail asked for in the current request, ``{token}`` standing for
    the token: ``PASSWORD_RESET_URL`` when set (required outside development), else, in
    development asked on a loopback host, this server's reset page at the scheme, host and
    port the request came to. None otherwise: a ``Host`` a client chose never picks where
    another person's token is sent."""
    settings = context.settings()
    if settings.password_reset_url:
        return settings.password_reset_url
    if settings.env != "development" or not _loopback(request.host):
        return None
    # In the fragment, the token never reaches a server: not this one's access log or traces,
    # not a proxy's log, not a Referer (the page's script reads it and removes it).
    return url_for("pages.reset_password", _external=True) + "#token={token}"
