"""Service-level timers: SLA warnings and breaches, silent agents, inactive customers.

Everything here reads the database and the clock it is given, and records what it decided
(``sla_events``, ``conversations.inactivity_warned_at``, ...) in the same transaction, so a
sweep that runs twice, or on two instances, or after a restart, alerts once. The caller
(bot/desk/queue.py) sends the messages after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue import claims, conversations
from routing.store.models import ASSIGNED, OPEN_STATUSES, Agent, Conversation, Customer, SlaEvent

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
WARN = "warn"
BREACH = "breach"


@dataclass(frozen=True)
class Check:
    kind: str
    level: str
    elapsed_s: float
    target_s: float


def evaluate(
    conv_tier: str,
    queued_at: datetime,
    first_response_at: datetime | None,
    now: datetime,
    policy: Policy,
) -> list[Check]:
    """The SLA levels an open conversation has reached now (pure)."""
    sla = policy.queue.sla
    out: list[Check] = []
    elapsed = (now - queued_at).total_seconds()
    for kind, target, done in (
        (FIRST_RESPONSE, sla.first_response(conv_tier), first_response_at is not None),
        (RESOLUTION, sla.resolution(conv_tier), False),
    ):
        if target is None:
            continue
        if kind == FIRST_RESPONSE and done:
            assert first_response_at is not None
            took = (first_response_at - queued_at).total_seconds()
            if took > target:
                # Answered late between two sweeps: still a breach on record.
                out.append(Check(kind, BREACH, took, target))
            continue
        if elapsed >= target:
            out.append(Check(kind, BREACH, elapsed, target))
        elif elapsed >= sla.warn_fraction * target:
            out.append(Check(kind, WARN, elapsed, target))
    return out


@dataclass(frozen=True)
class Alert:
    conversation: Conversation
    customer: Customer
    kind: str
    level: str
    elapsed_s: float
    target_s: float
    agent: Agent | None
    # Page supervisors (not for a late first response found after the fact).
    page: bool


async def sweep(session: AsyncSession, policy: Policy, now: datetime) -> list[Alert]:
    """Record newly reached warnings and breaches of open conversations; return them."""
    rows = (
        await session.execute(
            select(Conversation, Customer)
            .join(Customer, Customer.id == Conversation.customer_id)
            .where(Conversation.status.in_(OPEN_STATUSES))
        )
    ).all()
    if not rows:
        return []
    ids = [c.id for c, _ in rows]
    seen = {
        (cid, kind, level)
        for cid, kind, level in (
            await session.execute(
                select(SlaEvent.conversation_id, SlaEvent.kind, SlaEvent.level).where(
                    SlaEvent.conversation_id.in_(ids)
                )
            )
        ).all()
    }
    alerts: list[Alert] = []
    for conv, customer in rows:
        for check in evaluate(conv.tier, conv.queued_at, conv.first_response_at, now, policy):
            if (conv.id, check.kind, check.level) in seen:
                continue
            if check.level == WARN and (conv.id, check.kind, BREACH) in seen:
                continue
            event = SlaEvent(
                conversation_id=conv.id,
                kind=check.kind,
                level=check.level,
                tier=conv.tier,
                target_seconds=check.target_s,
                at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(event)
            except IntegrityError:
                continue  # another instance recorded it first
            agent = await session.get(Agent, conv.agent_id) if conv.agent_id else None
            late_answer = check.kind == FIRST_RESPONSE and conv.first_response_at is not None
            alerts.append(
                Alert(
                    conv,
                    customer,
                    check.kind,
                    check.level,
                    check.elapsed_s,
                    check.target_s,
                    agent,
                    not late_answer,
                )
            )
    return alerts


async def supervisors(session: AsyncSession) -> list[Agent]:
    return list(
        (
            await session.execute(
                select(Agent)
                .where(Agent.role == "supervisor", Agent.active.is_(True))
                .order_by(Agent.id)
            )
        ).scalars()
    )


# --- silent agents ----------------------------------------------------------------------


async def silent_agents(
    session: AsyncSession, policy: Policy, now: datetime
) -> list[tuple[Agent, list[Conversation]]]:
    """Online agents who left a customer unanswered for too long: set offline, chats requeued.

    Silent means: nothing from the agent (claim, reply, /online) for ``agent_silence_seconds``
    while one of their customers has waited at least that long for an answer.
    """
    limit = policy.queue.inactivity.agent_silence_seconds
    if limit <= 0:
        return []
    cutoff = now - timedelta(seconds=limit)
    waiting_on_agent = (
        select(Conversation.agent_id)
        .where(
            Conversation.status == ASSIGNED,
            Conversation.assigned_at <= cutoff,
            Conversation.last_customer_at <= cutoff,
            or_(
                Conversation.last_agent_at.is_(None),
                Conversation.last_agent_at < Conversation.last_customer_at,
            ),
        )
        .distinct()
    )
    gone = list(
        (
            await session.execute(
                select(Agent).where(
                    Agent.online.is_(True),
                    Agent.id.in_(waiting_on_agent),
                    or_(Agent.last_active_at.is_(None), Agent.last_active_at <= cutoff),
                    # Taking a chat is activity too (claims do not write last_active_at, to
                    # keep the claim a single statement).
                    ~Agent.id.in_(
                        select(Conversation.agent_id).where(
                            Conversation.agent_id.is_not(None), Conversation.assigned_at > cutoff
                        )
                    ),
                )
            )
        ).scalars()
    )
    out = []
    for agent in gone:
        agent.online = False
        out.append((agent, await claims.requeue_agent(session, agent)))
    await session.flush()
    return out


# --- inactive customers -----------------------------------------------------------------


@dataclass(frozen=True)
class Inactive:
    conversation: Conversation
    customer: Customer
    agent: Agent | None
    closed: bool  # False: warned
    minutes_left: int


async def inactive_customers(
    session: AsyncSession, policy: Policy, now: datetime
) -> list[Inactive]:
    """Warn, then close, chats whose customer has not answered the agent for too long.

    The clock runs from the agent's last message after the customer's last one (the ball is
    in the customer's court); a customer message stops it (routing.queue.conversations).
    """
    p = policy.queue.inactivity
    if p.close_after_seconds <= 0:
        return []
    warn_after = max(p.close_after_seconds - p.warn_before_seconds, 0)
    rows = (
        await session.execute(
            select(Conversation, Customer)
            .join(Customer, Customer.id == Conversation.customer_id)
            .where(
                Conversation.status == ASSIGNED,
                Conversation.last_agent_at.is_not(None),
                Conversation.last_agent_at <= now - timedelta(seconds=warn_after),
                or_(
                    Conversation.last_customer_at.is_(None),
                    Conversation.last_customer_at < Conversation.last_agent_at,
                ),
                or_(
                    Conversation.inactivity_warned_at.is_(None),
                    and_(
                        Conversation.inactivity_warned_at
                        <= now - timedelta(seconds=p.warn_before_seconds),
                        Conversation.last_agent_at
                        <= now - timedelta(seconds=p.close_after_seconds),
                    ),
                ),
            )
        )
    ).all()
    out: list[Inactive] = []
    for conv, customer in rows:
        agent = await session.get(Agent, conv.agent_id) if conv.agent_id else None
        if conv.inactivity_warned_at is None:
            conv.inactivity_warned_at = now
            left = max(1, round(p.warn_before_seconds / 60))
            out.append(Inactive(conv, customer, agent, False, left))
            continue
        if await conversations.close(session, conv, customer, policy, now) is not None:
            out.append(Inactive(conv, customer, agent, True, 0))
    await session.flush()
    return out
