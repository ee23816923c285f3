"""The models of complaints (cases and their timeline) and proactive care (tasks for account
managers): kept apart from routing/store/models.py so each file stays readable."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from routing.store.base import Base, UtcDateTime

# Complaint statuses (routing.complaints.cases).
COMPLAINT_OPEN = "open"


COMPLAINT_ACKNOWLEDGED = "acknowledged"


COMPLAINT_RESOLVED = "resolved"


COMPLAINT_REOPENED = "reopened"


COMPLAINT_UNRESOLVED = (COMPLAINT_OPEN, COMPLAINT_ACKNOWLEDGED, COMPLAINT_REOPENED)


class Complaint(Base):
    """A complaint case (its id is the case number), with a lifecycle of its own.

    Independent of the chat that carries it: closing the chat does not resolve the case.
    The SLA targets of the current cycle (from open, or from the last reopen) are stored as
    due instants; ``weight`` is what the case counts against the score now, before decay.
    """

    __tablename__ = "complaints"
    __table_args__ = (
        Index("ix_complaints_status", "status", "opened_at"),
        Index("ix_complaints_opened_at", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # The chat that carries the case (the latest one after a reopen); NULL if none.
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    tier: Mapped[str] = mapped_column(String(32))  # frozen at open: the SLA targets' tier
    category: Mapped[str] = mapped_column(String(40))
    severity: Mapped[float] = mapped_column()
    # The customer's words; for a photo or voice message a short "[photo] caption" summary
    # (the message itself is in the chat transcript).
    description: Mapped[str] = mapped_column(Text, default="")
    opened_by: Mapped[str] = mapped_column(String(16))  # customer | agent
    # The handling agent (no foreign key, as for messages: agents may be removed).
    agent_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=COMPLAINT_OPEN)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Of the current cycle: cleared when the case is reopened.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reopened_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The last remedy recorded (every one is in complaint_events).
    remedy_kind: Mapped[str | None] = mapped_column(String(40))
    remedy_amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    remedy_note: Mapped[str | None] = mapped_column(Text)
    remedied_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The customer's last follow-up answer: satisfied | unsatisfied (NULL: none yet), when,
    # and their 1-5 rating of the handling.
    outcome: Mapped[str | None] = mapped_column(String(16))
    followed_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    follow_up_score: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    ack_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolve_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ComplaintEvent(Base):
    """A complaint's timeline: opened, acknowledged, remedy, resolved, reopened, follow_up,
    warn, breach, note. A warning or breach is recorded once per target and cycle."""

    __tablename__ = "complaint_events"
    __table_args__ = (
        Index(
            "uq_complaint_events_once",
            "complaint_id",
            "kind",
            "target",
            "cycle",
            unique=True,
            sqlite_where=text("kind IN ('warn', 'breach')"),
            postgresql_where=text("kind IN ('warn', 'breach')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # warn | breach: which target (acknowledge | resolve); NULL for the other kinds.
    target: Mapped[str | None] = mapped_column(String(16))
    cycle: Mapped[int] = mapped_column(Integer, default=0)  # the case's reopen_count then
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    agent_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


# Care task statuses (routing.care.tasks).
CARE_OPEN = "open"


CARE_SNOOZED = "snoozed"


CARE_STARTED = "started"


CARE_DONE = "done"


class CareTask(Base):
    """A follow-up visit or at-risk call an agent owes a customer.

    ``dedupe_key`` names the trigger or cadence period that made it, so that one is never
    turned into two tasks, however many sweeps run at once; and a customer has at most one
    pending task per reason.
    """

    __tablename__ = "care_tasks"
    __table_args__ = (
        Index(
            "uq_care_tasks_pending",
            "customer_id",
            "reason",
            unique=True,
            sqlite_where=text("status != 'done'"),
            postgresql_where=text("status != 'done'"),
        ),
        Index("ix_care_tasks_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # The assignee (no foreign key, as for messages); NULL: the pool's.
    agent_id: Mapped[int | None] = mapped_column(Integer)
    # cadence | score_drop | downgrade_pending | detractor | complaint
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=CARE_OPEN)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    snoozed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    outcome: Mapped[str | None] = mapped_column(Text)  # the agent's note on Done
    # The outbound chat *Start chat* opened.
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    detail: Mapped[str | None] = mapped_column(Text)  # what triggered it, for the card
