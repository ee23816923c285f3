"""scoring: score, hysteresis, satisfaction and override columns; tier change log details;
scoring runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("cutoffs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_runs")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier_override_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("tier_override_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("tier_override_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("score", sa.Double(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("below_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("below_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("satisfaction", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "satisfaction_answers", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("complaints", sa.Double(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("complaints_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("details", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("notice", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_tier_changes_notice", ["notice"], unique=False)

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_scoring",
            ["external_id", "ordered_at", "amount_cents", "category", "status"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_scoring")

    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_changes_notice")
        batch_op.drop_column("notified_at")
        batch_op.drop_column("notice")
        batch_op.drop_column("details")
        batch_op.drop_column("score")
        batch_op.drop_column("kind")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("complaints_at")
        batch_op.drop_column("complaints")
        batch_op.drop_column("satisfaction_answers")
        batch_op.drop_column("satisfaction")
        batch_op.drop_column("below_count")
        batch_op.drop_column("below_since")
        batch_op.drop_column("scored_at")
        batch_op.drop_column("score")
        batch_op.drop_column("tier_override_at")
        batch_op.drop_column("tier_override_reason")
        batch_op.drop_column("tier_override_by")

    op.drop_table("scoring_runs")
