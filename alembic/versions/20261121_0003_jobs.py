"""Background jobs: applied view-count batches, processing errors, the pending-articles index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("articles", sa.Column("processing_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_articles_pending",
        "articles",
        ["updated_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "view_batches",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_view_batches")),
    )
    op.create_index(op.f("ix_view_batches_applied_at"), "view_batches", ["applied_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_view_batches_applied_at"), table_name="view_batches")
    op.drop_table("view_batches")
    op.drop_index("ix_articles_pending", table_name="articles")
    op.drop_column("articles", "processing_error")
