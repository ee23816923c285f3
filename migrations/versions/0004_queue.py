"""queue priority, SLAs, capacity, transfers (issue 5)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONV_COLUMNS = (
    ("reserved_agent_id", sa.Integer()),
    ("reserved_until", sa.DateTime(timezone=True)),
    ("offered_agent_id", sa.Integer()),
    ("offer_expires_at", sa.DateTime(timezone=True)),
    ("transfer_note", sa.Text()),
    ("transferred_by", sa.Integer()),
    ("last_customer_at", sa.DateTime(timezone=True)),
    ("last_agent_at", sa.DateTime(timezone=True)),
    ("inactivity_warned_at", sa.DateTime(timezone=True)),
    ("told_position", sa.Integer()),
    ("told_eta_bucket", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tiers", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        # Existing queued chats get 0 (arrival then decides); the bot re-keys every queued
        # chat from the policy at start-up (routing.queue.claims.rekey).
        batch_op.add_column(
            sa.Column("queue_key", sa.Double(), server_default=sa.text("0"), nullable=False)
        )
        for name, type_ in _CONV_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.drop_index("ix_conversations_queue")
        batch_op.create_index(
            "ix_conversations_queue", ["status", "queue_key", "queued_at", "id"], unique=False
        )
    op.create_table(
        "sla_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("target_seconds", sa.Double(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_sla_events_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_events")),
        sa.UniqueConstraint("conversation_id", "kind", "level", name="uq_sla_events_once"),
    )
    op.create_index(
        op.f("ix_sla_events_conversation_id"), "sla_events", ["conversation_id"], unique=False
    )
    op.create_table(
        "queue_offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_queue_offers_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_offers")),
    )
    op.create_index(
        op.f("ix_queue_offers_conversation_id"), "queue_offers", ["conversation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_queue_offers_conversation_id"), table_name="queue_offers")
    op.drop_table("queue_offers")
    op.drop_index(op.f("ix_sla_events_conversation_id"), table_name="sla_events")
    op.drop_table("sla_events")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_queue")
        batch_op.create_index(
            "ix_conversations_queue", ["status", "priority", "queued_at", "id"], unique=False
        )
        for name, _ in reversed(_CONV_COLUMNS):
            batch_op.drop_column(name)
        batch_op.drop_column("queue_key")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("last_active_at")
        batch_op.drop_column("tiers")
