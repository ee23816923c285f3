"""Complaint cases: open (by the customer, or by an agent on the chat in hand), acknowledge,
reopen, notes.

A case has a lifecycle of its own, independent of the chat that carries it (closing the
chat does not resolve it): open -> acknowledged (the first agent message) -> resolved
(``routing.complaints.remedies``) -> possibly reopened (``routing.complaints.follow_up``)
-> acknowledged -> resolved ... Every transition is one conditional UPDATE, so a double
press or two instances change a case once; each is written to the timeline
(``routing.complaints.events``) and re-weighs the case in the customer's score
(``routing.complaints.weights``).

A customer's complaint (and a reopen) queues a conversation ``[complaints] priority_boost``
ranks above the customer's tier, as a detractor's service recovery does; a human_first
customer's account manager is paged at once through :class:`CasePager`, which the bot
implements (the same calls as ``surveys.feedback.RecoveryPager``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import events, sla
from routing.complaints.weights import reweigh
from routing.policy.root import Policy
from routing.queue import conversations
from routing.queue.priority import effective_rank, queue_key_at
from routing.scoring.rescoring import RescoreResult
from routing.store.models import (
    ASSIGNED,
    COMPLAINT_ACKNOWLEDGED,
    COMPLAINT_OPEN,
    COMPLAINT_REOPENED,
    COMPLAINT_RESOLVED,
    QUEUED,
    Agent,
    Complaint,
    Conversation,
    Customer,
)

ORIGIN_COMPLAINT = "complaint"  # why a conversation entered the queue
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


def summary(complaint: Complaint) -> str:
    """How agents see the case in the chat and in pages (agent-facing English, as elsewhere)."""
    text = (
        f"Complaint #{complaint.id} ({complaint.category}, severity {complaint.severity:g}, "
        f"{complaint.status})"
    )
    return f"{text}: {complaint.description}" if complaint.description else text


async def get(session: AsyncSession, complaint_id: int) -> Complaint:
    complaint = await session.get(Complaint, complaint_id, populate_existing=True)
    if complaint is None:
        raise NoSuchCase(f"no complaint #{complaint_id}")
    return complaint


@dataclass(frozen=True)
class Queued:
    """The conversation a complaint (or a reopen) queued, or joined when one was open."""

    conversation_id: int
    created: bool  # False: the customer already had a chat open; the case joined it
    vip: bool  # a human_first tier: page the account manager at once
    summary: str


@dataclass(frozen=True)
class Opened:
    complaint: Complaint
    queued: Queued | None  # None for an agent's complaint: the chat is already in hand
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
    queued = await _queue(session, complaint, customer, now, policy)
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
    customer = await session.get(Customer, conversation.customer_id)
    assert customer is not None
    complaint = await _new_case(
        session, customer, category, (note or "").strip(), BY_AGENT, agent.id, now, policy
    )
    complaint.conversation_id = conversation.id
    complaint.status = COMPLAINT_ACKNOWLEDGED
    complaint.acknowledged_at = now
    await events.add(session, complaint, events.ACKNOWLEDGED, now, agent_id=agent.id)
    await _note_in_chat(session, conversation, complaint, customer, now)
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


async def _queue(
    session: AsyncSession, complaint: Complaint, customer: Customer, now: datetime, policy: Policy
) -> Queued:
    """Queue (or join) the customer's chat for the case, ``priority_boost`` ranks up."""
    boost = policy.complaints.priority_boost
    conv, created = await conversations.open_conversation(
        session, customer, policy, ORIGIN_COMPLAINT, now, priority_boost=boost
    )
    if not created and conv.status == QUEUED:
        # Already waiting: it gets the complaint's rank too, never a lower one. The queue is
        # ordered by the virtual arrival, so the key moves with the rank.
        rank = effective_rank(policy.rank(customer.tier), boost)
        await session.execute(
            update(Conversation)
            .where(
                Conversation.id == conv.id,
                Conversation.status == QUEUED,
                Conversation.priority > rank,
            )
            .values(
                priority=rank,
                queue_key=queue_key_at(rank, conv.queued_at, policy.queue.aging_outrank_seconds),
            )
        )
        await session.refresh(conv)
    complaint.conversation_id = conv.id
    complaint.agent_id = conv.agent_id if conv.status == ASSIGNED else None
    await _note_in_chat(session, conv, complaint, customer, now)
    return Queued(conv.id, created, policy.is_human_first(customer.tier), summary(complaint))


async def _note_in_chat(
    session: AsyncSession,
    conv: Conversation,
    complaint: Complaint,
    customer: Customer,
    now: datetime,
) -> None:
    """The case in the chat's transcript, as a note for agents (what a hand-over shows)."""
    await conversations.add_message(
        session,
        conv,
        sender="bot",
        content_type=conversations.CONTENT_SURVEY,
        text=summary(complaint),
        file_id=None,
        chat_id=customer.telegram_id or 0,
        message_id=0,
        now=now,
    )


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


async def acknowledge_for_conversation(
    session: AsyncSession, conversation_id: int, agent_id: int, now: datetime, policy: Policy
) -> list[int]:
    """Acknowledge every case the chat carries that waits for it (called for each agent
    message the bot relays; cheap when there is none). Returns the case numbers."""
    waiting = (
        await session.execute(
            select(Complaint.id).where(
                Complaint.conversation_id == conversation_id,
                Complaint.status.in_((COMPLAINT_OPEN, COMPLAINT_REOPENED)),
            )
        )
    ).scalars()
    return [cid for cid in list(waiting) if await acknowledge(session, cid, agent_id, now, policy)]


@dataclass(frozen=True)
class Reopened:
    complaint: Complaint
    queued: Queued
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
    queued = await _queue(session, complaint, customer, now, policy)
    return Reopened(complaint, queued, await reweigh(session, complaint, now, policy))


async def add_note(
    session: AsyncSession, complaint_id: int, agent_id: int | None, text: str, now: datetime
) -> None:
    """A free note on the case's timeline."""
    complaint = await get(session, complaint_id)
    await events.add(session, complaint, events.NOTE, now, agent_id=agent_id, detail=text[:4000])


async def open_cases(session: AsyncSession, customer_id: int) -> list[Complaint]:
    """The customer's unresolved cases, oldest first (the customer card shows them)."""
    return list(
        (
            await session.execute(
                select(Complaint)
                .where(
                    Complaint.customer_id == customer_id,
                    Complaint.status != COMPLAINT_RESOLVED,
                )
                .order_by(Complaint.opened_at, Complaint.id)
            )
        ).scalars()
    )


async def carried_by(session: AsyncSession, conversation_id: int) -> list[Complaint]:
    """The cases a chat carries (``/remedy`` without a case number picks from these)."""
    return list(
        (
            await session.execute(
                select(Complaint)
                .where(Complaint.conversation_id == conversation_id)
                .order_by(Complaint.id)
            )
        ).scalars()
    )


class CasePager(Protocol):
    """How the domain reaches people about a complaint's chat (the bot implements it; the
    same calls as ``surveys.feedback.RecoveryPager``)."""

    async def page_agents(self, conversation_id: int, summary: str) -> int:
        """Page online agents about the queued chat; returns how many."""
        ...

    async def page_manager(
        self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
    ) -> bool:
        """Tell the customer's account manager at once, online or not. False if none."""
        ...


async def notify_queued(pager: CasePager, customer_id: int, queued: Queued | None) -> None:
    """After the transaction committed: page about the complaint's chat."""
    if queued is None:
        return
    if queued.created:
        await pager.page_agents(queued.conversation_id, queued.summary)
    if queued.vip:
        await pager.page_manager(
            customer_id, queued.conversation_id, queued.summary, agents_paged=queued.created
        )


__all__ = [
    "BY_AGENT",
    "BY_CUSTOMER",
    "ORIGIN_COMPLAINT",
    "CasePager",
    "ComplaintError",
    "ComplaintsOff",
    "NoSuchCase",
    "Opened",
    "Queued",
    "Reopened",
    "UnknownCategory",
    "acknowledge",
    "acknowledge_for_conversation",
    "add_note",
    "carried_by",
    "describe_message",
    "get",
    "notify_queued",
    "open_by_agent",
    "open_by_customer",
    "open_cases",
    "reopen",
    "summary",
]
