"""Administration commands: ``create-user``, ``create-api-key`` and ``seed``.

They talk to ``DATABASE_URL`` directly (no HTTP); ``service.cli.commands`` wires them to
``python -m service``. Their errors (e-mail taken, unknown e-mail, invalid input, database
unreachable) are one line on stderr and exit status 1, never a traceback or a password.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _CommandError(Exception):
    """A failure to report as one line on stderr (exit status 1), without a traceback."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner() as runner:
        return runner.run(coro)


def _database_url() -> str:
    from pydantic import ValidationError

    from service.core.settings import Settings

    try:
        return Settings().database_url
    except ValidationError as exc:
        raise _CommandError(f"invalid configuration: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    """The messages of a pydantic ``ValidationError`` (never the input values: passwords)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}"
            for error in exc.errors()
        )
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _database_errors() -> tuple[type[Exception], ...]:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]
    from sqlalchemy.exc import SQLAlchemyError

    return (OSError, TimeoutError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _password() -> str:
    password = os.environ.get("NEWSDESK_PASSWORD")
    if password is not None:
        return password
    if not sys.stdin.isatty():  # piped in: the first line
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _CommandError("no password given (set NEWSDESK_PASSWORD or pipe it in)")
        return password
    try:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise _CommandError("the two passwords differ")
    except (EOFError, KeyboardInterrupt):
        raise _CommandError("no password given") from None
    return password


async def _insert_user(url: str, *, email: str, name: str, password: str) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from service.core.errors import DomainError
    from service.domain.passwords import hash_password
    from service.domain.users import create_user

    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            try:
                user = await create_user(
                    session, email=email, name=name, password_hash=await hash_password(password)
                )
            except DomainError as exc:
                raise _CommandError(f"{exc.message} ({email})") from None
            user_id = user.id
            await session.commit()
            return user_id
    finally:
        await engine.dispose()


def create_user_command(email: str, name: str) -> int:
    from pydantic import ValidationError

    from service.domain.schemas import UserCreate

    url = _database_url()
    password = _password()
    try:
        body = UserCreate(email=email, name=name, password=password)
    except ValidationError as exc:
        raise _CommandError(f"invalid user: {_describe(exc)}") from None
    user_id = _run(_insert_user(url, email=body.email, name=body.name, password=body.password))
    print(f"created user {user_id} <{body.email}>", file=sys.stderr)
    print(user_id)
    return 0


async def _issue_key(url: str, *, email: str, name: str) -> tuple[str, str]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from service.domain.api_keys import issue_key
    from service.domain.users import user_by_email

    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            user = await user_by_email(session, email)
            if user is None:
                raise _CommandError(f"no user has the e-mail {email}")
            row, key = await issue_key(session, user_id=user.id, name=name)
            prefix = row.prefix
            await session.commit()
            return key, prefix
    finally:
        await engine.dispose()


def create_api_key_command(email: str, name: str) -> int:
    from pydantic import TypeAdapter, ValidationError

    from service.domain.schemas import ApiKeyCreate, Email

    url = _database_url()
    try:
        address = TypeAdapter(Email).validate_python(email)
        body = ApiKeyCreate(name=name)
    except ValidationError as exc:
        raise _CommandError(f"invalid input: {_describe(exc)}") from None
    key, prefix = _run(_issue_key(url, email=address, name=body.name))
    print(f"key: {key}")
    print(f"prefix: {prefix}")
    print("The key is shown this once and never again: store it now.", file=sys.stderr)
    return 0


def seed_command(count: int, authors: int, batch: int, random_seed: int, progress: bool) -> int:
    from service.cli.seed import seed_articles

    url = _database_url()
    started = time.perf_counter()
    inserted = _run(
        seed_articles(
            url, count=count, authors=authors, batch=batch, progress=progress, seed=random_seed
        )
    )
    elapsed = time.perf_counter() - started
    print(f"seeded {inserted} articles by {authors} authors in {elapsed:.1f} s")
    return 0


def count_arg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_arg(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def data_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "create-user":
            return create_user_command(args.email, args.name)
        if args.command == "create-api-key":
            return create_api_key_command(args.email, args.name)
        return seed_command(
            args.count, args.authors, args.batch, args.random_seed, not args.no_progress
        )
    except _CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except _database_errors() as exc:
        print(f"error: database: {_describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    return 1
