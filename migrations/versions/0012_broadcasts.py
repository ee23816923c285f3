"""tier announcements (issue 16): the broadcasts table; its messages are survey outbox rows
(kind "news", campaign = the broadcast's key)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tiers", sa.String(length=200), nullable=False),
        sa.Column("texts", sa.Text(), nullable=False),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("fire_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("recipients", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("guests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("no_chat", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_broadcasts")),
    )
    op.create_index("ix_broadcasts_digest", "broadcasts", ["digest"])
    op.create_index("ix_broadcasts_created_at", "broadcasts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_broadcasts_created_at", table_name="broadcasts")
    op.drop_index("ix_broadcasts_digest", table_name="broadcasts")
    op.drop_table("broadcasts")
