"""identity that a stranger cannot produce (issue "Trust what people type"): one-time
invitation links (only the token's SHA-256 is stored) and the customer-code attempts the
rate limits count

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_invitations_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(
        op.f("ix_invitations_customer_id"), "invitations", ["customer_id"], unique=False
    )
    op.create_table(
        "code_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_attempts")),
    )
    op.create_index(
        "ix_code_attempts_user", "code_attempts", ["telegram_id", "attempted_at"], unique=False
    )
    op.create_index("ix_code_attempts_at", "code_attempts", ["attempted_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_code_attempts_at", table_name="code_attempts")
    op.drop_index("ix_code_attempts_user", table_name="code_attempts")
    op.drop_table("code_attempts")
    op.drop_index(op.f("ix_invitations_customer_id"), table_name="invitations")
    op.drop_table("invitations")
