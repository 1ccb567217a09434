"""service.infra.mail: messages go to a real SMTP server, or to .eml files when none is set."""

from __future__ import annotations

import logging
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from service.cli.embedded import free_port
from service.core.settings import Settings
from service.infra.mail import build_message, deliver
from tests.support.smtp import SmtpServer, smtp_server

LINK = "https://newsdesk.example/reset?token=" + "x" * 120  # longer than a mail line


def message(settings: Settings, to: str = "ann@example.com") -> EmailMessage:
    return build_message(settings, to=to, subject="Hello", text=f"Hi Ann,\n\n{LINK}\n")


async def test_without_smtp_a_readable_eml_is_written_and_its_path_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(mail_outbox=str(tmp_path / "outbox"), mail_from="Desk <desk@news.test>")
    with caplog.at_level(logging.INFO, logger="service.infra.mail"):
        where = await deliver(settings, message(settings))
    assert where in caplog.text
    check_eml(Path(where), tmp_path / "outbox")


def check_eml(path: Path, outbox: Path) -> None:
    assert path.parent == outbox.resolve() and path.suffix == ".eml"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left
    raw = path.read_bytes()
    assert LINK.encode() in raw  # whole in the file: no soft line breaks inside the link
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["From"] == "Desk <desk@news.test>"
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "Hello"
    assert parsed["Message-ID"].endswith("@news.test>")
    assert parsed["Date"]
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content() == f"Hi Ann,\n\n{LINK}\n"


async def test_with_smtp_the_message_reaches_the_server(smtp: SmtpServer) -> None:
    settings = Settings(smtp_host=smtp.host, smtp_port=smtp.port, mail_from="Desk <desk@news.test>")
    to = "bob-smtp@example.com"
    assert await deliver(settings, message(settings, to)) == f"smtp://{smtp.host}:{smtp.port}"
    received = [r for r in smtp.inbox.received if to in r.rcpt_tos]
    assert len(received) == 1
    assert received[0].mail_from == "desk@news.test"
    got = received[0].message
    assert got["Subject"] == "Hello" and got["To"] == to
    assert got.get_content() == f"Hi Ann,\n\n{LINK}\n"


async def test_non_ascii_text_survives_the_trip(smtp: SmtpServer) -> None:
    settings = Settings(smtp_host=smtp.host, smtp_port=smtp.port)
    to = "zoe-utf8@example.com"
    text = "Grüße, Zoë — ünïcödé\n"
    await deliver(settings, build_message(settings, to=to, subject="Grüße", text=text))
    got = (await smtp.inbox.wait_for(to, within=5)).get_content()
    assert got == text


# Plain-text AUTH is what this test server offers; the warning says so at every connection.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_login_uses_the_configured_credentials() -> None:
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret", handled=False)

    options = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    with smtp_server(**options) as server:
        good = Settings(
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_username="desk",
            smtp_password=SecretStr("s3cret"),
        )
        await deliver(good, message(good, "carl-auth@example.com"))
        assert len(server.inbox.to("carl-auth@example.com")) == 1
        bad = good.model_copy(update={"smtp_password": SecretStr("wrong")})
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await deliver(bad, message(bad, "dan-auth@example.com"))
    # aiosmtplib tries each mechanism the server offers before giving up.
    assert seen[0] == (b"desk", b"s3cret")
    assert set(seen[1:]) == {(b"desk", b"wrong")}
    assert server.inbox.to("dan-auth@example.com") == []


async def test_an_unreachable_server_raises_promptly() -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2)
    with pytest.raises((aiosmtplib.SMTPException, OSError)):
        await deliver(settings, message(settings))


async def test_smtp_tls_required_refuses_a_server_without_starttls_and_opportunistic_sends(
    smtp: SmtpServer,
) -> None:
    # The test server offers no STARTTLS (aiosmtpd without a TLS context).
    base = Settings(smtp_host=smtp.host, smtp_port=smtp.port, mail_from="desk@news.test")
    required = base.model_copy(update={"smtp_tls": "required"})
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
        await deliver(required, message(required, "eve-tls@example.com"))
    assert smtp.inbox.to("eve-tls@example.com") == []  # nothing sent in cleartext
    for mode in ("opportunistic", "off"):
        settings = base.model_copy(update={"smtp_tls": mode})
        to = f"fay-{mode}@example.com"
        await deliver(settings, message(settings, to))
        assert len(smtp.inbox.to(to)) == 1, mode
