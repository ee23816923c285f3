"""Database schema (SQLAlchemy 2 declarative). Alembic migrations mirror this file."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    false,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from routing.store.base import Base, UtcDateTime

# Conversation statuses.
QUEUED = "queued"
ASSIGNED = "assigned"
CLOSED = "closed"
OPEN_STATUSES = (QUEUED, ASSIGNED)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL for guests: people who reached the bot but match no imported record.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    language: Mapped[str | None] = mapped_column(String(16))
    # An agent's Telegram id or name, as the CRM export gives it.
    account_manager: Mapped[str | None] = mapped_column(String(200))
    tier_override: Mapped[str | None] = mapped_column(String(32))
    tier: Mapped[str] = mapped_column(String(32))
    spend_12m: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    is_guest: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Who pinned the tier override, why and when (set through the CLI; NULL from a CSV).
    tier_override_by: Mapped[str | None] = mapped_column(String(100))
    tier_override_reason: Mapped[str | None] = mapped_column(String(500))
    tier_override_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Scoring (routing.scoring.model): the last score, 0..100, and when it was computed.
    score: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    scored_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Hysteresis: consecutive evaluations the model put the customer below their tier.
    below_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    below_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Survey feedback: exponentially weighted average 0..1 (NULL: no answers yet), and the
    # complaint count (detractor answers, escalations) as of complaints_at; it decays.
    satisfaction: Mapped[float | None] = mapped_column()
    satisfaction_answers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    complaints: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    complaints_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Surveys (surveys/): opted out with /stop_surveys; unreachable since Telegram said the
    # chat is blocked or gone (cleared when they write again); IANA zone for quiet hours.
    surveys_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    unreachable_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Announcements (tier broadcasts): opted out with /stop_news, apart from surveys.
    news_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Care (routing.care.triggers): the highest score seen since the last score-drop task,
    # which a human_first customer's fall is measured from; NULL until first seen.
    care_score_ref: Mapped[float | None] = mapped_column()


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Joined by value, not by foreign key: CRM exports may deliver orders before customers.
    # Looked up through ix_orders_scoring, which starts with it (migration 0014).
    external_id: Mapped[str] = mapped_column(String(64))
    # Money in minor units (cents): exact sums on every backend.
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str | None] = mapped_column(String(100))
    ordered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        # Covering index for rescoring: the per-customer aggregates read only this index,
        # in order, instead of one table lookup per order. It also serves every look-up by
        # external_id (and ordered_at), so no narrower index is kept: each would cost every
        # imported order another random insertion (migration 0014).
        Index(
            "ix_orders_scoring", "external_id", "ordered_at", "amount_cents", "category", "status"
        ),
    )


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        # Names are unique regardless of case: `/transfer ann` must mean one agent
        # (routing.queue.agents also refuses clashes that only casefold() sees).
        Index("uq_agents_name_lower", text("lower(name)"), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    max_chats: Mapped[int] = mapped_column(Integer, default=3)
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The chat an agent's un-addressed messages go to (set from /chats).
    focus_conversation_id: Mapped[int | None] = mapped_column(Integer)
    # Which customer the agent last saw a relayed message from: a header is shown on switches.
    last_inbound_conversation_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Queue (routing.queue.claims): tiers this agent serves, comma-separated (NULL: all), and their
    # last action (claim, reply, /online) for the silent-agent rule.
    tiers: Mapped[str | None] = mapped_column(String(200))
    last_active_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # Tier and rank frozen at open: a later re-grade does not reorder a waiting chat.
    tier: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(32))
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Indexed with assigned_at (ix_conversations_agent_assigned, below).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Queue (routing.queue.priority): the virtual arrival the queue is ordered by (smaller first).
    queue_key: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    # Manager-first / sticky window: only this agent may take it until reserved_until.
    reserved_agent_id: Mapped[int | None] = mapped_column(Integer)
    reserved_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Offer mode: the agent the chat is offered to now, until when.
    offered_agent_id: Mapped[int | None] = mapped_column(Integer)
    offer_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Transfers: the note for the next agent, and who wrote it.
    transfer_note: Mapped[str | None] = mapped_column(Text)
    transferred_by: Mapped[int | None] = mapped_column(Integer)
    # Inactivity: the last message each side sent, and when the customer was warned.
    last_customer_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_agent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    inactivity_warned_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the waiting customer was last told: position and estimated-wait bucket.
    told_position: Mapped[int | None] = mapped_column(Integer)
    told_eta_bucket: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        # At most one open conversation per customer, enforced by the database so that two
        # concurrent first messages cannot open two.
        Index(
            "uq_conversations_open_customer",
            "customer_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
        Index("ix_conversations_queue", "status", "queue_key", "queued_at", "id"),
        # The latest closed chats (the mean handling time behind every new chat's ETA):
        # without it, each new chat sorted every closed chat ever (migration 0015); with
        # assigned_at it answers from the index alone (0017).
        Index("ix_conversations_closed", "status", "closed_at", "assigned_at"),
        # An agent's chats, and their latest assignment in one seek (every routing decision
        # reads it for each online agent; without it, every chat ever held was grouped).
        Index("ix_conversations_agent_assigned", "agent_id", "assigned_at"),
        # Each agent's open chats (their load, counted on every claim, relay and page): a
        # seek on both columns, whatever SQLite's statistics say; with only the index above,
        # a counting query chose to walk the agent's whole history (migration 0017).
        Index("ix_conversations_status_agent", "status", "agent_id", "assigned_at"),
    )


def open_chat_of(customer_id: Any) -> ColumnElement[bool]:
    """The customer's open chat (at most one). ``status != 'closed'`` is the condition of the
    partial unique index ``uq_conversations_open_customer``: stated in the query, it lets SQLite
    and PostgreSQL seek that one row instead of walking every chat the customer ever had. It
    is a literal because a bound value proves nothing to a generic plan (PostgreSQL reuses one
    for a prepared statement after five runs)."""
    return and_(
        Conversation.customer_id == customer_id,
        Conversation.status != literal_column(f"'{CLOSED}'"),
        Conversation.status.in_(OPEN_STATUSES),
    )


def open_chats_of(agent_id: Any) -> Any:
    """How many chats the agent ``agent_id`` (a column or a value) holds, as a scalar
    subquery: with the last chat relayed to them it says whether a header is due
    (routing/queue/conversations.py ``header_is_due``), read with a relay's claim
    (routing/delivery/sending.py) or on its own."""
    held = cast(Table, Conversation.__table__).alias("held")  # not a chat read beside it
    return (
        select(func.count())
        .select_from(held)
        .where(held.c.agent_id == agent_id, held.c.status == ASSIGNED)
        .scalar_subquery()
    )


class SlaEvent(Base):
    """A recorded SLA warning or breach; one per conversation, kind and level."""

    __tablename__ = "sla_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # first_response | resolution
    level: Mapped[str] = mapped_column(String(8))  # warn | breach
    tier: Mapped[str] = mapped_column(String(32))
    target_seconds: Mapped[float] = mapped_column()
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("conversation_id", "kind", "level", name="uq_sla_events_once"),
    )


class QueueOffer(Base):
    """Offer mode: one offer of a chat to an agent, and how it ended."""

    __tablename__ = "queue_offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    agent_id: Mapped[int] = mapped_column(Integer)
    offered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # pending | accepted | declined | expired | withdrawn
    outcome: Mapped[str] = mapped_column(String(16), default="pending")
    # The offer message in the agent's chat (edited when the offer ends).
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)


class Message(Base):
    """The transcript: every message of a conversation, in either direction."""

    __tablename__ = "messages"
    __table_args__ = (
        # A person's Telegram message enters a transcript once: a redelivered update (after a
        # crash) finds its row and is not relayed again. This is the relay's guard, taken in
        # the same transaction as its effect (the row and its delivery).
        Index(
            "uq_messages_source",
            "chat_id",
            "message_id",
            unique=True,
            sqlite_where=text("sender IN ('customer', 'agent')"),
            postgresql_where=text("sender IN ('customer', 'agent')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    sender: Mapped[str] = mapped_column(String(16))  # customer | agent | bot
    agent_id: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    file_id: Mapped[str | None] = mapped_column(String(256))
    # The original message in the sender's chat: what copyMessage copies from.
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MessageLink(Base):
    """A bot message in an agent's chat that belongs to a conversation.

    Replying to it addresses that conversation; Claim notifications are edited through it.
    """

    __tablename__ = "message_links"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # notification | relay | header


# A survey whose follow-up question ("what could we do better?") waits for the customer's
# next text (``Survey.comment_state``); surveys/feedback.py and the update lookup read it.
SURVEY_COMMENT_ASKED = "asked"


class Survey(Base):
    """Durable survey outbox: a row per survey, due at ``due_at``."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # csat | nps
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    agent_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(200))
    # NPS campaign run (survey_campaigns.key); NULL for CSAT.
    campaign: Mapped[str | None] = mapped_column(String(64))
    # Past this instant an unsent row is not sent, and a sent one no longer takes answers.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Outbox bookkeeping (surveys.outbox): who claimed the row for sending and when, when
    # the Telegram call was about to be made, and the message Telegram created.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # "asked": the customer's next text (within surveys.comment_minutes) is the comment.
    comment_state: Mapped[str | None] = mapped_column(String(16))
    # kind "complaint": the case this follow-up asks about (routing.complaints.follow_up).
    complaint_id: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"), index=True)

    __table_args__ = (
        UniqueConstraint("conversation_id", "kind", name="uq_surveys_conversation_kind"),
        # One row per customer per campaign run: a crashed run re-creates nothing twice.
        UniqueConstraint("campaign", "customer_id", name="uq_surveys_campaign_customer"),
        Index("ix_surveys_status_due", "status", "due_at"),
        Index("ix_surveys_customer_sent", "customer_id", "sent_at"),
    )


class SurveyCampaign(Base):
    """One run of an NPS campaign: written before its rows, finished when all are written."""

    __tablename__ = "survey_campaigns"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(32))
    fire_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sample_ratio: Mapped[float] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    surveys: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class TierChange(Base):
    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    from_tier: Mapped[str | None] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    spend_12m: Mapped[float] = mapped_column()
    reason: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # initial | upgrade | downgrade | override (routing.scoring.model); NULL for older rows.
    kind: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column()
    # The score by dimension at the change (JSON: {dimension: [value, points, note]}).
    details: Mapped[str | None] = mapped_column(Text)
    # Notice outbox: pending -> sent | failed; "none" when nobody is to be told.
    notice: Mapped[str | None] = mapped_column(String(16))
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_tier_changes_notice", "notice"),)


class ScoringRun(Base):
    """One rescoring of every customer: when, why, and the percentile cutoffs it used."""

    __tablename__ = "scoring_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32))  # cli | import | schedule | ...
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())
    customers: Mapped[int] = mapped_column(Integer)
    changes: Mapped[int] = mapped_column(Integer)
    # JSON list of per-tier minimum scores (percentile mode), else NULL.
    cutoffs: Mapped[str | None] = mapped_column(Text)


# Inbox statuses.
INBOX_PENDING = "pending"  # stored, confirmed to Telegram, not yet handled
INBOX_DONE = "done"  # handled: a redelivery is a no-op
INBOX_QUARANTINED = "quarantined"  # could not be parsed or kept failing: kept, not retried


class InboundUpdate(Base):
    """The inbox: every update Telegram gave us, stored before it is confirmed.

    Polling confirms an offset, and the webhook answers 200, only once the raw update is
    committed here, so a crash never loses an update: pending rows are handled on the next
    start. The row is also the redelivery guard (a ``done`` update id is not handled again).
    """

    __tablename__ = "inbound_updates"
    __table_args__ = (
        Index("ix_inbound_updates_status", "status", "update_id"),
        Index("ix_inbound_updates_chat", "chat_id", "update_id"),
    )

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The chat (else the user) the update belongs to: its updates are handled in order.
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)  # the raw JSON, as Telegram sent it
    status: Mapped[str] = mapped_column(String(16), default=INBOX_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # What handling it did that a second handling must not redo ("claim:12"): written in the
    # transaction that did it, read when a crash lost the done mark (routing/store/inbox.py).
    effect: Mapped[str | None] = mapped_column(String(40))


# Delivery statuses.
DELIVERY_PENDING = "pending"
DELIVERY_SENDING = "sending"
DELIVERY_SENT = "sent"
DELIVERY_FAILED = "failed"
TO_AGENT = "to_agent"
TO_CUSTOMER = "to_customer"


class Delivery(Base):
    """The per-chat delivery queue: a conversation message on its way to the other side.

    Written in the same transaction as the transcript row it carries, so what a customer or
    agent wrote is never lost between Telegram and us; sent in order per destination with
    backoff that honours Telegram's ``retry_after``.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_status", "status", "next_at"),
        # A destination's unsent rows (the head every send claims, the briefing, what waits
        # for the holder): a seek, not a walk through every row the conversation ever sent;
        # status first, where PostgreSQL uses ``status IN (...)`` to seek. And a conversation's
        # hand-over markers (migration 0018).
        Index("ix_deliveries_live", "status", "conversation_id", "direction", "id"),
        Index("ix_deliveries_gate", "conversation_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed with direction and status, and with kind (ix_deliveries_live, _gate, above).
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(16))  # to_agent | to_customer
    # to_agent: the agent it is for; None means whoever holds the conversation when sent.
    agent_id: Mapped[int | None] = mapped_column(Integer)
    # The destination chat, once known (to_customer: at once; to_agent: when sent).
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # copy | text
    from_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    message_ids: Mapped[str | None] = mapped_column(Text)  # JSON list: an album is several
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    link_kind: Mapped[str | None] = mapped_column(String(16))  # relay | header
    # A hand-over's briefing rows: the ``assigned_at`` of the assignment they open. Rows for
    # "whoever holds the conversation" (agent_id None) wait until that briefing is queued, so
    # the agent sees "you took #n" before the backlog (see routing.delivery.enqueue).
    handover_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # pending | sending (claimed; next_at is the lease) | sent | failed
    status: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class SelfServiceSession(Base):
    """One customer's self-service episode (menu, answers, searches) and how it ended.

    outcome: NULL while open; ``resolved`` (the customer said an answer helped),
    ``handoff`` (they went to a person), ``expired`` (quiet for ``session_minutes`` after an
    answer), ``abandoned`` (quiet, no answer shown). Resolved and expired are deflected.
    """

    __tablename__ = "selfservice_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    tier: Mapped[str] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())
    answers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    searches: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    outcome: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the agent who takes over is shown: the nodes opened (JSON list of ids, the last
    # few, "?" for a search) and the last text the customer searched for.
    path: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_selfservice_sessions_customer", "customer_id", "outcome"),
        Index("ix_selfservice_sessions_started", "started_at"),
    )


class Invitation(Base):
    """A one-time link (``t.me/<bot>?start=<token>``) that identifies its holder as a customer.

    Only the token's SHA-256 is stored: a copy of the database does not hand out accounts.
    Redeemed once, by one conditional UPDATE (routing.customers.invitations.redeem)."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    used_by: Mapped[int | None] = mapped_column(BigInteger)  # the redeemer's Telegram id
    created_by: Mapped[str | None] = mapped_column(String(100))


class CodeAttempt(Base):
    """One lookup of a typed customer code (``[identification] allow_code``): the rate
    limits count these rows, per Telegram user and overall, so every instance shares them."""

    __tablename__ = "code_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_code_attempts_user", "telegram_id", "attempted_at"),
        Index("ix_code_attempts_at", "attempted_at"),
    )
