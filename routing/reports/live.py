"""Live figures: what the queue, the agents and today's service look like right now.

The wallboard (``/dashboard``) and the scrape-time gauges of ``/metrics`` read these; the
period reports of ``contactbot report`` live beside them. Every function is a few indexed
reads of one session, returning plain dataclasses (no ORM objects escape): a page that
refreshes every few seconds must cost the database little.

"Today" is the caller's: :func:`day_start` gives midnight UTC of the instant it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue.claims import queue_order
from routing.queue.eligibility import parse_tiers
from routing.scoring.model import CSAT
from routing.store.care_models import COMPLAINT_RESOLVED, Complaint, ComplaintEvent
from routing.store.models import (
    ASSIGNED,
    QUEUED,
    Agent,
    Conversation,
    Customer,
    SlaEvent,
    Survey,
)

__all__ = [
    "AgentLoad",
    "Board",
    "Breach",
    "OpenComplaint",
    "QueueSnapshot",
    "TierDay",
    "TierQueue",
    "WaitingChat",
    "agents_online",
    "board",
    "breaches_since",
    "day_by_tier",
    "day_start",
    "open_complaints",
    "queue_snapshot",
    "waiting_chats",
]

SLA_OK, SLA_WARN, SLA_BREACH = "ok", "warn", "breach"


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _who(name: str | None, external_id: str | None, customer_id: int) -> str:
    return name or external_id or f"guest {customer_id}"


# --- the queue --------------------------------------------------------------------------


@dataclass(frozen=True)
class TierQueue:
    tier: str
    waiting: int
    oldest_queued_at: datetime | None

    def oldest_wait(self, now: datetime) -> float:
        """Seconds the longest-waiting chat of the tier has waited (0: none waits)."""
        if self.oldest_queued_at is None:
            return 0.0
        return max((now - self.oldest_queued_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class QueueSnapshot:
    """Waiting chats by tier (every policy tier present, zeros included), agents online and
    chats held: the scrape-time gauges of ``/metrics``."""

    tiers: list[TierQueue]
    agents_online: int
    chats_assigned: int


async def queue_snapshot(session: AsyncSession, policy: Policy) -> QueueSnapshot:
    """Three aggregate reads: the queue by tier (its index leads with ``status``), agents
    online, chats held."""
    rows = (
        await session.execute(
            select(Conversation.tier, func.count(), func.min(Conversation.queued_at))
            .where(Conversation.status == QUEUED)
            .group_by(Conversation.tier)
        )
    ).all()
    found = {str(t): (int(n), oldest) for t, n, oldest in rows}
    names = list(policy.tier_names) + sorted(set(found) - set(policy.tier_names))
    tiers = [TierQueue(t, *found.get(t, (0, None))) for t in names]
    online = await session.scalar(
        select(func.count()).select_from(Agent).where(Agent.online.is_(True), Agent.active)
    )
    held = await session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.status == ASSIGNED)
    )
    return QueueSnapshot(tiers, int(online or 0), int(held or 0))


@dataclass(frozen=True)
class WaitingChat:
    """A queued chat as the wallboard shows it, with its first-response SLA clock."""

    conversation_id: int
    tier: str
    customer: str
    queued_at: datetime
    waited_s: float
    target_s: float | None  # the tier's first-response target (None: no target)
    warn_s: float | None  # when the warning is reached
    sla: str  # ok | warn | breach
    reserved_for: str | None  # the agent a manager-first / sticky window holds it for


def sla_state(waited_s: float, target_s: float | None, warn_fraction: float) -> str:
    if target_s is None:
        return SLA_OK
    if waited_s >= target_s:
        return SLA_BREACH
    return SLA_WARN if waited_s >= warn_fraction * target_s else SLA_OK


async def waiting_chats(
    session: AsyncSession, policy: Policy, now: datetime, limit: int = 100
) -> list[WaitingChat]:
    """The queued chats in queue order (the order claims take them), at most ``limit``."""
    reserved = Agent.__table__.alias("reserved_agent")
    rows = (
        await session.execute(
            select(
                Conversation.id,
                Conversation.tier,
                Conversation.queued_at,
                Conversation.reserved_until,
                Customer.id,
                Customer.name,
                Customer.external_id,
                reserved.c.name,
            )
            .join(Customer, Customer.id == Conversation.customer_id)
            .outerjoin(reserved, reserved.c.id == Conversation.reserved_agent_id)
            .where(Conversation.status == QUEUED)
            .order_by(*queue_order())
            .limit(limit)
        )
    ).all()
    sla = policy.queue.sla
    out = []
    for conv_id, tier, queued_at, until, cust_id, name, ext, reserved_name in rows:
        waited = max((now - queued_at).total_seconds(), 0.0)
        target = sla.first_response(tier)
        held = reserved_name if until is not None and until > now else None
        out.append(
            WaitingChat(
                conversation_id=int(conv_id),
                tier=str(tier),
                customer=_who(name, ext, int(cust_id)),
                queued_at=queued_at,
                waited_s=waited,
                target_s=target,
                warn_s=target * sla.warn_fraction if target is not None else None,
                sla=sla_state(waited, target, sla.warn_fraction),
                reserved_for=held,
            )
        )
    return out


# --- agents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentLoad:
    name: str
    role: str
    load: int  # chats held now
    max_chats: int
    tiers: list[str] | None  # None: every tier
    last_active_at: datetime | None


async def agents_online(session: AsyncSession) -> list[AgentLoad]:
    """Online agents with the chats each holds, busiest first."""
    held = (
        select(Conversation.agent_id, func.count().label("n"))
        .where(Conversation.status == ASSIGNED)
        .group_by(Conversation.agent_id)
        .subquery()
    )
    load = func.coalesce(held.c.n, 0)
    rows = (
        await session.execute(
            select(Agent, load)
            .outerjoin(held, held.c.agent_id == Agent.id)
            .where(Agent.online.is_(True), Agent.active)
            .order_by(load.desc(), Agent.name)
        )
    ).all()
    out = []
    for agent, n in rows:
        tiers = parse_tiers(agent.tiers)
        out.append(
            AgentLoad(
                agent.name,
                agent.role,
                int(n),
                agent.max_chats,
                sorted(tiers) if tiers is not None else None,
                agent.last_active_at,
            )
        )
    return out


# --- today by tier ----------------------------------------------------------------------


@dataclass
class TierDay:
    """One tier since ``since``: chats queued, their first-response SLA (met, missed, still
    open to either), CSAT answers, breaches recorded."""

    tier: str
    chats: int = 0
    met: int = 0
    missed: int = 0
    pending: int = 0
    csat_answers: int = 0
    csat_sum: int = 0
    csat_sent: int = 0
    breaches: int = 0  # SLA breach events of chats (first response and resolution)
    complaint_breaches: int = 0

    @property
    def sla_met_share(self) -> float | None:
        """Met / decided (a chat still within its target is neither); None: none decided."""
        decided = self.met + self.missed
        return self.met / decided if decided else None

    @property
    def csat_average(self) -> float | None:
        return self.csat_sum / self.csat_answers if self.csat_answers else None

    @property
    def csat_response_rate(self) -> float | None:
        return self.csat_answers / self.csat_sent if self.csat_sent else None


def first_response_verdict(
    queued_at: datetime, first_response_at: datetime | None, target_s: float | None, now: datetime
) -> str:
    """met | missed | pending for one chat (no target: met once answered)."""
    if first_response_at is not None:
        took = (first_response_at - queued_at).total_seconds()
        return "met" if target_s is None or took <= target_s else "missed"
    if target_s is not None and (now - queued_at).total_seconds() > target_s:
        return "missed"
    return "pending"


async def day_by_tier(
    session: AsyncSession, policy: Policy, since: datetime, now: datetime
) -> list[TierDay]:
    """Every policy tier (and any other tier found), in policy order."""
    days: dict[str, TierDay] = {t: TierDay(t) for t in policy.tier_names}

    def of(tier: str) -> TierDay:
        return days.setdefault(tier, TierDay(tier))

    # The chats queued since `since`: four columns each, a day's worth.
    chats = await session.execute(
        select(Conversation.tier, Conversation.queued_at, Conversation.first_response_at).where(
            Conversation.queued_at >= since
        )
    )
    sla = policy.queue.sla
    for tier, queued_at, first in chats.all():
        d = of(str(tier))
        d.chats += 1
        verdict = first_response_verdict(queued_at, first, sla.first_response(tier), now)
        if verdict == "met":
            d.met += 1
        elif verdict == "missed":
            d.missed += 1
        else:
            d.pending += 1
    # CSAT: the chat's tier (frozen at open), else the customer's.
    tier_of = func.coalesce(Conversation.tier, Customer.tier)

    def csat(*columns: Any) -> Select[Any]:
        return (
            select(*columns)
            .select_from(Survey)
            .join(Customer, Customer.id == Survey.customer_id)
            .outerjoin(Conversation, Conversation.id == Survey.conversation_id)
            .where(Survey.kind == CSAT)
        )

    answered = await session.execute(
        csat(tier_of, func.count(), func.sum(Survey.score))
        .where(Survey.answered_at >= since, Survey.score.is_not(None))
        .group_by(tier_of)
    )
    for tier, n, total in answered.all():
        d = of(str(tier))
        d.csat_answers, d.csat_sum = int(n), int(total or 0)
    sent = await session.execute(
        csat(tier_of, func.count()).where(Survey.sent_at >= since).group_by(tier_of)
    )
    for tier, n in sent.all():
        of(str(tier)).csat_sent = int(n)
    breaches = await session.execute(
        select(SlaEvent.tier, func.count())
        .where(SlaEvent.level == "breach", SlaEvent.at >= since)
        .group_by(SlaEvent.tier)
    )
    for tier, n in breaches.all():
        of(str(tier)).breaches = int(n)
    case_breaches = await session.execute(
        select(Complaint.tier, func.count())
        .select_from(ComplaintEvent)
        .join(Complaint, Complaint.id == ComplaintEvent.complaint_id)
        .where(ComplaintEvent.kind == "breach", ComplaintEvent.at >= since)
        .group_by(Complaint.tier)
    )
    for tier, n in case_breaches.all():
        of(str(tier)).complaint_breaches = int(n)
    return list(days.values())


# --- breaches and complaints ------------------------------------------------------------


@dataclass(frozen=True)
class Breach:
    what: str  # chat | complaint
    ref: int  # the conversation id, or the case number
    tier: str
    kind: str  # first_response | resolution | acknowledge | resolve
    at: datetime


async def breaches_since(session: AsyncSession, since: datetime, limit: int = 20) -> list[Breach]:
    """The latest SLA breaches of chats and complaint cases since ``since``, newest first."""
    chats = await session.execute(
        select(SlaEvent.conversation_id, SlaEvent.tier, SlaEvent.kind, SlaEvent.at)
        .where(SlaEvent.level == "breach", SlaEvent.at >= since)
        .order_by(SlaEvent.at.desc(), SlaEvent.id.desc())
        .limit(limit)
    )
    cases = await session.execute(
        select(
            ComplaintEvent.complaint_id, Complaint.tier, ComplaintEvent.target, ComplaintEvent.at
        )
        .join(Complaint, Complaint.id == ComplaintEvent.complaint_id)
        .where(ComplaintEvent.kind == "breach", ComplaintEvent.at >= since)
        .order_by(ComplaintEvent.at.desc(), ComplaintEvent.id.desc())
        .limit(limit)
    )
    found = [Breach("chat", int(i), str(t), str(k), at) for i, t, k, at in chats.all()]
    found += [Breach("complaint", int(i), str(t), str(k or ""), at) for i, t, k, at in cases.all()]
    found.sort(key=lambda b: b.at, reverse=True)
    return found[:limit]


@dataclass(frozen=True)
class OpenComplaint:
    case: int
    tier: str
    customer: str
    category: str
    severity: float
    status: str
    opened_at: datetime
    due: str | None  # acknowledge | resolve: the next target of the case
    due_at: datetime | None
    overdue: bool


async def open_complaints(
    session: AsyncSession, now: datetime, limit: int = 50
) -> tuple[int, list[OpenComplaint]]:
    """How many cases are not resolved, and the oldest ``limit`` of them."""
    unresolved = Complaint.status != COMPLAINT_RESOLVED
    total = await session.scalar(select(func.count()).select_from(Complaint).where(unresolved))
    rows = (
        await session.execute(
            select(Complaint, Customer.name, Customer.external_id)
            .join(Customer, Customer.id == Complaint.customer_id)
            .where(unresolved)
            .order_by(Complaint.opened_at, Complaint.id)
            .limit(limit)
        )
    ).all()
    out = []
    for case, name, ext in rows:
        if case.acknowledged_at is None and case.ack_due_at is not None:
            due, due_at = "acknowledge", case.ack_due_at
        elif case.resolve_due_at is not None:
            due, due_at = "resolve", case.resolve_due_at
        else:
            due, due_at = None, None
        out.append(
            OpenComplaint(
                case=case.id,
                tier=case.tier,
                customer=_who(name, ext, case.customer_id),
                category=case.category,
                severity=case.severity,
                status=case.status,
                opened_at=case.opened_at,
                due=due,
                due_at=due_at,
                overdue=due_at is not None and due_at <= now,
            )
        )
    return int(total or 0), out


# --- the wallboard ----------------------------------------------------------------------


@dataclass
class Board:
    now: datetime
    since: datetime
    tiers: list[str]
    queue: QueueSnapshot
    waiting: list[WaitingChat]
    agents: list[AgentLoad]
    today: list[TierDay]
    breaches: list[Breach]
    complaints_open: int
    complaints: list[OpenComplaint] = field(default_factory=list)


async def board(
    session: AsyncSession, policy: Policy, now: datetime, since: datetime | None = None
) -> Board:
    """Everything the wallboard shows, from one session (``since``: today, midnight UTC)."""
    start = since if since is not None else day_start(now)
    total, cases = await open_complaints(session, now)
    return Board(
        now=now,
        since=start,
        tiers=list(policy.tier_names),
        queue=await queue_snapshot(session, policy),
        waiting=await waiting_chats(session, policy, now),
        agents=await agents_online(session),
        today=await day_by_tier(session, policy, start, now),
        breaches=await breaches_since(session, start),
        complaints_open=total,
        complaints=cases,
    )
