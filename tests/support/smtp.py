"""A real SMTP server inside the test process (aiosmtpd), keeping every message it receives."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

from service.cli.embedded import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class Inbox:
    """aiosmtpd handler: parses and keeps each message (appended from the server's thread)."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in list(self.received) if address in r.rcpt_tos]

    async def wait_for(
        self, address: str, *, within: float = 30, alive: Callable[[], bool] = lambda: True
    ) -> EmailMessage:
        """The first message to ``address``, polling for at most ``within`` seconds while
        ``alive()`` (e.g. the worker that sends it still runs)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and alive():
            if found := self.to(address):
                return found[0]
            await asyncio.sleep(0.05)
        if found := self.to(address):
            return found[0]
        raise AssertionError(f"no mail to {address} within {within}s")


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: Inbox


@contextlib.contextmanager
def smtp_server(**controller_options: Any) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 and a free port (aiosmtpd's ``Controller``, in a thread)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **controller_options)
    controller.start()
    try:
        yield SmtpServer(controller.hostname, controller.port, inbox)
    finally:
        controller.stop()
