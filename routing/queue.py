"""The human queue: ordering and atomic claims.

A claim is one conditional ``UPDATE ... WHERE status = 'queued' RETURNING``: whoever's update
matches the row wins, everyone else matches nothing. That is correct on SQLite (writers are
serialised by ``BEGIN IMMEDIATE``) and on PostgreSQL (the row lock makes the second update
re-check ``status`` and match nothing), without any application-level locking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.models import ASSIGNED, QUEUED, Agent, Conversation, Customer


def queue_order() -> tuple[Any, ...]:
    """Highest tier first, then longest waiting; ties by arrival order (id)."""
    return (Conversation.priority.asc(), Conversation.queued_at.asc(), Conversation.id.asc())


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    conversation: Conversation | None
    # Who holds the conversation after the attempt (the winner, whoever that is).
    holder: Agent | None


async def claim(
    session: AsyncSession, conversation_id: int, agent: Agent, now: datetime
) -> ClaimResult:
    """Try to take one specific queued conversation."""
    won_id = (
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.status == QUEUED)
            .values(status=ASSIGNED, agent_id=agent.id, assigned_at=now)
            .returning(Conversation.id)
        )
    ).scalar_one_or_none()
    conv = await session.get(Conversation, conversation_id, populate_existing=True)
    if won_id is not None:
        return ClaimResult(True, conv, agent)
    holder = None
    if conv is not None and conv.agent_id is not None:
        holder = await session.get(Agent, conv.agent_id)
    return ClaimResult(False, conv, holder)


async def claim_next(session: AsyncSession, agent: Agent, now: datetime) -> Conversation | None:
    """Take the highest-priority waiting conversation, or None if nothing is waiting."""
    for _ in range(20):
        candidate = (
            select(Conversation.id)
            .where(Conversation.status == QUEUED)
            .order_by(*queue_order())
            .limit(1)
            # PostgreSQL: racing agents skip each other's candidate instead of queueing behind
            # it. SQLite ignores FOR UPDATE (its writers are already serialised).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        won_id = (
            await session.execute(
                update(Conversation)
                .where(Conversation.id == candidate, Conversation.status == QUEUED)
                .values(status=ASSIGNED, agent_id=agent.id, assigned_at=now)
                .returning(Conversation.id)
            )
        ).scalar_one_or_none()
        if won_id is not None:
            return await session.get(Conversation, won_id, populate_existing=True)
        if not await has_waiting(session):
            return None
    return None


async def has_waiting(session: AsyncSession) -> bool:
    return (
        await session.execute(select(Conversation.id).where(Conversation.status == QUEUED).limit(1))
    ).first() is not None


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
        .where(
            Conversation.status == QUEUED,
            (Conversation.priority < conv.priority)
            | (
                (Conversation.priority == conv.priority)
                & (
                    (Conversation.queued_at < conv.queued_at)
                    | ((Conversation.queued_at == conv.queued_at) & (Conversation.id < conv.id))
                )
            ),
        )
    )
    return int(ahead.scalar_one()) + 1
