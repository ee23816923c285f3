"""The chat a complaint case travels in: queued above the customer's tier, the case as a note
in its transcript, and the pages about it.

A customer's complaint (and a reopen) queues a conversation ``[complaints] priority_boost``
ranks above the customer's tier, as a detractor's service recovery does; a chat already
waiting is moved up (never down). A human_first customer's account manager is paged at once
through :class:`CasePager`, which the bot implements (the same calls as
``surveys.feedback.RecoveryPager``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue import conversations
from routing.queue.priority import effective_rank, queue_key_at
from routing.store.care_models import Complaint
from routing.store.models import ASSIGNED, QUEUED, Conversation, Customer

ORIGIN_COMPLAINT = "complaint"  # why a conversation entered the queue


def summary(complaint: Complaint) -> str:
    """How agents see the case in the chat and in pages (agent-facing English, as elsewhere)."""
    text = (
        f"Complaint #{complaint.id} ({complaint.category}, severity {complaint.severity:g}, "
        f"{complaint.status})"
    )
    return f"{text}: {complaint.description}" if complaint.description else text


@dataclass(frozen=True)
class Queued:
    """The conversation a complaint (or a reopen) queued, or joined when one was open."""

    conversation_id: int
    created: bool  # False: the customer already had a chat open; the case joined it
    vip: bool  # a human_first tier: page the account manager at once
    summary: str


async def queue_for_case(
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
    await note_in_chat(session, conv, complaint, customer, now)
    return Queued(conv.id, created, policy.is_human_first(customer.tier), summary(complaint))


async def note_in_chat(
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
