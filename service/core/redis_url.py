"""``REDIS_URL`` for a Redis behind Sentinel: one precise URL form, parsed in one place.

The form (documented in the README and deploy/README.md)::

    redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/service[/db]

- ``host[:port]``: the Sentinels, comma-separated (port 26379 when left out; an IPv6 address
  in brackets, ``[::1]:26379``). One is enough to start; list them all so that losing one
  Sentinel does not lose the way to the master.
- ``service``: the master's name in the Sentinels' ``sentinel monitor <name> ...`` line.
- ``db``: the database number on the master, 0 when left out.
- ``username``/``password``: percent-encoded credentials of the Redis master (``requirepass``
  or an ACL user), not of the Sentinels: arq's Sentinel support has no way to pass Sentinel
  credentials, so Sentinels with a password of their own are not supported.

There is no ``rediss+sentinel``: arq and redis-py would encrypt the connections to the master
but not those to the Sentinels, a half-TLS set-up this project does not test. A query string
is refused rather than ignored, so a misspelt option cannot pass unnoticed.

Why a parser of our own: ``urllib.parse`` reads a comma-separated host list as one invalid
host name, and the API (redis-py's ``Sentinel``) and the worker (arq's ``RedisSettings``) both
need the same pieces: the Sentinel addresses, the service name, the database and credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379

_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\s:\[\]/,@]+))(?::(?P<port>\d+))?")
_SERVICE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SentinelTarget:
    """Where a Sentinel-managed Redis is: ask ``sentinels`` for ``service``, use ``db``."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The pieces of a ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"a Sentinel URL starts with {SCHEME}")
    rest = url[len(SCHEME) :]
    if "?" in rest or "#" in rest:
        raise ValueError("a Sentinel URL takes no query string or fragment")
    netloc, slash, path = rest.partition("/")
    if not slash:
        raise ValueError("the master's service name is missing: .../<service>[/<db>]")
    username = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None  # as urllib and redis-py read "user@host"
        password = unquote(secret) if colon else None
    sentinels = []
    for part in netloc.split(","):
        match = _HOST.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"{part!r} is not host[:port] (a Sentinel address)")
        port = int(match["port"] or DEFAULT_SENTINEL_PORT)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        sentinels.append((match["v6"] or match["name"], port))
    segments = path.split("/")
    if len(segments) > 2 or not _SERVICE.fullmatch(segments[0]):
        raise ValueError(
            "the path must be /<service>[/<db>], the service being the Sentinels' master name"
        )
    db = 0
    if len(segments) == 2 and segments[1] != "":
        if not segments[1].isdigit():
            raise ValueError(f"the database {segments[1]!r} is not a number")
        db = int(segments[1])
    return SentinelTarget(tuple(sentinels), segments[0], db, username, password)
