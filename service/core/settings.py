"""Configuration: one typed ``Settings`` object read from the environment (and ``.env``).

A ``.env`` file in the working directory fills in what the environment does not set (the
environment wins); ``ENV_FILE`` names another file instead, or none when empty (the tests set
it empty, so a developer's ``.env`` cannot change their outcome). ``.env.example`` lists every
variable with its default.

Every variable is listed in the README's configuration table. Settings are read once, at
start-up, by ``create_app`` (API), ``worker.py`` (arq) and ``alembic/env.py`` (migrations), so
all three always agree on where PostgreSQL and Redis are.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.core.logs import LogFormat, default_log_format
from service.core.redis_url import is_sentinel_url, parse_sentinel_url

DEFAULT_SECRET_KEY = "dev-insecure-change-me"
MIN_SECRET_LENGTH = 32
# Names the dotenv file read besides the environment; empty: none. Unset: ``.env``.
ENV_FILE_VARIABLE = "ENV_FILE"


def env_file() -> str | None:
    """The dotenv file the settings read: ``ENV_FILE``, else ``.env``; ``None`` when empty."""
    return os.environ.get(ENV_FILE_VARIABLE, ".env") or None


_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*")
PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _valid_rate(value: str) -> str:
    match = _RATE.fullmatch(value)
    if not match or int(match.group(1)) < 1:
        raise ValueError("must look like 10/minute (a count per second, minute, hour or day)")
    return f"{int(match.group(1))}/{match.group(2)}"


@functools.lru_cache(maxsize=64)
def parse_rate(value: str) -> tuple[int, int]:
    """``"10/minute"`` -> ``(10, 60)``: the count and the window in seconds."""
    count, period = _valid_rate(value).split("/")
    return int(count), PERIOD_SECONDS[period]


RateLimit = Annotated[str, AfterValidator(_valid_rate)]


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

    # Connections per process and engine. No overflow by default: the pool closes an overflow
    # connection when it is returned while DB_POOL_SIZE idle ones wait in its queue, and
    # under steady load asyncio's queue holds connections handed to requests that have not
    # run yet, so overflow connections are closed and opened again all the time (60 readers
    # for 2 s: 62 connections opened with 10+5, 15 with 15+0; tests/infra/test_reads.py).
    db_pool_size: int = Field(15, ge=1, le=500)
    db_max_overflow: int = Field(0, ge=0, le=500)
    db_pool_timeout: float = Field(5.0, gt=0)
    db_connect_timeout: float = Field(5.0, gt=0)
    db_statement_timeout_ms: int = Field(15_000, ge=0)
    # DATABASE_URL points at PgBouncer in transaction pooling mode: no named prepared
    # statements, no startup parameters it refuses (service.infra.resources.connect_args).
    db_pgbouncer: bool = False
    redis_max_connections: int = Field(50, ge=1)
    redis_socket_timeout: float = Field(2.0, gt=0)
    readiness_timeout: float = Field(1.0, gt=0)
    # /readyz answers from a check at most this old: probes and clients cannot make each
    # request cost a database and a Redis round trip.
    readiness_cache_seconds: float = Field(1.0, ge=0)
    # /readyz answers 503 while the event loop's worst delay of the last second is past this:
    # an instance that cannot run its loop cannot serve, whatever its dependencies say.
    readiness_max_loop_lag: float = Field(2.0, gt=0)
    max_content_length: int = Field(1024 * 1024, ge=1)
    # A request body must arrive at BODY_MIN_RATE bytes/s on average once BODY_GRACE_SECONDS
    # of reading have passed, or it is answered 408 and its connection closed (0: no minimum).
    body_min_rate: int = Field(240, ge=0)
    body_grace_seconds: float = Field(5.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json" (one object per line, schema in service.core.logs) or "text"; unset: json when
    # ENV=production, text otherwise (resolved_log_format).
    log_format: Literal["json", "text"] | None = None

    session_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    cache_enabled: bool = True
    cache_ttl_article: int = Field(300, ge=1)
    # How long an article's last cached body is kept to answer while the database is
    # unreachable (stale-if-error); 0: never.
    cache_stale_seconds: int = Field(86_400, ge=0)
    cache_ttl_list: int = Field(60, ge=1)
    cache_ttl_popular: int = Field(300, ge=1)
    cache_timeout: float = Field(0.25, gt=0)  # per Redis call made by the cache
    cache_breaker_seconds: float = Field(5.0, gt=0)  # how long to bypass a failing Redis
    http_max_age: int = Field(0, ge=0)  # Cache-Control max-age on anonymous reads
    # A Redis of the cache's own (maxmemory with allkeys-lru), away from sessions, rate limits
    # and queues, which must never be evicted; unset: the cache shares REDIS_URL.
    cache_redis_url: str | None = None
    # The largest body the cache stores; a bigger answer is served uncached.
    cache_max_entry_bytes: int = Field(256 * 1024, ge=1024)
    # List pages cached per generation of the article lists (canonical queries only); past it
    # a list page is served uncached.
    cache_max_list_keys: int = Field(300, ge=1)
    # Rate limits: "<count>/<second|minute|hour|day>", kept in Redis and shared by all workers.
    rate_limit_register: RateLimit = "10/hour"
    rate_limit_login_ip: RateLimit = "30/minute"
    rate_limit_login_email: RateLimit = "10/minute"
    rate_limit_write: RateLimit = "120/minute"
    rate_limit_read: RateLimit = "1200/minute"
    # Failed authentications (a wrong password, an unknown API key or session token) per
    # client address, over every way of authenticating (service.web.rate_limits).
    rate_limit_auth_failures: RateLimit = "60/minute"
    # Search requests (?q=) per client address, on top of RATE_LIMIT_READ.
    rate_limit_search: RateLimit = "60/minute"
    # Search (?q=): each term a prefix of at least SEARCH_MIN_PREFIX characters, at most
    # SEARCH_MAX_TERMS terms, and the search's statements cut at SEARCH_TIMEOUT_MS.
    search_min_prefix: int = Field(2, ge=1, le=32)
    search_max_terms: int = Field(4, ge=1, le=32)
    search_timeout_ms: int = Field(2000, ge=1)
    # IPv6 clients share one rate-limit bucket per network of this prefix length (a client is
    # usually given a whole /64).
    rate_limit_ipv6_prefix: int = Field(64, ge=16, le=128)
    # Live credentials a user may hold: creating a key past MAX_API_KEYS_PER_USER is refused
    # (409); a login past MAX_SESSIONS_PER_USER ends the user's oldest session.
    max_api_keys_per_user: int = Field(20, ge=1, le=10_000)
    max_sessions_per_user: int = Field(50, ge=1, le=10_000)
    # Password hashing threads per process (argon2id holds 64 MiB per hash; unset: the CPU
    # quota, service.core.cpus); a request that waits longer than PASSWORD_HASH_WAIT_SECONDS
    # for one is answered 503 with Retry-After (service.domain.passwords).
    password_hash_concurrency: int | None = Field(None, ge=1, le=256)
    password_hash_wait_seconds: float = Field(2.0, gt=0)
    # X-Forwarded-For is believed only from these proxies (comma-separated IPs or CIDRs).
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # Origins allowed by CORS (comma-separated, or "*"); empty: CORS off.
    cors_origins: Annotated[list[str], NoDecode] = []

    # Background jobs (arq). Views are counted in Redis and flushed to PostgreSQL every
    # VIEW_FLUSH_SECONDS (a divisor of 60); articles pending longer than PROCESS_STALE_SECONDS
    # are enqueued again by a sweeper that runs every PROCESS_SWEEP_SECONDS (a divisor of 60).
    view_flush_seconds: int = Field(5, ge=1, le=60)
    view_flush_batch: int = Field(1000, ge=1)
    # Views an API process holds while Redis cannot take them (counted once it answers again);
    # past it views are dropped (metric views_dropped_total).
    view_buffer_max: int = Field(100_000, ge=0)
    process_sweep_seconds: int = Field(30, ge=1, le=60)
    process_stale_seconds: int = Field(60, ge=1)
    process_max_tries: int = Field(5, ge=1)
    # The job queues a `python -m service worker` process serves, one arq worker each
    # (comma-separated; service.jobs.worker): interactive (mail), bulk (article processing),
    # periodic (the cron jobs). WORKER_MAX_JOBS is the bulk worker's concurrency.
    worker_roles: Annotated[list[Literal["interactive", "bulk", "periodic"]], NoDecode] = [
        "interactive",
        "bulk",
        "periodic",
    ]
    worker_max_jobs: int = Field(40, ge=1)
    # How often the bulk worker looks for new jobs (arq's poll_delay; it starts new jobs only
    # when it looks, so WORKER_MAX_JOBS / this is its ceiling in jobs per second).
    worker_poll_seconds: float = Field(0.05, gt=0, le=5)
    # Processes that run process_article's CPU step (summary and keywords) beside the bulk
    # worker, each on a core of its own; unset: the container's CPU quota (as WEB_CONCURRENCY,
    # service.core.cpus); 0: a thread of the worker process (one core per process at
    # most, the GIL). They run under SCHED_IDLE (WORKER_CPU_IDLE: a core only when nothing
    # else wants it), else at WORKER_CPU_NICE (0 to 19), so the API wins a shared CPU.
    worker_cpu_processes: int | None = Field(None, ge=0, le=256)
    worker_cpu_idle: bool = True
    worker_cpu_nice: int = Field(10, ge=0, le=19)
    # Niceness of a `python -m service worker` process (its event loop: the jobs' I/O): on a
    # machine shared with the API, background work gets the CPU second.
    worker_nice: int = Field(10, ge=0, le=19)
    worker_interactive_max_jobs: int = Field(10, ge=1)
    worker_periodic_max_jobs: int = Field(4, ge=1)
    job_timeout_seconds: int = Field(300, ge=1)
    job_keep_result_seconds: int = Field(3600, ge=0)
    worker_shutdown_wait_seconds: int = Field(20, ge=0)  # in-flight jobs may finish on SIGTERM
    # A queue whose oldest ready job has waited longer (or views waiting longer to be flushed)
    # is marked as backlogged by `python -m service queue`, /readyz and the example alerts
    # (service.infra.backlog): on the bulk queue, the sign to add workers. Never refuses work.
    queue_backlog_warn_seconds: int = Field(60, ge=1)

    # Mail: through SMTP when SMTP_HOST is set, else written as .eml files to MAIL_OUTBOX.
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # "opportunistic": STARTTLS when the server offers it; "required": refuse to send without
    # it; "off": cleartext (a local relay only).
    smtp_tls: Literal["opportunistic", "required", "off"] = "opportunistic"
    smtp_timeout: float = Field(10.0, gt=0)
    mail_from: str = "Newsdesk <no-reply@newsdesk.invalid>"
    mail_outbox: str = ".data/outbox"
    password_reset_ttl_seconds: int = Field(3600, ge=60)
    # Where the reset link points; {token} is replaced by the token. Unset: the page this
    # server serves, at the scheme, host and port the reset was asked on (service.web.pages).
    password_reset_url: str | None = None
    # Reset mails per e-mail address and client, and per e-mail address from anywhere (a
    # ceiling against mail bombing); past either the request still answers 202, sending nothing.
    rate_limit_reset: RateLimit = "5/hour"
    rate_limit_reset_address: RateLimit = "20/hour"

    # Prometheus metrics (service.infra.metrics). Off: no /metrics, no per-request counting.
    # The API's workers share PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself; made
    # and cleaned by `python -m service serve`); each worker refreshes its pool, GC and process
    # figures every METRICS_SAMPLE_SECONDS. The arq worker serves its own /metrics on
    # WORKER_METRICS_HOST:WORKER_METRICS_PORT (0: none).
    metrics_enabled: bool = True
    metrics_sample_seconds: float = Field(5.0, gt=0)
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 where Prometheus scrapes it
    worker_metrics_port: int = Field(9101, ge=0, le=65535)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual order (arguments, environment, dotenv file); ``ENV_FILE``, when set,
        chooses the dotenv file (empty: none) unless the caller chose one (``_env_file``)."""
        default = cls.model_config.get("env_file")
        chosen = getattr(dotenv_settings, "env_file", default)
        if ENV_FILE_VARIABLE in os.environ and chosen == default:
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=env_file())
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("database_url")
    @classmethod
    def _asyncpg_primary(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("database_read_url")
    @classmethod
    def _asyncpg_replica(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else None

    @field_validator("trusted_proxies", "cors_origins", "worker_roles", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("worker_cpu_processes", "password_hash_concurrency", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("worker_roles")
    @classmethod
    def _some_roles_once(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one of interactive, bulk, periodic")
        return list(dict.fromkeys(value))

    @field_validator("view_flush_seconds", "process_sweep_seconds")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @field_validator("password_reset_url")
    @classmethod
    def _has_token(cls, value: str | None) -> str | None:
        if not value:  # unset or empty: the link is built from the request
            return None
        if "{token}" not in value:
            raise ValueError("must contain {token}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if is_sentinel_url(value):
            parse_sentinel_url(value)  # its ValueError says what is wrong
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be a Redis URL such as redis://127.0.0.1:6379/0, or "
                "redis+sentinel://host1:26379,host2:26379/<master name>/<db> (Sentinel)"
            )
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
        if self.env != "development" and not self.password_reset_url:
            # Built from the request's Host header, a reset link could point at any host a
            # client names: someone asking a reset for another person's address would have
            # the mail carry that person's token to their own site. Only development on a
            # loopback host may build it so (service.web.pages.reset_link).
            raise ValueError(
                f"PASSWORD_RESET_URL is not set; with ENV={self.env} the server will not start "
                "without it (the link would otherwise follow the request's Host header). Set "
                "it to your public reset page, e.g. "
                "https://news.example.com/reset-password#token={token}"
            )
        return self

    @property
    def resolved_log_format(self) -> LogFormat:
        """``LOG_FORMAT``, or the default for ``ENV``."""
        return default_log_format(self.env, self.log_format)

    @property
    def read_database_url(self) -> str:
        """The replica URL, or the primary when no replica is configured."""
        return self.database_read_url or self.database_url
