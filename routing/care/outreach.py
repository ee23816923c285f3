"""*Start chat* on a care task: the bot reaches out to the customer, in one transaction.

The customer has no open chat: an **outbound** conversation (origin ``care``) is opened and
assigned to the agent at once (their ``max_chats`` respected), linked to the task and
focused for the agent, so their next message goes to the customer through the ordinary
relay. The customer already has one (one open conversation per customer, a database rule):
no second is opened; the task is linked to that one instead, and

* it is the agent's own: it is focused;
* it waits in the queue (a detractor's service-recovery chat, say): the agent claims it
  (the queue's own claim, reservations and capacity included), and the caller hands it over;
* someone else holds it, or the claim is refused: the caller says who or why.

Nothing changes when the task is unknown, not the agent's, no longer open, the customer has
no Telegram chat with the bot, or (for a new chat) the agent is at capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.care import tasks
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import claims, conversations, eligibility
from routing.store.care_models import CARE_OPEN, CARE_SNOOZED, CareTask
from routing.store.models import ASSIGNED, QUEUED, Agent, Conversation, Customer

# Conversation.origin of a chat the bot opened for a care task.
ORIGIN_CARE = "care"


class Start(StrEnum):
    OPENED = "opened"  # a new outbound chat, the agent's
    CLAIMED = "claimed"  # the customer's waiting chat, claimed by the agent: hand it over
    MINE = "mine"  # the customer is in the agent's chat already
    ELSEWHERE = "elsewhere"  # in another agent's chat, or waiting and the claim was refused
    # Nothing changed:
    UNKNOWN = "unknown"
    NOT_YOURS = "not_yours"
    NOT_NOW = "not_now"
    NO_CHAT = "no_chat"  # the customer has no Telegram chat with the bot
    AT_CAPACITY = "at_capacity"


LINKED = (Start.OPENED, Start.CLAIMED, Start.MINE, Start.ELSEWHERE)


@dataclass(frozen=True)
class StartResult:
    how: Start
    task: CareTask | None = None
    customer: Customer | None = None
    conversation: Conversation | None = None
    # ELSEWHERE: who holds the chat (None: it is waiting), and the claim refused (if any).
    holder: Agent | None = None
    claim: claims.ClaimResult | None = None


async def start_chat(
    session: AsyncSession,
    task_id: int,
    agent: Agent,
    policy: Policy,
    now: datetime,
    *,
    delivery_now: datetime,
) -> StartResult:
    """Reach out for task ``task_id`` (call inside a transaction). ``delivery_now`` is the
    delivery queue's real time (a claimed waiting chat holds its messages for the hand-over)."""
    # The task's row first: two presses (two agents on a pool task) go one after the other.
    task = (
        await session.execute(
            select(CareTask)
            .where(CareTask.id == task_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if task is None:
        return StartResult(Start.UNKNOWN)
    if not tasks.may_act(task, agent):
        return StartResult(Start.NOT_YOURS, task)
    if task.status not in (CARE_OPEN, CARE_SNOOZED):
        return StartResult(Start.NOT_NOW, task)
    customer = await session.get(Customer, task.customer_id)
    assert customer is not None  # a foreign key
    if customer.telegram_id is None:
        return StartResult(Start.NO_CHAT, task, customer)
    await claims.lock_agent(session, agent.id)
    existing = await conversations.open_for_customer(session, customer.id)
    holder: Agent | None = None
    claim: claims.ClaimResult | None = None
    if existing is None:
        if not eligibility.has_capacity(await claims.load(session, agent.id), agent.max_chats):
            return StartResult(Start.AT_CAPACITY, task, customer)
        conv, created = await conversations.open_conversation(
            session, customer, policy, ORIGIN_CARE, now
        )
        if created:
            conv.status = ASSIGNED
            conv.agent_id = agent.id
            conv.assigned_at = now
            await session.flush()
            how = Start.OPENED
        else:  # pragma: no cover - opened by the customer's own update this very instant
            existing = conv
    if existing is not None:
        conv = existing
        if conv.status == QUEUED:
            claim = await claims.claim(session, conv.id, agent, now)
            if claim.won:
                await enqueue.hold_for_hand_over(session, conv.id, agent.id, now=delivery_now)
                how = Start.CLAIMED
            else:
                how, holder = Start.ELSEWHERE, claim.holder
            conv = claim.conversation or conv
        elif conv.status == ASSIGNED and conv.agent_id == agent.id:
            how = Start.MINE
        else:
            how = Start.ELSEWHERE
            holder = await session.get(Agent, conv.agent_id) if conv.agent_id else None
    started = await tasks.start(session, task.id, agent, conv.id, now)
    # The task's row is locked and was open: the transition cannot lose.
    assert started.outcome is tasks.Outcome.OK, started.outcome
    if how is not Start.ELSEWHERE:
        await session.execute(
            update(Agent).where(Agent.id == agent.id).values(focus_conversation_id=conv.id)
        )
    return StartResult(how, started.task, customer, conv, holder, claim)
