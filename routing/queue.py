"""The human queue: ordering, eligibility and capacity, atomic claims, offers, requeues.

Ordering is by the stored virtual arrival ``queue_key`` (routing.priority), so the database
walks one index. A claim is one conditional ``UPDATE ... WHERE status = 'queued' RETURNING``:
whoever's update matches the row wins, everyone else matches nothing. That is correct on
SQLite (writers are serialised by ``BEGIN IMMEDIATE``) and on PostgreSQL (the row lock makes
the second update re-check ``status`` and match nothing), without application-level locking.

The choice of agent (eligibility, capacity, least loaded) is made by pure functions over
:class:`AgentSlot` so that the simulator (routing.simulate) runs exactly the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing import priority
from routing.models import (
    ASSIGNED,
    CLOSED,
    QUEUED,
    Agent,
    Conversation,
    Customer,
    QueueOffer,
)
from routing.policy import Policy

# --- pure rules (shared with the simulator) --------------------------------------------


def parse_tiers(raw: str | None) -> frozenset[str] | None:
    """An agent's tier list (``"VIP,A"``); None means every tier."""
    if raw is None or not raw.strip():
        return None
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def serves(tiers: frozenset[str] | None, tier: str) -> bool:
    return tiers is None or tier in tiers


def has_capacity(load: int, max_chats: int) -> bool:
    return load < max_chats


@dataclass
class AgentSlot:
    """What routing needs to know about one online agent."""

    id: int
    load: int
    max_chats: int
    tiers: frozenset[str] | None = None
    # When they last took a chat (seconds; any origin): the longest idle wins ties.
    last_assigned: float = -math.inf


def eligible(slot: AgentSlot, tier: str) -> bool:
    return serves(slot.tiers, tier) and has_capacity(slot.load, slot.max_chats)


def pick_agent(
    slots: Iterable[AgentSlot], tier: str, exclude: frozenset[int] = frozenset()
) -> AgentSlot | None:
    """The least-loaded eligible agent (then the longest idle, then the lowest id)."""
    best: AgentSlot | None = None
    for s in slots:
        if s.id in exclude or not eligible(s, tier):
            continue
        if best is None or (s.load, s.last_assigned, s.id) < (
            best.load,
            best.last_assigned,
            best.id,
        ):
            best = s
    return best


# ETA buckets in seconds (upper bounds): the customer hears again only when the bucket changes.
ETA_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600)


def eta_bucket(eta_seconds: float | None) -> int:
    """-1: no estimate (nobody online); else the index of the first bucket that holds it."""
    if eta_seconds is None:
        return -1
    for i, upper in enumerate(ETA_BUCKETS):
        if eta_seconds <= upper:
            return i
    return len(ETA_BUCKETS)


def estimate_wait(
    position: int, free_slots: int, total_slots: int, mean_handle_s: float
) -> float | None:
    """Seconds until a chat at ``position`` (1-based) is taken.

    Chats ahead are taken as slots free up: with ``total_slots`` concurrent chats across the
    online agents each lasting ``mean_handle_s``, a slot frees every
    ``mean_handle_s / total_slots`` seconds on average. Free slots take chats at once.
    """
    if total_slots <= 0:
        return None
    behind_free = position - free_slots
    if behind_free <= 0:
        return 0.0
    return behind_free * mean_handle_s / total_slots


def should_tell_position(
    told_position: int | None,
    told_bucket: int | None,
    position: int,
    bucket: int,
    *,
    min_step: int,
    top: int,
) -> bool:
    """Whether the change since the customer was last told is worth a message."""
    if told_position is None or told_bucket is None:
        return True
    if bucket != told_bucket:
        return True
    if position == told_position:
        return False
    if abs(position - told_position) >= min_step:
        return True
    # Near the front every step matters to the person waiting.
    return position <= top


# --- ordering ---------------------------------------------------------------------------


def queue_order() -> tuple[Any, ...]:
    """Virtual arrival (tier head start + arrival), then arrival; ties by id."""
    return (Conversation.queue_key.asc(), Conversation.queued_at.asc(), Conversation.id.asc())


def key_for(policy: Policy, rank: int, queued_at: datetime) -> float:
    return priority.queue_key_at(rank, queued_at, policy.queue.aging_outrank_seconds)


def _ahead_of(conv: Conversation) -> ColumnElement[bool]:
    return or_(
        Conversation.queue_key < conv.queue_key,
        and_(
            Conversation.queue_key == conv.queue_key,
            or_(
                Conversation.queued_at < conv.queued_at,
                and_(Conversation.queued_at == conv.queued_at, Conversation.id < conv.id),
            ),
        ),
    )


def _open_to(agent: Agent, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions under which a queued chat may go to ``agent`` now."""
    conds: list[ColumnElement[bool]] = [
        or_(
            Conversation.reserved_agent_id.is_(None),
            Conversation.reserved_agent_id == agent.id,
            Conversation.reserved_until <= now,
        ),
        or_(
            Conversation.offered_agent_id.is_(None),
            Conversation.offered_agent_id == agent.id,
            Conversation.offer_expires_at <= now,
        ),
    ]
    tiers = parse_tiers(agent.tiers)
    if tiers is not None:
        conds.append(Conversation.tier.in_(sorted(tiers)))
    return conds


# --- claims -----------------------------------------------------------------------------

# Why a claim was refused before anyone raced for it.
REFUSED_CAPACITY = "capacity"
REFUSED_TIER = "tier"
REFUSED_RESERVED = "reserved"


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    conversation: Conversation | None
    # Who holds the conversation after the attempt (the winner, whoever that is).
    holder: Agent | None
    # Set when the agent may not take it at all (capacity, tier, reserved for someone else).
    refused: str | None = None


async def load(session: AsyncSession, agent_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.agent_id == agent_id, Conversation.status == ASSIGNED)
            )
        ).scalar_one()
    )


def _won_values(agent: Agent, now: datetime) -> dict[str, Any]:
    return {
        "status": ASSIGNED,
        "agent_id": agent.id,
        "assigned_at": now,
        "reserved_agent_id": None,
        "reserved_until": None,
    }


async def lock_agent(session: AsyncSession, agent_id: int) -> None:
    """Serialise an agent's claims for the rest of the transaction.

    Capacity is "how many chats the agent holds", a count over other rows: two claims of
    different chats by one agent through two instances would both count the load before the
    other committed (PostgreSQL, READ COMMITTED) and both win. Locking the agent's row first
    makes the second wait, and its count (a new statement) sees the first. SQLite already
    serialises writers (BEGIN IMMEDIATE), and FOR UPDATE renders as nothing there."""
    await session.execute(select(Agent.id).where(Agent.id == agent_id).with_for_update())


async def claim(
    session: AsyncSession, conversation_id: int, agent: Agent, now: datetime
) -> ClaimResult:
    """Try to take one specific queued conversation (capacity checked under the agent's
    lock: see :func:`lock_agent`)."""
    await lock_agent(session, agent.id)
    conv = await session.get(Conversation, conversation_id, populate_existing=True)
    if conv is not None and conv.status == QUEUED:
        refused = None
        if not serves(parse_tiers(agent.tiers), conv.tier):
            refused = REFUSED_TIER
        elif (
            conv.reserved_agent_id not in (None, agent.id)
            and conv.reserved_until is not None
            and conv.reserved_until > now
        ):
            refused = REFUSED_RESERVED
        elif not has_capacity(await load(session, agent.id), agent.max_chats):
            refused = REFUSED_CAPACITY
        if refused is not None:
            return ClaimResult(False, conv, None, refused)
    won = (
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.status == QUEUED)
            .values(**_won_values(agent, now))
            .returning(Conversation.id, Conversation.offered_agent_id)
        )
    ).first()
    if won is not None and won.offered_agent_id is not None:
        await _settle_offers(session, conversation_id, agent.id)
    conv = await session.get(Conversation, conversation_id, populate_existing=True)
    if won is not None:
        return ClaimResult(True, conv, agent)
    holder = None
    if conv is not None and conv.agent_id is not None:
        holder = await session.get(Agent, conv.agent_id)
    return ClaimResult(False, conv, holder)


class AtCapacity(Exception):
    """The agent already holds ``max_chats`` chats."""


async def claim_next(session: AsyncSession, agent: Agent, now: datetime) -> Conversation | None:
    """Take the highest-priority conversation this agent may take, or None if there is none.

    Raises :class:`AtCapacity` when the agent holds ``max_chats`` chats already. The capacity
    check rides in the claiming UPDATE itself (one statement on the hot path); it is only
    looked at separately when nothing was won, to tell "full" from "nothing to take".
    """
    await lock_agent(session, agent.id)
    open_to = _open_to(agent, now)
    room = (
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.agent_id == agent.id, Conversation.status == ASSIGNED)
        .scalar_subquery()
        < agent.max_chats
    )
    for _ in range(20):
        candidate = (
            select(Conversation.id)
            .where(Conversation.status == QUEUED, *open_to)
            .order_by(*queue_order())
            .limit(1)
            # PostgreSQL: racing agents skip each other's candidate instead of queueing behind
            # it. SQLite ignores FOR UPDATE (its writers are already serialised).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        won = (
            await session.execute(
                update(Conversation)
                .where(Conversation.id == candidate, Conversation.status == QUEUED, room)
                .values(**_won_values(agent, now))
                .returning(Conversation.id, Conversation.offered_agent_id)
            )
        ).first()
        if won is not None:
            if won.offered_agent_id is not None:
                await _settle_offers(session, won.id, agent.id)
            return await session.get(Conversation, won.id, populate_existing=True)
        if not has_capacity(await load(session, agent.id), agent.max_chats):
            raise AtCapacity
        if not await has_waiting(session, agent, now):
            return None
    return None


async def has_waiting(session: AsyncSession, agent: Agent | None = None, now: Any = None) -> bool:
    stmt = select(Conversation.id).where(Conversation.status == QUEUED)
    if agent is not None and now is not None:
        stmt = stmt.where(*_open_to(agent, now))
    return (await session.execute(stmt.limit(1))).first() is not None


async def waiting(session: AsyncSession, limit: int) -> list[tuple[Conversation, Customer]]:
    rows = await session.execute(
        select(Conversation, Customer)
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(Conversation.status == QUEUED)
        .order_by(*queue_order())
        .limit(limit)
    )
    return [(c, cu) for c, cu in rows.all()]


async def waiting_count(session: AsyncSession) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).select_from(Conversation).where(Conversation.status == QUEUED)
            )
        ).scalar_one()
    )


async def position(session: AsyncSession, conv: Conversation) -> int:
    """1-based place of a waiting conversation in the queue."""
    ahead = await session.execute(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.status == QUEUED, _ahead_of(conv))
    )
    return int(ahead.scalar_one()) + 1


async def rekey_legacy(session: AsyncSession, policy: Policy) -> int:
    """Give queued chats from before the queue_key column (key 0) their key."""
    rows = (
        await session.execute(
            select(Conversation).where(Conversation.status == QUEUED, Conversation.queue_key == 0)
        )
    ).scalars()
    n = 0
    for conv in rows:
        conv.queue_key = key_for(policy, conv.priority, conv.queued_at)
        n += 1
    await session.flush()
    return n


# --- requeue and transfer ---------------------------------------------------------------


async def requeue(
    session: AsyncSession, conv: Conversation, *, front: bool, note: str | None = None,
    by: int | None = None,
) -> None:  # fmt: skip
    """Put an assigned chat back in the queue, keeping its original arrival time.

    ``front``: ahead of every waiting chat of the same rank (the agent left, not the
    customer); otherwise at its original place (``queue_key`` unchanged).
    """
    key = conv.queue_key
    if front:
        first = (
            await session.execute(
                select(func.min(Conversation.queue_key)).where(
                    Conversation.status == QUEUED, Conversation.priority == conv.priority
                )
            )
        ).scalar_one_or_none()
        if first is not None and first <= key:
            key = first - 0.001
    await session.execute(
        update(Conversation)
        # Only an assigned chat: one closed meanwhile (inactivity, /close) stays closed.
        .where(Conversation.id == conv.id, Conversation.status == ASSIGNED)
        .values(
            status=QUEUED,
            agent_id=None,
            assigned_at=None,
            queue_key=key,
            transfer_note=note,
            transferred_by=by,
            told_position=None,
            told_eta_bucket=None,
            inactivity_warned_at=None,
        )
    )
    await session.refresh(conv)


async def transfer_to(
    session: AsyncSession, conv: Conversation, to: Agent, note: str | None, by: Agent,
    now: datetime,
) -> str | None:  # fmt: skip
    """Hand an assigned chat to another agent. Returns a refusal reason, or None."""
    if to.id == by.id:
        return "self"
    if not to.online:
        return "offline"
    if not serves(parse_tiers(to.tiers), conv.tier):
        return REFUSED_TIER
    await lock_agent(session, to.id)
    if not has_capacity(await load(session, to.id), to.max_chats):
        return REFUSED_CAPACITY
    done = (
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conv.id, Conversation.status == ASSIGNED)
            .values(agent_id=to.id, assigned_at=now, transfer_note=note, transferred_by=by.id)
            .returning(Conversation.id)
        )
    ).scalar_one_or_none()
    if done is None:
        return "closed"
    await session.refresh(conv)
    return None


async def requeue_agent(session: AsyncSession, agent: Agent) -> list[Conversation]:
    """An agent left (offline or silent): their chats go back to the front of their tier."""
    convs = list(
        (
            await session.execute(
                select(Conversation)
                .where(Conversation.agent_id == agent.id, Conversation.status == ASSIGNED)
                .order_by(Conversation.queue_key)
            )
        ).scalars()
    )
    # Oldest last, so that it ends up first: each requeue goes in front of the previous.
    for conv in reversed(convs):
        await requeue(session, conv, front=True)
    return convs


# --- reservations (manager-first, sticky) ----------------------------------------------


async def online_slots(session: AsyncSession) -> dict[int, tuple[Agent, AgentSlot]]:
    """Every online active agent with their current load."""
    loads = (
        select(Conversation.agent_id, func.count().label("n"))
        .where(Conversation.status == ASSIGNED)
        .group_by(Conversation.agent_id)
        .subquery()
    )
    last = (
        select(Conversation.agent_id, func.max(Conversation.assigned_at).label("at"))
        .where(Conversation.agent_id.is_not(None))
        .group_by(Conversation.agent_id)
        .subquery()
    )
    rows = await session.execute(
        select(Agent, func.coalesce(loads.c.n, 0), last.c.at)
        .outerjoin(loads, loads.c.agent_id == Agent.id)
        .outerjoin(last, last.c.agent_id == Agent.id)
        .where(Agent.online.is_(True), Agent.active.is_(True))
        .order_by(Agent.id)
    )
    out: dict[int, tuple[Agent, AgentSlot]] = {}
    for a, n, at in rows.all():
        at_s = priority.epoch_seconds(at) if at is not None else -math.inf
        out[a.id] = (a, AgentSlot(a.id, int(n), a.max_chats, parse_tiers(a.tiers), at_s))
    return out


async def reserve_for(
    session: AsyncSession,
    conv: Conversation,
    customer: Customer,
    policy: Policy,
    now: datetime,
    manager: Agent | None,
) -> Agent | None:
    """Decide whether a newly queued top-tier chat waits for one agent first; record it.

    The account manager (online, serving the tier, with capacity) first; without a manager
    on record, the agent who last served this customer within ``sticky_days``.
    """
    q = policy.queue
    if q.manager_window_seconds <= 0 or conv.tier != policy.tier_names[0]:
        return None
    slots = await online_slots(session)
    chosen: Agent | None = None
    if customer.account_manager:
        slot = slots[manager.id][1] if manager is not None and manager.id in slots else None
        if slot is not None and eligible(slot, conv.tier):
            chosen = manager
    elif q.sticky_days > 0:
        last_agent = (
            await session.execute(
                select(Conversation.agent_id)
                .where(
                    Conversation.customer_id == customer.id,
                    Conversation.id != conv.id,
                    Conversation.agent_id.is_not(None),
                    Conversation.queued_at >= now - timedelta(days=q.sticky_days),
                )
                .order_by(Conversation.queued_at.desc(), Conversation.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if last_agent is not None and last_agent in slots:
            a, slot = slots[last_agent]
            if eligible(slot, conv.tier):
                chosen = a
    if chosen is None:
        return None
    conv.reserved_agent_id = chosen.id
    conv.reserved_until = now + timedelta(seconds=q.manager_window_seconds)
    await session.flush()
    return chosen


async def release_reservations(session: AsyncSession, now: datetime) -> list[Conversation]:
    """Queued chats whose window ended: open to everyone now (page them all)."""
    convs = list(
        (
            await session.execute(
                select(Conversation).where(
                    Conversation.status == QUEUED,
                    Conversation.reserved_agent_id.is_not(None),
                    Conversation.reserved_until <= now,
                )
            )
        ).scalars()
    )
    for c in convs:
        c.reserved_agent_id = None
        c.reserved_until = None
    await session.flush()
    return convs


# --- offer mode -------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOffer:
    offer: QueueOffer
    conversation: Conversation
    customer: Customer
    agent: Agent


@dataclass(frozen=True)
class EndedOffer:
    offer: QueueOffer
    conversation: Conversation
    customer: Customer


async def expire_offers(session: AsyncSession, now: datetime) -> list[EndedOffer]:
    rows = (
        await session.execute(
            select(QueueOffer, Conversation, Customer)
            .join(Conversation, Conversation.id == QueueOffer.conversation_id)
            .join(Customer, Customer.id == Conversation.customer_id)
            .where(QueueOffer.outcome == "pending", QueueOffer.expires_at <= now)
        )
    ).all()
    ended = []
    for offer, conv, cu in rows:
        offer.outcome = "expired"
        if conv.offered_agent_id == offer.agent_id:
            conv.offered_agent_id = None
            conv.offer_expires_at = None
        ended.append(EndedOffer(offer, conv, cu))
    await session.flush()
    return ended


async def make_offers(
    session: AsyncSession, policy: Policy, now: datetime, limit: int = 50
) -> list[NewOffer]:
    """Offer waiting chats, best first, each to the least-loaded eligible online agent.

    An agent holds one pending offer at a time, and is not offered a chat they already
    declined or let expire while another eligible agent has not been asked yet.
    """
    slots = await online_slots(session)
    if not slots:
        return []
    busy = set(
        (
            await session.execute(
                select(QueueOffer.agent_id).where(QueueOffer.outcome == "pending")
            )
        ).scalars()
    )
    convs = (
        await session.execute(
            select(Conversation, Customer)
            .join(Customer, Customer.id == Conversation.customer_id)
            .where(
                Conversation.status == QUEUED,
                or_(Conversation.offered_agent_id.is_(None), Conversation.offer_expires_at <= now),
            )
            .order_by(*queue_order())
            .limit(limit)
        )
    ).all()
    made: list[NewOffer] = []
    timeout = timedelta(seconds=policy.queue.offer_timeout_seconds)
    for conv, cu in convs:
        free = [s for aid, (_, s) in slots.items() if aid not in busy]
        if conv.reserved_agent_id is not None and conv.reserved_until and conv.reserved_until > now:
            free = [s for s in free if s.id == conv.reserved_agent_id]
        tried = list(
            (
                await session.execute(
                    select(QueueOffer.agent_id)
                    .where(QueueOffer.conversation_id == conv.id)
                    .order_by(QueueOffer.id)
                )
            ).scalars()
        )
        slot = pick_agent(free, conv.tier, frozenset(tried))
        if slot is None and tried:
            # Everyone eligible was asked: go round again, but not straight back to the last.
            slot = pick_agent(free, conv.tier, frozenset(tried[-1:]))
        if slot is None:
            continue
        offer = QueueOffer(
            conversation_id=conv.id,
            agent_id=slot.id,
            offered_at=now,
            expires_at=now + timeout,
            outcome="pending",
        )
        session.add(offer)
        conv.offered_agent_id = slot.id
        conv.offer_expires_at = offer.expires_at
        busy.add(slot.id)
        made.append(NewOffer(offer, conv, cu, slots[slot.id][0]))
    await session.flush()
    return made


async def _settle_offers(session: AsyncSession, conv_id: int, winner_id: int) -> None:
    """The chat is taken: the winner's pending offer is accepted, anyone else's withdrawn."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conv_id)
        .values(offered_agent_id=None, offer_expires_at=None)
    )
    pending = (QueueOffer.conversation_id == conv_id, QueueOffer.outcome == "pending")
    await session.execute(
        update(QueueOffer)
        .where(*pending, QueueOffer.agent_id != winner_id)
        .values(outcome="withdrawn")
    )
    await session.execute(
        update(QueueOffer)
        .where(*pending, QueueOffer.agent_id == winner_id)
        .values(outcome="accepted")
    )


async def decline_offer(session: AsyncSession, offer_id: int, agent: Agent) -> QueueOffer | None:
    """The agent passes: the chat goes to the next agent at the next routing pass."""
    offer = await session.get(QueueOffer, offer_id)
    if offer is None or offer.agent_id != agent.id or offer.outcome != "pending":
        return None
    offer.outcome = "declined"
    await session.execute(
        update(Conversation)
        .where(Conversation.id == offer.conversation_id, Conversation.offered_agent_id == agent.id)
        .values(offered_agent_id=None, offer_expires_at=None)
    )
    await session.flush()
    return offer


async def pending_offer(session: AsyncSession, offer_id: int) -> QueueOffer | None:
    return await session.get(QueueOffer, offer_id)


# --- estimates --------------------------------------------------------------------------


async def mean_handle_seconds(session: AsyncSession, policy: Policy) -> float:
    p = policy.queue.position
    rows = (
        await session.execute(
            select(Conversation.assigned_at, Conversation.closed_at)
            .where(
                Conversation.status == CLOSED,
                Conversation.assigned_at.is_not(None),
                Conversation.closed_at.is_not(None),
            )
            .order_by(Conversation.closed_at.desc())
            .limit(p.handle_window)
        )
    ).all()
    spans = [(c - a).total_seconds() for a, c in rows if a is not None and c is not None]
    spans = [s for s in spans if s >= 0]
    return sum(spans) / len(spans) if spans else p.default_handle_seconds


@dataclass(frozen=True)
class PositionNotice:
    conversation: Conversation
    customer: Customer
    position: int
    eta_seconds: float | None


async def position_updates(
    session: AsyncSession, policy: Policy, now: datetime
) -> list[PositionNotice]:
    """Queued customers whose position or estimated wait changed materially; marks them told."""
    p = policy.queue.position
    rows = (
        await session.execute(
            select(Conversation, Customer)
            .join(Customer, Customer.id == Conversation.customer_id)
            .where(Conversation.status == QUEUED)
            .order_by(*queue_order())
        )
    ).all()
    if not rows:
        return []
    slots = await online_slots(session)
    handle = await mean_handle_seconds(session, policy)
    notices: list[PositionNotice] = []
    # Position among the chats of tiers each agent serves would be more exact; the whole
    # queue is what the customer can picture, and what /queue shows.
    for pos, (conv, cu) in enumerate(rows, start=1):
        serving = [s for _, s in slots.values() if serves(s.tiers, conv.tier)]
        total = sum(s.max_chats for s in serving)
        free = sum(max(s.max_chats - s.load, 0) for s in serving)
        eta = estimate_wait(pos, free, total, handle)
        bucket = eta_bucket(eta)
        if cu.telegram_id is None:
            continue
        if should_tell_position(
            conv.told_position, conv.told_eta_bucket, pos, bucket, min_step=p.min_step, top=p.top
        ):
            conv.told_position = pos
            conv.told_eta_bucket = bucket
            notices.append(PositionNotice(conv, cu, pos, eta))
    await session.flush()
    return notices


async def mark_told(session: AsyncSession, conv: Conversation, pos: int, eta: float | None) -> None:
    conv.told_position = pos
    conv.told_eta_bucket = eta_bucket(eta)
    await session.flush()


async def queued_position_and_eta(
    session: AsyncSession, policy: Policy, conv: Conversation
) -> tuple[int, float | None]:
    pos = await position(session, conv)
    slots = await online_slots(session)
    serving = [s for _, s in slots.values() if serves(s.tiers, conv.tier)]
    total = sum(s.max_chats for s in serving)
    free = sum(max(s.max_chats - s.load, 0) for s in serving)
    return pos, estimate_wait(pos, free, total, await mean_handle_seconds(session, policy))
