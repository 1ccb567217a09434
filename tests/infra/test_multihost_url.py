"""Multi-host DATABASE_URLs (a primary and its replica, ``target_session_attrs``): the settings
keep them, the engine connects to the host in the role asked for, and a moment when no host
is in it (a failover before the promotion) is an outage (503), not an unexpected error."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url, text

from service.cli.embedded import free_port
from service.core.settings import Settings
from service.infra.db_errors import unreachable
from service.infra.resources import make_engine
from tests.support.databases import ServerStack


def _multi_host(stack: ServerStack, *ports: int, attrs: str) -> str:
    url = make_url(stack.database_url)
    hosts = "&".join(f"host={url.host}:{port}" for port in ports)
    return f"postgresql://{url.username}@/{url.database}?{hosts}&target_session_attrs={attrs}"


def _port(stack: ServerStack) -> int:
    return make_url(stack.database_url).port or 5432


def test_settings_keep_the_hosts_and_the_role() -> None:
    url = "postgresql://postgres@/newsdesk?host=10.0.0.1:5432&host=10.0.0.2:5432"
    settings = Settings(
        _env_file=None,
        database_url=url + "&target_session_attrs=read-write",
        database_read_url=url + "&target_session_attrs=prefer-standby",
    )
    assert settings.database_url == (
        "postgresql+asyncpg://postgres@/newsdesk?host=10.0.0.1:5432&host=10.0.0.2:5432"
        "&target_session_attrs=read-write"
    )
    assert settings.read_database_url.endswith("&target_session_attrs=prefer-standby")


async def test_the_engine_skips_a_dead_host_for_the_live_primary(stack: ServerStack) -> None:
    url = _multi_host(stack, free_port(), _port(stack), attrs="read-write")
    settings = Settings(_env_file=None, database_url=url, db_pool_size=1, db_max_overflow=0)
    engine = make_engine(settings.database_url, settings, application_name="multihost-test")
    try:
        async with engine.connect() as conn:
            port = (await conn.execute(text("SELECT inet_server_port()"))).scalar_one()
    finally:
        await engine.dispose()
    assert port == _port(stack)


@pytest.mark.parametrize("dead_first", [False, True])
async def test_no_host_in_the_role_asked_for_is_unreachable(
    stack: ServerStack, dead_first: bool
) -> None:
    # The suite's server is a primary: asking for a standby is what asking for a primary is
    # between a primary's death and its replica's promotion.
    ports = [free_port(), _port(stack)] if dead_first else [_port(stack)]
    settings = Settings(
        _env_file=None,
        database_url=_multi_host(stack, *ports, attrs="standby"),
        db_pool_size=1,
        db_max_overflow=0,
    )
    engine = make_engine(settings.database_url, settings, application_name="multihost-test")
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert unreachable(caught.value)
