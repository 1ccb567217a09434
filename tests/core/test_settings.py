"""service.core.settings: environment parsing and the production secret rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.core.settings import DEFAULT_SECRET_KEY, Settings


def test_read_url_defaults_to_the_primary() -> None:
    settings = Settings(database_url="postgresql://u@db:5432/news", _env_file=None)
    assert settings.database_url == "postgresql+asyncpg://u@db:5432/news"
    assert settings.read_database_url == settings.database_url


def test_read_url_is_used_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@primary/news")
    monkeypatch.setenv("DATABASE_READ_URL", "postgres://u@replica/news")
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    settings = Settings(_env_file=None)
    assert settings.read_database_url == "postgresql+asyncpg://u@replica/news"
    assert settings.db_pool_size == 7


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_url", "mysql://x/y"),
        ("redis_url", "http://x"),
        ("db_pool_size", 0),
        ("max_content_length", 0),
        ("env", "staging"),
    ],
)
def test_invalid_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value}, _env_file=None)


@pytest.mark.parametrize("secret", [None, DEFAULT_SECRET_KEY, "short-but-not-default"])
def test_production_refuses_a_missing_default_or_short_secret(secret: str | None) -> None:
    kwargs: dict[str, Any] = {} if secret is None else {"secret_key": secret}
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(env="production", _env_file=None, **kwargs)


RESET = "https://news.example.com/reset-password?token={token}"


def test_production_accepts_a_long_random_secret() -> None:
    settings = Settings(
        env="production", secret_key="x" * 48, password_reset_url=RESET, _env_file=None
    )
    assert settings.env == "production"


def test_outside_development_a_reset_link_built_from_the_host_header_is_refused() -> None:
    with pytest.raises(ValidationError, match="PASSWORD_RESET_URL"):
        Settings(env="production", secret_key="x" * 48, password_reset_url=None, _env_file=None)
    with pytest.raises(ValidationError, match="ENV=test"):
        Settings(env="test", password_reset_url=None, _env_file=None)
    development = Settings(env="development", password_reset_url=None, _env_file=None)
    assert development.password_reset_url is None  # the page of the server asked (loopback)


def test_production_process_will_not_start_without_a_secret(tmp_path: Path) -> None:
    result = subprocess.run(
        # What Hypercorn does: import the module, then build the app (at the lifespan start-up).
        [sys.executable, "-c", "import service.asgi; service.asgi.app.built()"],
        env={"ENV": "production", "PATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr
