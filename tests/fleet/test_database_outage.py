"""PostgreSQL stopped under two instances behind nginx: readiness keeps them in rotation, the
cache keeps serving reads, writes are refused with 503 and ``Retry-After``, and everything is
back once PostgreSQL is.

An instance whose database is gone is degraded, not dead: ``/readyz`` answers 200 with
``status: degraded`` (``service.web.api.health``), so an orchestrator keeps it in its load
balancer, and nginx, which only learns from failed connections and timeouts
(``proxy_next_upstream error timeout``, ``max_fails``), sees answers, not failures: a 503 is
passed to the client as the app wrote it. Were readiness to fail with the database, every
instance would leave rotation at once and cached reads would go unanswered too.

The instances have a PostgreSQL and a Redis of the test's own (``own_postgres``,
``own_redis``): the suite's database is not touched, and no cache entry of another test's
article can answer for one of these.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers, Proxies
from tests.support.api import account, publish
from tests.support.fleet import clients, start
from tests.web.test_database_outage import OUTAGE_ENV

READS = 12  # cached reads through nginx during the outage
WRITES = 6  # writes through nginx during the outage (creates and edits)


def _answered_by(access_log: str, lines_before: int) -> Counter[str]:
    """``upstream status`` of each request nginx logged after the first ``lines_before``."""
    found: Counter[str] = Counter()
    for line in access_log.splitlines()[lines_before:]:
        upstream = line.split(" upstream=", 1)[1].split(" time=", 1)[0]
        found[upstream] += 1
    return found


async def test_a_database_outage_keeps_the_instances_in_rotation_serving_the_cache(
    own_postgres: EmbeddedPostgres,
    own_redis: EmbeddedRedis,
    live_server: LiveServers,
    nginx: Proxies,
) -> None:
    fleet = start(
        live_server,
        nginx,
        DATABASE_URL=own_postgres.url("outage"),
        REDIS_URL=own_redis.url(),
        **OUTAGE_ENV,
    )
    redis = Redis.from_url(own_redis.url())
    async with clients(fleet, seconds=60) as (a, b, http):
        author = await account(http)
        articles = [await publish(http, author, title=f"Cached {n}") for n in range(2)]
        paths = [f"/api/v1/articles/{article['id']}" for article in articles]
        fresh = {path: (await http.get(path)).json() for path in paths}  # now in the cache
        await asyncio.sleep(1.5)  # nginx's access log is flushed every second
        before = len(fleet.nginx.access_log().splitlines())

        own_postgres.stop()
        ready = [await instance.get("/readyz") for instance in (a, b)]
        # The second article's generation moves on (as an edit elsewhere does): its current
        # entry is missing and the database cannot rebuild it, so the last one is served.
        await redis.incr(keys.article_generation(articles[1]["id"]))
        reads = [await http.get(paths[n % 2]) for n in range(READS)]
        writes = []
        for n in range(WRITES):
            if n % 2:
                writes.append(
                    await http.patch(paths[0], json={"content": "Edited."}, headers=author.api_key)
                )
            else:
                writes.append(
                    await http.post(
                        "/api/v1/articles",
                        json={"title": f"During the outage {n}", "content": "Text."},
                        headers=author.api_key,
                    )
                )
        await asyncio.sleep(1.5)
        during = _answered_by(fleet.nginx.access_log(), before)

        own_postgres.start()
        recovered = None
        for _ in range(120):  # back without a restart: bounded wait for the pools
            recovered = await http.post(
                "/api/v1/articles",
                json={"title": "After the outage", "content": "Text."},
                headers=author.api_key,
            )
            if recovered.status_code == 201:
                break
            await asyncio.sleep(0.5)
        ready_after = []
        for instance in (a, b):
            for _ in range(60):
                answer = await instance.get("/readyz")
                if answer.json()["status"] == "ready":
                    break
                await asyncio.sleep(0.5)
            ready_after.append(answer)
        listed = [await instance.get("/api/v1/articles?per_page=5") for instance in (a, b)]
    await redis.aclose()

    print(
        "\ndatabase outage behind nginx: /readyz of A, B during it: "
        + ", ".join(f"{r.status_code} {r.json()['status']}" for r in ready)
        + "; reads through nginx: "
        + str(dict(Counter(f"{r.status_code} {r.headers.get('X-Cache')}" for r in reads)))
        + "; writes: "
        + str(
            dict(
                Counter(
                    f"{w.status_code} Retry-After={w.headers.get('Retry-After')}" for w in writes
                )
            )
        )
        + f"; answered during it by (upstream status): {dict(during)}; after: write "
        f"{recovered.status_code if recovered else None}, /readyz "
        + ", ".join(f"{r.status_code} {r.json()['status']}" for r in ready_after)
    )

    for answer in ready:  # degraded, still ready: kept in rotation
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "degraded"
        assert answer.json()["checks"]["database"] != "ok"
    for read in reads:
        assert read.status_code == 200, read.text
        assert read.headers["X-Cache"] in ("HIT", "STALE")
        assert read.json() == fresh[str(read.url.path)]
    assert {read.headers["X-Cache"] for read in reads} == {"HIT", "STALE"}
    for write in writes:
        assert write.status_code == 503, write.text  # never a 500
        assert write.headers["Retry-After"].isdigit()
        assert write.json()["error"]["code"] == "service_unavailable"
    # Both instances answered during the outage, and nginx never saw a failure of either.
    upstreams = {f"127.0.0.1:{fleet.a.port}", f"127.0.0.1:{fleet.b.port}"}
    assert {key.split(" status=")[0] for key in during} == upstreams, during
    assert all(", " not in key for key in during), during  # no request passed on
    assert "upstream" not in (fleet.nginx.work / "error.log").read_text()
    assert recovered is not None and recovered.status_code == 201, recovered
    for answer in ready_after:
        assert answer.status_code == 200
        assert answer.json()["status"] == "ready", answer.text
    assert [answer.status_code for answer in listed] == [200, 200]
    for server in (fleet.a, fleet.b):
        assert "Traceback" not in server.log(), server.log()[-3000:]
