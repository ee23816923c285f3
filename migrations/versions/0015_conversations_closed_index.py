"""conversations: an index on (status, closed_at) for the latest closed chats (issue 19)

Every new chat's wait estimate reads the last ``queue.position.handle_window`` closed chats,
newest first (``routing/queue/estimate.mean_handle_seconds``). Without this index the query
took every closed conversation through ``ix_conversations_queue`` and sorted them all: a cost
that grows with the history, on the path that pages a VIP's agents.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_closed", ["status", "closed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_closed")
