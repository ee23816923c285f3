"""orders: drop the two indexes the covering scoring index already serves (issue 19)

``ix_orders_scoring`` (external_id, ordered_at, amount_cents, category, status) starts with
the columns of ``ix_orders_external_id`` (external_id) and ``ix_orders_external_id_ordered_at``
(external_id, ordered_at), so every look-up those served (a customer's orders, newest first;
"has any order") is served by it, as the query plans show. Each index costs every imported
order an insertion at a random place: with all three, SQLite spent 41 s of CPU writing
1,000,000 orders; with the covering index alone, 14 s (bench/RESULTS.md, issue 19).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_external_id_ordered_at")
        batch_op.drop_index("ix_orders_external_id")


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_external_id", ["external_id"], unique=False)
        batch_op.create_index(
            "ix_orders_external_id_ordered_at", ["external_id", "ordered_at"], unique=False
        )
