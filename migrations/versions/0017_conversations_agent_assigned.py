"""conversations: (agent_id, assigned_at) in place of the agent_id index (issue 19)

Every routing decision (a chat queued, paged, claimed or offered) reads each online agent's
latest assignment, the tie-break that gives the longest-idle agent the next chat. That was
``max(assigned_at)`` grouped over every conversation any agent ever held: 320 ms on SQLite
with 500,000 chats in the history, on the path that pages a VIP's agents. With this index it
is one seek per online agent. The index starts with ``agent_id``, so it serves every look-up
the old single-column index did, which is dropped.

``(status, agent_id, assigned_at)`` is added for the agents' loads and open chats (their
assigned chats, counted on every claim, relay to an agent and page, and listed oldest first
for every agent message): with both columns in one index it is a seek whatever SQLite's
statistics say. Without it, once ``ANALYZE`` (or ``PRAGMA optimize``) had run, SQLite judged
``status`` unselective and walked an agent's whole history to count their open chats.

``ix_conversations_closed`` (0015) gains ``assigned_at``: the ETA behind every new chat reads
the last 50 closed chats' claim and close times, now from the index alone.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 21:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_agent_assigned", ["agent_id", "assigned_at"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_status_agent", ["status", "agent_id", "assigned_at"], unique=False
        )
        batch_op.drop_index("ix_conversations_agent_id")
        # The ETA's latest closed chats from the index alone (their claim times were 50
        # lookups into the table for every new chat: 63 µs against 20).
        batch_op.drop_index("ix_conversations_closed")
        batch_op.create_index(
            "ix_conversations_closed", ["status", "closed_at", "assigned_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_agent_id", ["agent_id"], unique=False)
        batch_op.drop_index("ix_conversations_closed")
        batch_op.create_index("ix_conversations_closed", ["status", "closed_at"], unique=False)
        batch_op.drop_index("ix_conversations_status_agent")
        batch_op.drop_index("ix_conversations_agent_assigned")
