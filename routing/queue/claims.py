"""The human queue: ordering, eligibility and capacity, atomic claims, offers, requeues.

Ordering is by the stored virtual arrival ``queue_key`` (routing.queue.priority), so the database
walks one index. A claim is one conditional ``UPDATE ... WHERE status = 'queued' RETURNING``:
whoever's update matches the row wins, everyone else matches nothing. That is correct on
SQLite (writers are serialised by ``BEGIN IMMEDIATE``) and on PostgreSQL (the row lock makes
the second update re-check ``status`` and match nothing), without application-level locking.

Whether an agent may take a chat is routing.queue.eligibility's one check (``refusal``): tier,
reservation, capacity. :func:`claim` and :func:`transfer_to` ask it; :func:`claim_next` picks
in SQL with ``eligibility.sql_open_to`` (the same tier and reservation rule as conditions),
capacity riding in its claiming UPDATE. The simulator (routing.simulate) asks it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue import eligibility, priority
from routing.queue.eligibility import REFUSED_CAPACITY as REFUSED_CAPACITY
from routing.queue.eligibility import REFUSED_RESERVED as REFUSED_RESERVED
from routing.queue.eligibility import REFUSED_TIER as REFUSED_TIER
from routing.queue.eligibility import AgentSlot, Chat, has_capacity
from routing.store import direct
from routing.store.models import ASSIGNED, QUEUED, Agent, Conversation, Customer, QueueOffer

# --- ordering ---------------------------------------------------------------------------


def queue_order() -> tuple[Any, ...]:
    """Virtual arrival (tier head start + arrival), then arrival; ties by id."""
    return (Conversation.queue_key.asc(), Conversation.queued_at.asc(), Conversation.id.asc())


def key_for(policy: Policy, rank: int, queued_at: datetime) -> float:
    return priority.queue_key_at(rank, queued_at, policy.queue.aging_outrank_seconds)


def _ahead_of_params(key: Any, queued_at: Any, conv_id: Any) -> ColumnElement[bool]:
    """Queued before a chat of this key, arrival and id (``queue_order``)."""
    return or_(
        Conversation.queue_key < key,
        and_(
            Conversation.queue_key == key,
            or_(
                Conversation.queued_at < queued_at,
                and_(Conversation.queued_at == queued_at, Conversation.id < conv_id),
            ),
        ),
    )


def _open_to(agent: Agent, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions under which a queued chat may go to ``agent`` now: the eligibility rule's
    tier and reservation steps (``eligibility.sql_open_to``), and no live offer to another
    agent (offer mode asks one agent at a time)."""
    return [
        *eligibility.sql_open_to(agent, now),
        or_(
            Conversation.offered_agent_id.is_(None),
            Conversation.offered_agent_id == agent.id,
            Conversation.offer_expires_at <= now,
        ),
    ]


# --- claims -----------------------------------------------------------------------------


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
        slot = AgentSlot.of(agent, await load(session, agent.id))
        refused = eligibility.refusal(slot, Chat.of(conv), now)
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


# Read for every newly queued chat (the customer is told their place): built once and run on
# the driver's connection (routing/store/direct.py), not rebuilt with the chat's values.
_AHEAD = direct.Statement(
    select(func.count())
    .select_from(Conversation)
    .where(
        Conversation.status == QUEUED,
        _ahead_of_params(
            bindparam("key", type_=Conversation.queue_key.type),
            bindparam("at", type_=Conversation.queued_at.type),
            bindparam("conv_id"),
        ),
    )
)


def _ahead_many() -> direct.Statement:
    # PostgreSQL: several chats' places at once (chats queued at the same time), each
    # counted as _AHEAD counts one.
    k = (
        func.unnest(
            bindparam("key", type_=ARRAY(Conversation.queue_key.type)),
            bindparam("at", type_=ARRAY(Conversation.queued_at.type)),
            bindparam("conv_id", type_=ARRAY(Integer)),
        )
        .table_valued("key", "at", "conv_id", with_ordinality="n")
        .render_derived(name="k")
    )
    ahead = (
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.status == QUEUED, _ahead_of_params(k.c.key, k.c.at, k.c.conv_id))
        .correlate(k)
        .scalar_subquery()
    )
    return direct.Statement(select(k.c.n, ahead).select_from(k).order_by(k.c.n))


_AHEAD_MANY = _ahead_many()


async def position(session: AsyncSession, conv: Conversation) -> int:
    """1-based place of a waiting conversation in the queue."""
    params = {"key": conv.queue_key, "at": conv.queued_at, "conv_id": conv.id}
    # Outside a transaction it begins none; on PostgreSQL the chats queued at the same time
    # are counted together (direct.rows_gathered).
    (row,) = await _AHEAD.rows_gathered(session, params, _AHEAD_MANY)
    return int(row[0]) + 1


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
    await lock_agent(session, to.id)
    # An assigned chat holds no reservation: tier and capacity decide.
    refused = eligibility.refusal(AgentSlot.of(to, await load(session, to.id)), Chat(conv.tier))
    if refused is not None:
        return refused
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


# --- offer mode -------------------------------------------------------------------------


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
