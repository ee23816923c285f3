"""the agents' desk in topics mode (issue 17): one forum topic per customer, the queue
view's message, and relayed messages' copies (edits follow them)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "desk_topics",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("creating_until", _WHEN, nullable=True),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_desk_topics_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_desk_topics")),
        sa.UniqueConstraint("chat_id", "thread_id", name="uq_desk_topics_thread"),
    )
    op.create_table(
        "desk_board",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.String(length=4096), nullable=True),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_desk_board")),
    )
    op.create_table(
        "message_copies",
        sa.Column("src_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("src_message_id", sa.BigInteger(), nullable=False),
        sa.Column("dst_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("dst_message_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "src_chat_id", "src_message_id", "dst_chat_id", name=op.f("pk_message_copies")
        ),
    )


def downgrade() -> None:
    op.drop_table("message_copies")
    op.drop_table("desk_board")
    op.drop_table("desk_topics")
