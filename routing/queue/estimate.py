"""Position and ETA for waiting customers: estimates, buckets, and when to tell them again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue.claims import position, queue_order
from routing.queue.eligibility import online_slots, serves
from routing.store.models import CLOSED, QUEUED, Conversation, Customer

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
