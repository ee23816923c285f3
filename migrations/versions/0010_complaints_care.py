"""complaints handled to a remedy, and care that reaches out (issue 16): complaint cases and
their timeline, care tasks, the announcement opt-out, the care score reference, and the
survey row's link to the case it follows up

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.Double(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("opened_by", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", _WHEN, nullable=False),
        sa.Column("acknowledged_at", _WHEN, nullable=True),
        sa.Column("resolved_at", _WHEN, nullable=True),
        sa.Column("reopened_at", _WHEN, nullable=True),
        sa.Column("reopen_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("remedy_kind", sa.String(length=40), nullable=True),
        sa.Column("remedy_amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("remedy_note", sa.Text(), nullable=True),
        sa.Column("remedied_at", _WHEN, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("followed_up_at", _WHEN, nullable=True),
        sa.Column("follow_up_score", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("ack_due_at", _WHEN, nullable=True),
        sa.Column("resolve_due_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_complaints_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_complaints_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
    )
    op.create_index(op.f("ix_complaints_customer_id"), "complaints", ["customer_id"])
    # An agent's message acknowledges the cases its chat carries: looked up per message.
    op.create_index(op.f("ix_complaints_conversation_id"), "complaints", ["conversation_id"])
    op.create_index("ix_complaints_status", "complaints", ["status", "opened_at"])
    op.create_index("ix_complaints_opened_at", "complaints", ["opened_at"])

    op.create_table(
        "complaint_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=True),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_events_complaint_id_complaints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_events")),
    )
    op.create_index(op.f("ix_complaint_events_complaint_id"), "complaint_events", ["complaint_id"])
    # A sweep's warning or breach fires once per target and cycle, across instances.
    op.create_index(
        "uq_complaint_events_once",
        "complaint_events",
        ["complaint_id", "kind", "target", "cycle"],
        unique=True,
        sqlite_where=sa.text("kind IN ('warn', 'breach')"),
        postgresql_where=sa.text("kind IN ('warn', 'breach')"),
    )

    op.create_table(
        "care_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", _WHEN, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("snoozed_until", _WHEN, nullable=True),
        sa.Column("reminded_at", _WHEN, nullable=True),
        sa.Column("started_at", _WHEN, nullable=True),
        sa.Column("done_at", _WHEN, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_care_tasks_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_care_tasks_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_tasks")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_care_tasks_dedupe_key")),
    )
    op.create_index(op.f("ix_care_tasks_customer_id"), "care_tasks", ["customer_id"])
    op.create_index("ix_care_tasks_status_due", "care_tasks", ["status", "due_at"])
    # At most one pending task per customer and reason, whoever creates it.
    op.create_index(
        "uq_care_tasks_pending",
        "care_tasks",
        ["customer_id", "reason"],
        unique=True,
        sqlite_where=sa.text("status != 'done'"),
        postgresql_where=sa.text("status != 'done'"),
    )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("news_opt_out", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("care_score_ref", sa.Double(), nullable=True))
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("complaint_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_surveys_complaint_id_complaints"),
            "complaints",
            ["complaint_id"],
            ["id"],
        )
        batch_op.create_index(batch_op.f("ix_surveys_complaint_id"), ["complaint_id"])


def downgrade() -> None:
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_surveys_complaint_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_surveys_complaint_id_complaints"), type_="foreignkey"
        )
        batch_op.drop_column("complaint_id")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("care_score_ref")
        batch_op.drop_column("news_opt_out")
    op.drop_index("uq_care_tasks_pending", table_name="care_tasks")
    op.drop_index("ix_care_tasks_status_due", table_name="care_tasks")
    op.drop_index(op.f("ix_care_tasks_customer_id"), table_name="care_tasks")
    op.drop_table("care_tasks")
    op.drop_index("uq_complaint_events_once", table_name="complaint_events")
    op.drop_index(op.f("ix_complaint_events_complaint_id"), table_name="complaint_events")
    op.drop_table("complaint_events")
    op.drop_index("ix_complaints_opened_at", table_name="complaints")
    op.drop_index("ix_complaints_status", table_name="complaints")
    op.drop_index(op.f("ix_complaints_conversation_id"), table_name="complaints")
    op.drop_index(op.f("ix_complaints_customer_id"), table_name="complaints")
    op.drop_table("complaints")
