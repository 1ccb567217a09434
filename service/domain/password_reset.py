"""Password reset by e-mail: signed single-use tokens, the mail job, and the reset itself.

The request side (``request_reset``) only enqueues the ``send_email`` job, for known and
unknown addresses alike, so neither the answer nor its timing tells who has an account. The
worker looks the address up and, when it belongs to a user, mails a token; the token exists
only in the worker and the mail, never in Redis.

The link in the mail is made by the request, which knows where it was sent: the web layer
passes ``PASSWORD_RESET_URL``, or its own reset page at the request's scheme, host and port
(``service.web.pages.reset_link``), as a template in which ``{token}`` stands for the token.

A token is ``{user id, fingerprint of the current password hash, expiry}`` signed with
``SECRET_KEY`` (itsdangerous, salt ``password-reset``). It is single-use because using it
changes the password hash, after which the fingerprint no longer matches; for the same reason
a password change by any other way voids every outstanding token. ``reset_password`` locks
the user's row, so two concurrent uses of one token cannot both succeed, and revokes every
session of the user before committing: when Redis cannot revoke them, nothing is changed
(503) and the token stays good for another try.

``send_email`` may run more than once for one request (arq delivers at least once): the user
then gets a second mail whose token works just as well. Delivery errors are retried with a
growing delay, up to arq's ``max_tries``; each try makes a fresh token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.logs import Private
from service.core.settings import Settings
from service.domain.login_sessions import end_all_sessions
from service.domain.models import User
from service.domain.passwords import hash_password
from service.domain.schemas import without_control_characters
from service.domain.users import set_password_hash, user_by_email
from service.infra import db_cleanup
from service.infra.mail import build_message, deliver
from service.infra.queue import enqueue
from service.infra.resources import Resources

log = logging.getLogger(__name__)

SALT = "password-reset"
PASSWORD_RESET = "password_reset"  # the ``kind`` of mail ``send_email`` sends
# The link of a mail whose job came without one (enqueued by an API from before ``link``)
# while PASSWORD_RESET_URL is unset: the reset page of ``make run``'s default address.
FALLBACK_LINK = "http://127.0.0.1:8000/reset-password#token={token}"


class InvalidResetToken(Exception):
    """The token is forged, malformed, expired, used, or its user is gone."""


@dataclass(frozen=True)
class ResetClaim:
    """What a token with a good signature, not yet expired, says."""

    user_id: int
    fingerprint: str
    expires_at: int  # unix time

    def matches(self, password_hash: str) -> bool:
        """True while the user's password is still the one the token was made for."""
        return hmac.compare_digest(self.fingerprint, fingerprint(password_hash))


def fingerprint(password_hash: str) -> str:
    """A short digest of a password hash: it changes whenever the password does."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def address_tag(secret: str, email: str) -> str:
    """A short keyed digest of an e-mail address, for log lines, which never carry the
    address: one address always gives the same tag (repeated requests show as such), and the
    key (``SECRET_KEY``) keeps the tag from being looked up in a list of hashed addresses."""
    normalised = email.strip().lower().encode()
    return hmac.new(secret.encode(), normalised, hashlib.sha256).hexdigest()[:12]


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=SALT)


def make_token(secret: str, *, user_id: int, password_hash: str, ttl: int, now: float) -> str:
    """A token for ``user_id`` that is good for ``ttl`` seconds from ``now`` (unix time)."""
    payload = {"u": user_id, "f": fingerprint(password_hash), "e": math.floor(now) + ttl}
    return str(_serializer(secret).dumps(payload))


def read_token(secret: str, token: str, *, now: float) -> ResetClaim:
    """The claim of a genuine, unexpired token; ``InvalidResetToken`` otherwise.

    Whether the token is still unused is for the caller to check, with ``ResetClaim.matches``
    against the user's current password hash."""
    try:
        payload: Any = _serializer(secret).loads(token)
    except BadSignature:
        raise InvalidResetToken("bad signature") from None
    if not isinstance(payload, dict):
        raise InvalidResetToken("malformed payload")
    user_id, digest, expires_at = payload.get("u"), payload.get("f"), payload.get("e")
    if not (isinstance(user_id, int) and isinstance(digest, str) and isinstance(expires_at, int)):
        raise InvalidResetToken("malformed payload")
    if now >= expires_at:
        raise InvalidResetToken("expired")
    return ResetClaim(user_id=user_id, fingerprint=digest, expires_at=expires_at)


# --- the request: always the same work -------------------------------------------------


async def request_reset(res: Resources, email: str, *, link: str | None = None) -> bool:
    """Enqueue the reset mail for ``email``, whether or not it has an account; ``link`` is
    the reset link with ``{token}`` in place of the token (see ``reset_link_for``).

    False when the queue (Redis) is unavailable."""
    # Private: arq's "job started" log line shows the arguments, never this one.
    return await enqueue(res, "send_email", PASSWORD_RESET, Private(email), link=link)


# --- the job: runs in the worker ----------------------------------------------------


def reset_link_for(settings: Settings, link: str | None, token: str) -> str:
    """The reset link for ``token``: from the template ``link`` the request made, else from
    PASSWORD_RESET_URL, else from ``FALLBACK_LINK``."""
    template = link if link and "{token}" in link else None
    return (template or settings.password_reset_url or FALLBACK_LINK).replace("{token}", token)


def reset_mail_text(settings: Settings, *, name: str, token: str, link: str | None = None) -> str:
    """The reset mail's text; ``link`` is the template of ``reset_link_for``. The user's
    ``name`` is written without control characters (a name stored before they were refused
    could otherwise start lines of its own or carry terminal escapes)."""
    link = reset_link_for(settings, link, token)
    minutes = max(1, settings.password_reset_ttl_seconds // 60)
    return (
        f"Hello {without_control_characters(name)},\n\n"
        "Someone asked to reset the password of your Newsdesk account. To choose a new\n"
        f"password, open this link within {minutes} minutes:\n\n"
        f"{link}\n\n"
        "or send the token below, with your new password, to\n"
        "POST /api/v1/auth/reset-password/confirm:\n\n"
        f"{token}\n\n"
        "The link works once. If you did not ask for it, ignore this message: your password\n"
        "stays as it is.\n"
    )


async def send_password_reset(
    res: Resources, email: str, *, now: float, link: str | None = None
) -> bool:
    """Mail a reset token to the user with ``email``, in a link made from the template
    ``link`` (``reset_link_for``); False (nothing sent) if there is no such user."""
    async with db_cleanup.session_scope(res.clients.sessionmaker) as session:
        user = await user_by_email(session, email)
    settings = res.settings
    if user is None:
        tag = address_tag(settings.secret_key.get_secret_value(), email)
        log.info("password reset: no account has this address (tag %s); nothing sent", tag)
        return False
    token = make_token(
        settings.secret_key.get_secret_value(),
        user_id=user.id,
        password_hash=user.password_hash,
        ttl=settings.password_reset_ttl_seconds,
        now=now,
    )
    message = build_message(
        settings,
        to=user.email,
        subject="Reset your Newsdesk password",
        text=reset_mail_text(settings, name=user.name, token=token, link=link),
    )
    await deliver(settings, message)
    log.info("password reset: mail sent to user %s", user.id)
    return True


# --- the confirmation ------------------------------------------------------------------


async def reset_password(
    session: AsyncSession,
    redis: Redis,
    *,
    secret: str,
    token: str,
    new_password: str,
    now: float,
) -> int:
    """Set ``new_password`` for the token's user, end all their sessions and commit.

    Returns the user id; ``InvalidResetToken`` when the token is forged, expired, already used
    or its user is gone. Redis errors while revoking sessions propagate, with nothing changed.
    """
    claim = read_token(secret, token, now=now)  # cheap: no hashing for a forged token
    password_hash = await hash_password(new_password)
    # The row lock makes a second, concurrent use of the token wait for the first one and
    # then see the new hash, whose fingerprint no longer matches.
    user = (
        await session.execute(
            select(User)
            .where(User.id == claim.user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if user is None or not claim.matches(user.password_hash):
        await db_cleanup.roll_back(session)
        raise InvalidResetToken("used, or the user is gone")
    await set_password_hash(session, user_id=user.id, password_hash=password_hash)
    try:
        await end_all_sessions(redis, user_id=user.id)
    except Exception:
        await db_cleanup.roll_back(session)
        raise
    await session.commit()
    # A login with the old password between the revocation and the commit would have made a
    # session that outlives the reset: revoke once more now that the new hash is visible.
    try:
        await end_all_sessions(redis, user_id=user.id)
    except Exception as exc:
        log.warning("password reset: second revocation of sessions failed: %s", exc)
    log.info("password reset: user %s has a new password; sessions revoked", user.id)
    return user.id
