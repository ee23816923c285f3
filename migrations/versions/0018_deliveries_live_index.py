"""deliveries: a destination's unsent rows and a conversation's hand-over markers by index
(issue 19)

Every send claims its destination's first unsent row (``routing/delivery/sending.py``
``claim_head``): conversation, direction, status pending or sending, lowest id. With only
``ix_deliveries_conversation_id`` that walked every row the conversation had ever sent: 165
µs per relay once a chat held 750 messages, and more for every message after, on the path
of every relay; the hand-over's marker (``kind = 'gate'``, asked on every relay to an agent)
the same. ``(status, conversation_id, direction, id)`` seeks a destination's unsent rows
(status first: PostgreSQL takes ``status IN (...)`` as an index condition only there; after
it, a filter over the conversation's every row), ``(conversation_id, kind)`` the markers;
the latter starts with ``conversation_id`` and serves every look-up the old index did, which
is dropped.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_live", ["status", "conversation_id", "direction", "id"], unique=False
        )
        batch_op.create_index("ix_deliveries_gate", ["conversation_id", "kind"], unique=False)
        batch_op.drop_index("ix_deliveries_conversation_id")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_conversation_id", ["conversation_id"], unique=False)
        batch_op.drop_index("ix_deliveries_gate")
        batch_op.drop_index("ix_deliveries_live")
