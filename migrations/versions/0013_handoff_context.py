"""hand-over context (issue 17): a self-service session keeps the path the customer took and
the last text they searched for, so that the agent who takes over sees what led there

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-13 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("selfservice_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("question", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("selfservice_sessions", schema=None) as batch_op:
        batch_op.drop_column("question")
        batch_op.drop_column("path")
