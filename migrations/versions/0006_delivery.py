"""every message delivered (issue 12): the inbox of raw updates, the per-chat delivery
queue, and one transcript row per Telegram message

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PERSON = sa.text("sender IN ('customer', 'agent')")


def upgrade() -> None:
    op.create_table(
        "inbound_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_inbound_updates")),
    )
    op.create_index(
        "ix_inbound_updates_status", "inbound_updates", ["status", "update_id"], unique=False
    )
    op.create_index(
        "ix_inbound_updates_chat", "inbound_updates", ["chat_id", "update_id"], unique=False
    )
    # The inbox is the redelivery guard now; the handled-ids log it replaces held only ids.
    op.drop_table("processed_updates")
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("message_ids", sa.Text(), nullable=True),
        sa.Column("media_group_id", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("link_kind", sa.String(length=16), nullable=True),
        sa.Column("handover_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_deliveries_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "next_at"], unique=False)
    op.create_index(
        op.f("ix_deliveries_conversation_id"), "deliveries", ["conversation_id"], unique=False
    )
    # Rows stored twice by a redelivered update before this guard existed keep the first.
    op.execute(
        "DELETE FROM messages WHERE sender IN ('customer', 'agent') AND id NOT IN "
        "(SELECT MIN(id) FROM messages WHERE sender IN ('customer', 'agent') "
        "GROUP BY chat_id, message_id)"
    )
    op.create_index(
        "uq_messages_source",
        "messages",
        ["chat_id", "message_id"],
        unique=True,
        sqlite_where=_PERSON,
        postgresql_where=_PERSON,
    )


def downgrade() -> None:
    op.drop_index("uq_messages_source", table_name="messages")
    op.drop_index(op.f("ix_deliveries_conversation_id"), table_name="deliveries")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_table("deliveries")
    op.create_table(
        "processed_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_processed_updates")),
    )
    op.drop_index("ix_inbound_updates_chat", table_name="inbound_updates")
    op.drop_index("ix_inbound_updates_status", table_name="inbound_updates")
    op.drop_table("inbound_updates")
