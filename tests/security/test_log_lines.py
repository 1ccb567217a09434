"""Log lines a client shapes (service.core.logs, service.web.access_log): redaction is linear
in the line's length, access lines carry at most 2 KiB of the path, and a text line never holds
a raw CR, LF or ESC from the request."""

from __future__ import annotations

import httpx
import pytest

from service.core.logs import EMAIL_PLACEHOLDER, MAX_LOGGED_PATH, SECRET_PLACEHOLDER, redact
from service.domain.credentials import new_api_key
from tests.security.conftest import StartServer

MIB = 1024 * 1024

# Every shape the patterns can start on, repeated without ever completing a match: the shapes
# that made the old pattern scan a run again from each position (2.5 s at 64 KiB, quadratic).
SHAPES = {
    "address characters holding nd_, no @": "aaaaaaaand_",
    "nd_ runs cut by a dash": "nd_-",
    "eyJ runs without a dot": "eyJ-",
    "eyJ runs with a short signature": "eyJabcdefghij.abc-",
    "bearer words": "bearer ",
    "an @ between single letters": "a@",
    "address characters with dots": "a.b!c#nd_",
}


@pytest.mark.timeout(120)  # a quadratic redaction of 7 MiB would take hours, not seconds
@pytest.mark.parametrize("unit", list(SHAPES.values()), ids=list(SHAPES))
def test_a_mebibyte_of_any_shape_is_redacted_and_the_secrets_after_it_too(unit: str) -> None:
    key, _ = new_api_key()
    line = unit * (MIB // len(unit)) + f" ann@example.com {key} end"
    redacted = redact(line)
    assert "ann@example.com" not in redacted
    assert key not in redacted
    assert redacted.endswith(f"{EMAIL_PLACEHOLDER} {SECRET_PLACEHOLDER} end")


async def test_access_lines_cut_long_paths_and_escape_control_characters(
    serve: StartServer,
) -> None:
    server = serve(LOG_FORMAT="text")
    long_path = "/" + "aaaaaaaand_" * 1300  # 14 KiB, under Hypercorn's 16 KiB request head
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(4):
            assert (await http.get(long_path)).status_code == 404
        forged = await http.get("/x%0d%0a2026-01-01 INFO forged%1b[2J")
        assert forged.status_code == 404
        assert (await http.get("/healthz")).status_code == 200
    lines = server.log().splitlines()
    cut = [line for line in lines if "...[cut, " in line]
    assert len(cut) == 4, lines[-10:]
    assert all(len(line) < MAX_LOGGED_PATH + 400 for line in cut)
    assert not any(line.startswith("2026-01-01 INFO forged") for line in lines)
    assert any("/x\\r\\n2026-01-01 INFO forged\\x1b[2J" in line for line in lines)
    assert "\x1b" not in server.log()
