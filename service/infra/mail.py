"""Outgoing mail: build a plain-text message, then send it through SMTP or keep it on disk.

With ``SMTP_HOST`` set, ``deliver`` hands the message to that server with aiosmtplib
(``SMTP_PORT``, optional ``SMTP_USERNAME``/``SMTP_PASSWORD`` login, each step bounded by
``SMTP_TIMEOUT``), upgrading the connection as ``SMTP_TLS`` says: ``opportunistic`` (the
default) uses STARTTLS when the server offers it, ``required`` refuses to send through a
server that does not (``aiosmtplib.SMTPException``, nothing sent), ``off`` never upgrades.
Without it (development), the message is written to ``MAIL_OUTBOX`` as an ``.eml`` file
that any mail client opens, and the path is logged.

Delivery failures raise (``aiosmtplib.SMTPException``, ``OSError``): the caller, a job,
decides whether to try again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

from service.core.settings import Settings

log = logging.getLogger(__name__)


def build_message(settings: Settings, *, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message from ``MAIL_FROM`` to ``to``."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid() would otherwise ask the resolver for this host's name.
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "newsdesk.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    # 7bit keeps long lines (links with tokens) whole in the raw message; quoted-printable
    # would cut them with soft line breaks. Non-ASCII text lets the library choose.
    message.set_content(text, cte="7bit" if text.isascii() else None)
    return message


async def deliver(settings: Settings, message: EmailMessage) -> str:
    """Send ``message``; returns where it went (``smtp://host:port`` or the ``.eml`` path)."""
    if settings.smtp_host:
        # Imported here, not at module level: the API process imports this module (the auth
        # views enqueue mail) but only the worker delivers, and aiosmtplib is ~1 MiB of it.
        import aiosmtplib

        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            start_tls=START_TLS[settings.smtp_tls],
            timeout=settings.smtp_timeout,
        )
        where = f"smtp://{settings.smtp_host}:{settings.smtp_port}"
        log.info("mail %s sent through %s", _mail_id(message), where)
        return where
    path = await asyncio.to_thread(write_to_outbox, Path(settings.mail_outbox), message)
    log.info("mail %s written to %s (SMTP_HOST is not set)", _mail_id(message), path)
    return str(path)


# SMTP_TLS -> aiosmtplib's start_tls: None upgrades when the server offers STARTTLS (and
# verifies its certificate), True refuses to send without it, False never upgrades.
START_TLS: dict[str, bool | None] = {"opportunistic": None, "required": True, "off": False}


def _mail_id(message: EmailMessage) -> str:
    """The Message-ID's local part: ``<id@domain>`` whole looks like an e-mail address, which
    log lines never carry (``service.core.logs.redact`` would blank it)."""
    return str(message["Message-ID"]).strip("<>").partition("@")[0]


def write_to_outbox(outbox: Path, message: EmailMessage) -> Path:
    """Write ``message`` to ``outbox/<time>-<random>.eml`` (the folder is created if needed).

    The file appears complete or not at all: it is written under a temporary name first."""
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}.eml"
    path = outbox / name
    partial = outbox / (name + ".part")
    partial.write_bytes(message.as_bytes())
    partial.replace(path)
    return path.resolve()
