"""Bulk fake data: ``seed_articles`` loads realistic articles fast with PostgreSQL's COPY.

Used by ``python -m service seed``, the EXPLAIN tests and the pagination benchmark. Articles
are made from word lists in this module (no downloads), deterministically for a given ``seed``
(the timestamps are relative to now). Their authors are ``authors`` seed users,
``seed-author-<n>@example.com`` with the password ``seed-password``, created when missing and
reused otherwise.

Rows stream to the server in one binary COPY per ``batch`` (each its own transaction), so
generating the next rows in Python overlaps with PostgreSQL storing and indexing the last
ones. Timestamps rise with the insertion order, like a real newsroom's: the heap ends up
ordered by ``published_at``, as it would be after years of publishing.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from service.core.settings import normalise_database_url
from service.domain.passwords import hash_password

SEED_PASSWORD = "seed-password"
SEED_SPAN = timedelta(days=3 * 365)
COLUMNS = (
    "author_id",
    "title",
    "content",
    "summary",
    "keywords",
    "tags",
    "status",
    "views",
    "published_at",
    "updated_at",
    "version",
)


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


TAGS = (
    "politics",
    "business",
    "technology",
    "science",
    "health",
    "sports",
    "culture",
    "world",
    "climate",
    "education",
    "travel",
    "opinion",
)

FIRST_NAMES = _words(
    "Ada Alex Amara Ana Ben Carla Chen Chloe Dana David Elena Emma Farid Grace Hana Hugo Ines "
    "Isaac Jonas Julia Karim Kofi Lea Leo Lina Luca Maya Mei Nadia Noah Nora Omar Priya Rafael "
    "Rosa Sam Sara Sofia Tariq Theo Uma Victor Wen Yara Yusuf Zoe"
)
LAST_NAMES = _words(
    "Abbott Alvarez Bauer Brennan Castro Costa Dubois Eriksen Fischer Garcia Haddad Hansen "
    "Ibrahim Ito Jensen Kapoor Keller Kowalski Larsen Lopez Martin Meyer Moreau Nakamura Novak "
    "Okafor Olsen Park Petrov Quinn Rossi Santos Schmidt Silva Singh Suzuki Tanaka Varga Wagner "
    "Walsh Weber Yilmaz Zhang"
)

PLACES = _words(
    "Berlin Lisbon Nairobi Osaka Toronto Lagos Oslo Madrid Seoul Lima Dublin Vienna Cairo "
    "Mumbai Chicago Sydney Warsaw Athens Bogota Jakarta Denver Glasgow Marseille Porto Leeds "
    "Brussels Manila Hanoi Quito Tallinn"
)
GROUPS = _words(
    "regulators lawmakers researchers farmers teachers nurses startups carmakers investors "
    "doctors engineers unions retailers airlines scientists students voters banks councils "
    "developers economists architects fishermen insurers landlords miners pilots publishers "
    "ministers museums"
)
TOPICS = _words(
    (
        "battery recycling, rail networks, heat pumps, rent controls, water supply, "
        "flood defences, vaccine trials, chip factories, wind farms, school meals, bus lanes, "
        "data privacy, solar panels, grain exports, hospital waiting lists, cycle paths, "
        "carbon prices, gene therapy, drought plans, coral reefs, housing targets, minimum wage, "
        "broadband rollout, pension reform, night trains, air quality, coastal erosion, "
        "tax credits, open source tools, electric ferries, quantum sensors, food prices, "
        "city budgets, port strikes, river cleanup, satellite launches, youth football, "
        "library funding"
    ),
    ", ",
)
ADJECTIVES = _words(
    "new bold quiet rapid costly cautious surprising record fragile ambitious delayed "
    "sweeping modest controversial historic unexpected greener cheaper faster local national "
    "global rural urban private public digital"
)
VERBS = _words(
    "approve reject debate expand delay rethink fund test rebuild launch question defend "
    "overhaul pause back challenge embrace study scale cut double track"
)
TITLE_FORMS = (
    "{place} {group} {verb} {adj} {topic}",
    "Why {group} in {place} want {adj} {topic}",
    "{adj_cap} {topic} plan splits {group}",
    "How {place} learned to {verb} {topic}",
    "{group_cap} {verb} {topic} as costs climb",
    "Inside the {adj} push for {topic} in {place}",
    "{place} bets on {topic} after {adj} year",
    "What {adj} {topic} could mean for {group}",
    "{group_cap} and {group2} clash over {topic}",
    "{topic_cap}: {place} {group} {verb} {adj} rules",
)
SENTENCE_FORMS = (
    "{group_cap} in {place} said the {adj} plan for {topic} would {verb} local services.",
    "Officials expect {topic} to {verb} spending over the next {n} years.",
    "The proposal drew {adj} responses from {group} and {group2} alike.",
    "A report published this week found that {n} percent of {group} support {topic}.",
    "Critics argue the {adj} timetable leaves {group} with little room to adapt.",
    "Supporters point to {place}, where {topic} cut costs by {n} percent.",
    "{group_cap} plan to {verb} the scheme before the budget vote in {month}.",
    "The pilot in {place} ran for {n} months and reached {n2} households.",
    "Several {group} described the change as {adj} but overdue.",
    "Funding for {topic} has risen each year since {year}, according to public records.",
    "Talks between {group} and {group2} are expected to resume in {month}.",
    "Analysts in {place} warned that {adj} delays could {verb} the whole programme.",
    "The ministry said it would publish detailed figures on {topic} by {month}.",
    "Residents of {place} will be asked to comment before any final decision.",
    "Experts say the debate over {topic} is far from settled.",
)
MONTHS = _words(
    "January February March April May June July August September October November December"
)

# How many tags an article has (0 to 3), and how likely each count is.
_TAG_COUNTS = (0, 1, 2, 3)
_TAG_WEIGHTS = (10, 40, 35, 15)
_SENTENCE_POOL = 4096


def plain_url(url: str) -> str:
    """asyncpg's own URL form of any accepted PostgreSQL URL spelling."""
    return normalise_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def _fill(form: str, rng: random.Random) -> str:
    group, group2 = rng.sample(GROUPS, 2)
    topic = rng.choice(TOPICS)
    adj = rng.choice(ADJECTIVES)
    return form.format(
        place=rng.choice(PLACES),
        group=group,
        group2=group2,
        group_cap=group.capitalize(),
        topic=topic,
        topic_cap=topic.capitalize(),
        adj=adj,
        adj_cap=adj.capitalize(),
        verb=rng.choice(VERBS),
        month=rng.choice(MONTHS),
        year=rng.randint(2005, 2022),
        n=rng.randint(2, 60),
        n2=rng.randint(100, 90_000),
    )


def _author_name(n: int) -> str:
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n * 7 + n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return f"{first} {last}"


def seed_email(n: int) -> str:
    return f"seed-author-{n}@example.com"


async def ensure_authors(conn: asyncpg.Connection, authors: int) -> list[int]:
    """Ids of seed authors 1..``authors``, inserting the missing ones (one argon2 hash)."""
    emails = [seed_email(n) for n in range(1, authors + 1)]
    existing = {
        row["email"]: row["id"]
        for row in await conn.fetch("SELECT id, email FROM users WHERE email = ANY($1)", emails)
    }
    missing = [n for n in range(1, authors + 1) if seed_email(n) not in existing]
    if missing:
        password_hash = await hash_password(SEED_PASSWORD)
        rows = await conn.fetch(
            "INSERT INTO users (email, name, password_hash) "
            "SELECT e, n, $3 FROM unnest($1::text[], $2::text[]) AS t(e, n) "
            "ON CONFLICT (email) DO NOTHING RETURNING id, email",
            [seed_email(n) for n in missing],
            [_author_name(n) for n in missing],
            password_hash,
        )
        existing.update({row["email"]: row["id"] for row in rows})
        if len(existing) < authors:  # another seeder inserted some meanwhile
            rows = await conn.fetch("SELECT id, email FROM users WHERE email = ANY($1)", emails)
            existing = {row["email"]: row["id"] for row in rows}
    return [existing[email] for email in emails]


class ArticleFactory:
    """Rows for ``COLUMNS``; ``rows(start, stop)`` are articles ``start..stop`` of ``total``."""

    def __init__(self, author_ids: Sequence[int], *, total: int, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.author_ids = list(author_ids)
        # A few prolific authors, many occasional ones (Zipf-like weights).
        weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(self.author_ids))]
        rng.shuffle(weights)
        self.cum_weights = list(itertools.accumulate(weights))
        self.sentences = [_fill(rng.choice(SENTENCE_FORMS), rng) for _ in range(_SENTENCE_POOL)]
        self.total = max(total, 1)
        self.start = now - SEED_SPAN
        self.step_us = SEED_SPAN / timedelta(microseconds=1) / self.total

    def rows(self, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        random_ = rng.random
        choice = rng.choice
        choices = rng.choices
        randint = rng.randint
        sample = rng.sample
        sentences = self.sentences
        authors, cum_weights = self.author_ids, self.cum_weights
        base, step = self.start, self.step_us
        for i in range(start, stop):
            title = _fill(choice(TITLE_FORMS), rng)
            title = title[0].upper() + title[1:]
            paragraphs = [" ".join(choices(sentences, k=randint(3, 5))) for _ in range(3)]
            roll = random_()
            if roll < 0.94:
                status = "processed"
                summary = paragraphs[0].split(". ", 1)[0].rstrip(".") + "."
                words = list(dict.fromkeys(w.strip(":").lower() for w in title.split()))
                words = [w for w in words if len(w) > 3]
                keywords = sample(words, min(len(words), randint(3, 5)))
            else:
                status = "pending" if roll < 0.99 else "failed"
                summary, keywords = None, []
            tags = sample(TAGS, choices(_TAG_COUNTS, _TAG_WEIGHTS)[0])
            published = base + timedelta(microseconds=int((i + random_()) * step))
            yield (
                choices(authors, cum_weights=cum_weights)[0],
                title,
                "\n\n".join(paragraphs),
                summary,
                keywords,
                tags,
                status,
                int(100_000 * random_() ** 3),  # most articles few views, some very many
                published,
                published,
                1,
            )


async def seed_articles(
    conn_url: str,
    *,
    count: int,
    authors: int = 100,
    batch: int = 50_000,
    progress: bool = True,
    seed: int = 1,
    now: datetime | None = None,
) -> int:
    """Insert ``count`` fake articles by ``authors`` seed users; return how many were inserted.

    Ends with ``VACUUM (ANALYZE)`` on users and articles, so the planner has statistics and
    the visibility map is set, as autovacuum would leave a table of this size.
    """
    if count < 0 or authors < 1 or batch < 1:
        raise ValueError("count must be >= 0, authors and batch >= 1")
    conn = await asyncpg.connect(plain_url(conn_url))
    inserted = 0
    try:
        author_ids = await ensure_authors(conn, authors)
        factory = ArticleFactory(author_ids, total=count, seed=seed, now=now or datetime.now(UTC))
        with tqdm(
            total=count, unit=" articles", unit_scale=True, disable=not progress, smoothing=0.1
        ) as bar:
            for start in range(0, count, batch):
                stop = min(start + batch, count)
                await conn.copy_records_to_table(  # one statement: all or nothing
                    "articles", records=factory.rows(start, stop), columns=COLUMNS
                )
                inserted += stop - start
                bar.update(stop - start)
        await conn.execute("VACUUM (ANALYZE) users")
        await conn.execute("VACUUM (ANALYZE) articles")
    finally:
        await conn.close()
    return inserted
