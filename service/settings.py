"""Configuration: one typed ``Settings`` object read from the environment (and ``.env``).

Every variable is listed in the README's configuration table. Settings are read once, at
start-up, by ``create_app`` (API), ``worker.py`` (arq) and ``alembic/env.py`` (migrations), so
all three always agree on where PostgreSQL and Redis are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-change-me"
MIN_SECRET_LENGTH = 32


def normalise_database_url(url: str) -> str:
    """Return ``url`` with the asyncpg driver, accepting the usual ``postgres://`` spellings."""
    for prefix in (
        "postgres://",
        "postgresql://",
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if not url.startswith("postgresql+asyncpg://"):
        raise ValueError("must be a PostgreSQL URL such as postgresql://user@host:5432/newsdesk")
    return url


class Settings(BaseSettings):
    """All of Newsdesk's configuration; field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/newsdesk"
    database_read_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)

    db_pool_size: int = Field(10, ge=1, le=500)
    db_max_overflow: int = Field(5, ge=0, le=500)
    db_pool_timeout: float = Field(5.0, gt=0)
    db_connect_timeout: float = Field(5.0, gt=0)
    db_statement_timeout_ms: int = Field(15_000, ge=0)
    redis_max_connections: int = Field(50, ge=1)
    redis_socket_timeout: float = Field(2.0, gt=0)
    readiness_timeout: float = Field(1.0, gt=0)
    max_content_length: int = Field(1024 * 1024, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _asyncpg_primary(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("database_read_url")
    @classmethod
    def _asyncpg_replica(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0")
        return value

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.env == "production" and (
            secret == DEFAULT_SECRET_KEY or len(secret) < MIN_SECRET_LENGTH
        ):
            raise ValueError(
                "SECRET_KEY is missing, the default or shorter than "
                f"{MIN_SECRET_LENGTH} characters; production will not start without one. Set "
                "SECRET_KEY to a random value, e.g. the output of: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return self

    @property
    def read_database_url(self) -> str:
        """The replica URL, or the primary when no replica is configured."""
        return self.database_read_url or self.database_url
