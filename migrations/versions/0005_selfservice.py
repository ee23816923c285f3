"""self-service and languages (issue 4): self-service sessions for deflection counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "selfservice_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answers", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("searches", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_selfservice_sessions_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_sessions")),
    )
    op.create_index(
        "ix_selfservice_sessions_customer",
        "selfservice_sessions",
        ["customer_id", "outcome"],
        unique=False,
    )
    op.create_index(
        "ix_selfservice_sessions_started", "selfservice_sessions", ["started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_selfservice_sessions_started", table_name="selfservice_sessions")
    op.drop_index("ix_selfservice_sessions_customer", table_name="selfservice_sessions")
    op.drop_table("selfservice_sessions")
