"""Database tables (SQLAlchemy 2 declarative models); ``metadata`` is what Alembic compares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.core.types import ArticleStatus

# Stable constraint names, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ARTICLE_STATUSES = tuple(ArticleStatus)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # Stored normalised (lower-cased domain and local part), unique.
    email: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    # The public part of the key (``nd_`` + 10 characters), indexed for lookup.
    prefix: Mapped[str] = mapped_column(Text, unique=True)
    # SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'processed', 'failed')", name="status_known"),
        # Newest first, and its keyset cursor (published_at, id).
        Index("ix_articles_newest", text("published_at DESC"), text("id DESC")),
        Index("ix_articles_author_newest", "author_id", text("published_at DESC"), text("id DESC")),
        Index("ix_articles_popular", text("views DESC"), text("id DESC")),
        Index("ix_articles_tags", "tags", postgresql_using="gin"),
        Index("ix_articles_title_search", "title_search", postgresql_using="gin"),
        # The processing sweeper's query: pending articles by age (a small partial index).
        Index(
            "ix_articles_pending",
            "updated_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    views: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    published_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # Why processing failed, when ``status`` is ``failed``: for the operators; the public
    # article says only that it failed (``service.domain.schemas.PROCESSING_FAILED``).
    processing_error: Mapped[str | None] = mapped_column(Text)
    # Words of the title for case-insensitive search ('simple': no stemming, no stop words).
    title_search: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple', title)", persisted=True)
    )


class ViewBatch(Base):
    """A chunk of view counts already added to ``articles.views``
    (``service.domain.view_counts``): its id is committed with the increments, so a replayed
    chunk is recognised and skipped."""

    __tablename__ = "view_batches"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
