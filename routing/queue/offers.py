"""Reservations (a VIP's manager first) and offers (one agent at a time, with a timeout):
who is asked to take a waiting chat before everyone may claim it.

The decisions are ``routing.queue.assignment``'s and ``routing.queue.eligibility``'s; this
module reads their inputs from the database and records what they decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Integer, Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from routing.policy.root import Policy
from routing.queue import assignment, estimate
from routing.queue.claims import position, queue_order
from routing.queue.eligibility import Chat, online_slots, pick_agent, reserved_for_other
from routing.store import direct, lane, managers
from routing.store.models import QUEUED, Agent, Conversation, Customer, QueueOffer

_LAST_AGENT = direct.Statement(
    select(Conversation.agent_id)
    .where(
        Conversation.customer_id == bindparam("customer_id"),
        Conversation.id != bindparam("conv_id"),
        Conversation.agent_id.is_not(None),
        Conversation.queued_at >= bindparam("since", type_=Conversation.queued_at.type),
    )
    .order_by(Conversation.queued_at.desc(), Conversation.id.desc())
    .limit(1)
)


async def _last_agent(
    session: AsyncSession, conv: Conversation, customer: Customer, policy: Policy, now: datetime
) -> int | None:
    """The agent who served this customer within ``sticky_days`` (another chat), if any."""
    if policy.queue.sticky_days <= 0:
        return None
    since = now - timedelta(days=policy.queue.sticky_days)
    # Outside a transaction it begins none (PostgreSQL: a VIP's page plans outside one).
    rows = await _LAST_AGENT.rows_now(
        session, {"customer_id": customer.id, "conv_id": conv.id, "since": since}
    )
    return rows[0].agent_id if rows else None


async def _people(
    session: AsyncSession,
    conv: Conversation,
    customer: Customer,
    policy: Policy,
    now: datetime,
    manager: Agent | None,
) -> assignment.People:
    has_manager = bool(customer.account_manager)
    # Only a top-tier chat with a window can be reserved: no lookup otherwise.
    wants = policy.queue.manager_window_seconds > 0 and conv.tier == policy.tier_names[0]
    last = (
        None
        if has_manager or not wants
        else await _last_agent(session, conv, customer, policy, now)
    )
    return assignment.People(has_manager, manager.id if manager else None, last)


async def reserve_for(
    session: AsyncSession,
    conv: Conversation,
    customer: Customer,
    policy: Policy,
    now: datetime,
    manager: Agent | None,
) -> Agent | None:
    """Decide whether a newly queued top-tier chat waits for one agent first; record it.

    The rule is ``assignment.reservation``: the account manager (``manager``: the agent the
    customer's ``account_manager`` names) first; without a manager on record, the agent who
    last served this customer within ``sticky_days``.
    """
    slots = await online_slots(session)
    people = await _people(session, conv, customer, policy, now, manager)
    online = [s for _, s in slots.values()]
    held = assignment.reservation(assignment.Waiting.of(conv), online, people, policy, now)
    if held is None:
        return None
    conv.reserved_agent_id, conv.reserved_until = held
    await session.flush()
    return slots[held[0]][0]


@dataclass(frozen=True)
class NewChatPlan:
    plan: assignment.Plan
    # The agents of ``plan.page`` (and of the reservation), by id.
    agents: dict[int, Agent]


async def plan_new_chat(
    session: AsyncSession, conv: Conversation, customer: Customer, policy: Policy, now: datetime
) -> NewChatPlan:
    """Gather what ``assignment.plan`` needs for a newly queued chat, ask it, and record its
    reservation. When the estimate says "right away" or "nobody is online" (what the customer
    was just told), the position sweep speaks up only when that changes."""
    slots = await online_slots(session)
    # Only an online manager changes the plan (the reservation, the first page): looked for
    # among the online agents just read, by the one rule, rather than read again. A name no
    # agent answers to cost a read of every active agent.
    manager = managers.find_manager((a for a, _ in slots.values()), customer.account_manager)
    people = await _people(session, conv, customer, policy, now, manager)
    plan = assignment.plan(
        assignment.Waiting.of(conv),
        [s for _, s in slots.values()],
        policy,
        now,
        people=people,
        position=await position(session, conv),
        mean_handle_s=await estimate.mean_handle_seconds(session, policy),
    )
    await _record_new(session, conv, plan)
    return NewChatPlan(plan, {aid: a for aid, (a, _) in slots.items()})


# Built once: every VIP chat opened records its plan (issue 19). Through the ORM, the flush of
# these few columns cost more than the rest of the plan's statements together.
_CONV_ID = bindparam("conv_id", type_=Integer)
_RESERVED = {
    "reserved_agent_id": bindparam("reserved_agent_id", type_=Integer),
    "reserved_until": bindparam("reserved_until", type_=Conversation.reserved_until.type),
}
_TOLD = {
    "told_position": bindparam("told_position", type_=Integer),
    "told_eta_bucket": bindparam("told_eta_bucket", type_=Integer),
}
_SET_RESERVED = direct.Statement(
    update(Conversation).where(Conversation.id == _CONV_ID).values(**_RESERVED)
)
_SET_RESERVED_TOLD = direct.Statement(
    update(Conversation).where(Conversation.id == _CONV_ID).values(**_RESERVED, **_TOLD)
)

# PostgreSQL: the plans of chats opened at the same time as one statement, their values given
# as arrays (lane.together).
_CONVS = cast(Table, Conversation.__table__)
_PLAN_COLUMNS = {
    "reserved_agent_id": _CONVS.c.reserved_agent_id.type,
    "reserved_until": Conversation.reserved_until.type,
    "told_position": _CONVS.c.told_position.type,
    "told_eta_bucket": _CONVS.c.told_eta_bucket.type,
}


def _plans(told: bool) -> direct.Statement:
    names = list(_PLAN_COLUMNS)[: 4 if told else 2]
    rows = (
        func.unnest(
            bindparam("conv_id", type_=ARRAY(_CONVS.c.id.type)),
            *(bindparam(n, type_=ARRAY(_PLAN_COLUMNS[n])) for n in names),
        )
        .table_valued("conv_id", *names)
        .render_derived(name="v")
    )
    return direct.Statement(
        update(_CONVS).where(_CONVS.c.id == rows.c.conv_id).values({n: rows.c[n] for n in names})
    )


lane.batch_as(_SET_RESERVED, _plans(told=False), key="conv_id")
lane.batch_as(_SET_RESERVED_TOLD, _plans(told=True), key="conv_id")


async def _record_new(session: AsyncSession, conv: Conversation, plan: assignment.Plan) -> None:
    """Record a new chat's plan: its reservation, and when the estimate says
    "right away" or "nobody is online" (what the customer was just told), that it was told
    (``estimate.mark_told``), so the position sweep speaks up only when that changes. One
    statement, or none when there is nothing to record; the instance is updated as loaded."""
    values: dict[str, object] = {}
    if plan.reserve_for is not None:
        values = {"reserved_agent_id": plan.reserve_for, "reserved_until": plan.reserved_until}
    told = estimate.eta_bucket(plan.eta_seconds) <= 0
    if told:
        values |= {
            "told_position": plan.position,
            "told_eta_bucket": estimate.eta_bucket(plan.eta_seconds),
        }
    if not values:
        return
    values = {
        "reserved_agent_id": conv.reserved_agent_id,
        "reserved_until": conv.reserved_until,
        **values,
    }
    statement = _SET_RESERVED_TOLD if told else _SET_RESERVED
    params = {"conv_id": conv.id, **values}
    if session.in_transaction():
        await statement.execute(session, params)
    else:  # one statement, atomic by itself (PostgreSQL: a VIP's page plans outside one)
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        # With the other plans and links written at the same time (one statement).
        await lane.together(engine).write([(statement, params)])
    for key, value in values.items():
        set_committed_value(conv, key, value)


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
        # Not to anyone the chat is held from (eligibility's reservation step); tier and
        # capacity are pick_agent's (the same check).
        chat = Chat.of(conv)
        free = [
            s
            for aid, (_, s) in slots.items()
            if aid not in busy and not reserved_for_other(chat, aid, now)
        ]
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
