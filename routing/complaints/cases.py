"""Complaint cases: open (by the customer, or by an agent on the chat in hand), acknowledge,
reopen, notes.

A case has a lifecycle of its own, independent of the chat that carries it (closing the
chat does not resolve it): open -> acknowledged (the first agent message) -> resolved
(``routing.complaints.remedies``) -> possibly reopened (``routing.complaints.follow_up``)
-> acknowledged -> resolved ... Every transition is one conditional UPDATE, so a double
press or two instances change a case once; each is written to the timeline
(``routing.complaints.events``) and re-weighs the case in the customer's score
(``routing.complaints.weights``). A customer's complaint, and a reopen, queue a chat above
the customer's tier (``routing.complaints.chats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import chats, events, sla
from routing.complaints.weights import reweigh
from routing.policy.root import Policy
from routing.scoring.rescoring import RescoreResult
from routing.store import direct
from routing.store.care_models import (
    COMPLAINT_ACKNOWLEDGED,
    COMPLAINT_OPEN,
    COMPLAINT_REOPENED,
    COMPLAINT_RESOLVED,
    Complaint,
)
from routing.store.models import OPEN_STATUSES, Agent, Conversation, Customer

BY_CUSTOMER = "customer"
BY_AGENT = "agent"
DESCRIPTION_MAX = 4000


class ComplaintError(ValueError):
    """A complaint request that cannot be carried out; ``str()`` says why, for people."""


class ComplaintsOff(ComplaintError):
    pass


class UnknownCategory(ComplaintError):
    pass


class NoSuchCase(ComplaintError):
    pass


def describe_message(content_type: str, text: str | None) -> str:
    """The description of a complaint message: its text, or for anything else a short
    summary (``[photo] caption``); the message itself stays in the chat transcript."""
    words = (text or "").strip()
    if content_type == "text":
        return words[:DESCRIPTION_MAX]
    return f"[{content_type}] {words}".strip()[:DESCRIPTION_MAX]


async def get(session: AsyncSession, complaint_id: int) -> Complaint:
    complaint = await session.get(Complaint, complaint_id, populate_existing=True)
    if complaint is None:
        raise NoSuchCase(f"no complaint #{complaint_id}")
    return complaint


@dataclass(frozen=True)
class Opened:
    complaint: Complaint
    queued: chats.Queued | None  # None for an agent's complaint: the chat is already in hand
    rescore: RescoreResult | None


async def open_by_customer(
    session: AsyncSession,
    customer: Customer,
    category: str,
    description: str,
    now: datetime,
    policy: Policy,
) -> Opened:
    """The customer's complaint: a case, and a chat queued above their tier (or the chat
    they have open, moved up if it is still waiting). Call inside a transaction."""
    complaint = await _new_case(
        session, customer, category, description, BY_CUSTOMER, None, now, policy
    )
    queued = await chats.queue_for_case(session, complaint, customer, now, policy)
    return Opened(complaint, queued, await reweigh(session, complaint, now, policy))


async def open_by_agent(
    session: AsyncSession,
    conversation: Conversation,
    agent: Agent,
    category: str,
    note: str | None,
    now: datetime,
    policy: Policy,
) -> Opened:
    """An agent turns the conversation in hand into a complaint (``/complaint CATEGORY
    [note]``). The agent is handling it, so the case is acknowledged at once."""
    if conversation.status not in OPEN_STATUSES:
        raise ComplaintError(f"chat #{conversation.id} is closed")
    customer = await session.get(Customer, conversation.customer_id)
    assert customer is not None
    complaint = await _new_case(
        session, customer, category, (note or "").strip(), BY_AGENT, agent.id, now, policy
    )
    complaint.conversation_id = conversation.id
    complaint.status = COMPLAINT_ACKNOWLEDGED
    complaint.acknowledged_at = now
    await events.add(session, complaint, events.ACKNOWLEDGED, now, agent_id=agent.id)
    await chats.note_in_chat(session, conversation, complaint, customer, now)
    return Opened(complaint, None, await reweigh(session, complaint, now, policy))


async def _new_case(
    session: AsyncSession,
    customer: Customer,
    category: str,
    description: str,
    opened_by: str,
    agent_id: int | None,
    now: datetime,
    policy: Policy,
) -> Complaint:
    p = policy.complaints
    if not p.enabled:
        raise ComplaintsOff("complaints are switched off ([complaints] enabled)")
    cat = p.category(category)
    if cat is None:
        keys = ", ".join(c.key for c in p.categories)
        raise UnknownCategory(f'no complaint category "{category}" (categories: {keys})')
    ack_due, resolve_due = sla.due_dates(customer.tier, now, policy)
    complaint = Complaint(
        customer_id=customer.id,
        tier=customer.tier,
        category=cat.key,
        severity=cat.severity,
        description=description[:DESCRIPTION_MAX],
        opened_by=opened_by,
        agent_id=agent_id,
        status=COMPLAINT_OPEN,
        opened_at=now,
        reopen_count=0,
        weight=0.0,
        ack_due_at=ack_due,
        resolve_due_at=resolve_due,
    )
    session.add(complaint)
    await session.flush()
    await events.add(session, complaint, events.OPENED, now, agent_id=agent_id, detail=opened_by)
    return complaint


async def acknowledge(
    session: AsyncSession, complaint_id: int, agent_id: int, now: datetime, policy: Policy
) -> bool:
    """The first agent message after open or reopen: the case is acknowledged by that agent.
    Idempotent: False when it already was (or is resolved)."""
    won = (
        await session.execute(
            update(Complaint)
            .where(
                Complaint.id == complaint_id,
                Complaint.status.in_((COMPLAINT_OPEN, COMPLAINT_REOPENED)),
            )
            .values(status=COMPLAINT_ACKNOWLEDGED, acknowledged_at=now, agent_id=agent_id)
            .returning(Complaint.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return False
    complaint = await get(session, complaint_id)
    await events.add(session, complaint, events.ACKNOWLEDGED, now, agent_id=agent_id)
    await sla.record_late(session, complaint, sla.ACKNOWLEDGE, policy)
    return True


# Built once: asked for every agent message relayed.
# Run for every agent message relayed: on the session's driver connection (direct.py).
def waiting_for_an_answer(conversation_id: Any) -> ColumnElement[bool]:
    """The rule for a case of the chat that waits for the agent's first answer: every agent
    message relayed into the chat acknowledges it (:func:`acknowledge_for_conversation`)."""
    return and_(
        Complaint.conversation_id == conversation_id,
        Complaint.status.in_((COMPLAINT_OPEN, COMPLAINT_REOPENED)),
    )


_WAITING_CASES = direct.Statement(
    select(Complaint.id).where(waiting_for_an_answer(bindparam("conversation_id")))
)


async def acknowledge_for_conversation(
    session: AsyncSession, conversation_id: int, agent_id: int, now: datetime, policy: Policy
) -> list[int]:
    """Acknowledge every case the chat carries that waits for it (called for each agent
    message the bot relays; cheap when there is none). Returns the case numbers."""
    waiting = await _WAITING_CASES.rows(session, {"conversation_id": conversation_id})
    return [row.id for row in waiting if await acknowledge(session, row.id, agent_id, now, policy)]


@dataclass(frozen=True)
class Reopened:
    complaint: Complaint
    queued: chats.Queued
    rescore: RescoreResult | None


async def reopen(
    session: AsyncSession,
    complaint_id: int,
    now: datetime,
    policy: Policy,
    *,
    agent_id: int | None = None,
    reason: str | None = None,
) -> Reopened | None:
    """Reopen a resolved case: a new cycle (its own SLA targets), a chat queued above the
    customer's tier again, the reopened weight. None if the case is not resolved."""
    complaint = await get(session, complaint_id)
    ack_due, resolve_due = sla.due_dates(complaint.tier, now, policy)
    won = (
        await session.execute(
            update(Complaint)
            .where(Complaint.id == complaint_id, Complaint.status == COMPLAINT_RESOLVED)
            .values(
                status=COMPLAINT_REOPENED,
                reopened_at=now,
                reopen_count=Complaint.reopen_count + 1,
                acknowledged_at=None,
                resolved_at=None,
                ack_due_at=ack_due,
                resolve_due_at=resolve_due,
            )
            .returning(Complaint.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return None
    complaint = await get(session, complaint_id)
    await events.add(session, complaint, events.REOPENED, now, agent_id=agent_id, detail=reason)
    customer = await session.get(Customer, complaint.customer_id, populate_existing=True)
    assert customer is not None
    queued = await chats.queue_for_case(session, complaint, customer, now, policy)
    return Reopened(complaint, queued, await reweigh(session, complaint, now, policy))


async def add_note(
    session: AsyncSession, complaint_id: int, agent_id: int | None, text: str, now: datetime
) -> None:
    """A free note on the case's timeline."""
    complaint = await get(session, complaint_id)
    await events.add(session, complaint, events.NOTE, now, agent_id=agent_id, detail=text[:4000])
