"""inbound_updates.effect: what a handled update did that handling it again must not redo

A crash between a handler's commit and the inbox's done mark makes the next start handle the
update again. Most effects guard themselves (one transcript row per Telegram message), but an
agent's /next claims whichever chat is next: handled twice it claimed a second chat. The
claim (and /close, /transfer) now records itself here in its own transaction, and a second
handling resumes it instead (bot/handlers/agent.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("effect", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.drop_column("effect")
