"""Position and ETA for waiting customers: buckets, and when to tell them again.

The estimate itself is ``routing.queue.assignment.eta`` (``estimate_wait`` is re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue.assignment import estimate_wait as estimate_wait
from routing.queue.assignment import eta
from routing.queue.claims import queue_order
from routing.queue.eligibility import online_slots
from routing.store import direct
from routing.store.models import CLOSED, QUEUED, Conversation, Customer

# ETA buckets in seconds (upper bounds): the customer hears again only when the bucket changes.
ETA_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600)

# A chat queued this recently and never told is still being opened: its opener commits the
# chat, then plans and pages in a second transaction and answers the customer ("right
# away", "you are number 3"). A sweep (on this or another instance) that ran in between
# would add its own "You are number 1" to that answer; it waits for the opener instead.
OPENING_GRACE = timedelta(seconds=10)


def eta_bucket(eta_seconds: float | None) -> int:
    """-1: no estimate (nobody online); else the index of the first bucket that holds it."""
    if eta_seconds is None:
        return -1
    for i, upper in enumerate(ETA_BUCKETS):
        if eta_seconds <= upper:
            return i
    return len(ETA_BUCKETS)


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


def latest_closed() -> Select[datetime | None, datetime | None]:
    """The last ``window`` (the policy's ``handle_window``) closed chats' claim and close
    times, newest first (read through ``ix_conversations_closed``, not a sort of the whole
    history)."""
    return (
        select(Conversation.assigned_at, Conversation.closed_at)
        .where(
            Conversation.status == CLOSED,
            Conversation.assigned_at.is_not(None),
            Conversation.closed_at.is_not(None),
        )
        .order_by(Conversation.closed_at.desc())
        .limit(bindparam("window", type_=Integer))
    )


# Read for every newly queued chat: built once, run on the driver's connection
# (routing/store/direct.py).
_LATEST_CLOSED = direct.Statement(latest_closed())


async def mean_handle_seconds(session: AsyncSession, policy: Policy) -> float:
    p = policy.queue.position
    # Outside a transaction it begins none; on PostgreSQL the chats planned at the same
    # time share the read (direct.rows_shared).
    rows = await _LATEST_CLOSED.rows_shared(session, {"window": p.handle_window})
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
    online = [s for _, s in (await online_slots(session)).values()]
    handle = await mean_handle_seconds(session, policy)
    notices: list[PositionNotice] = []
    # Position among the chats of tiers each agent serves would be more exact; the whole
    # queue is what the customer can picture, and what /queue shows.
    for pos, (conv, cu) in enumerate(rows, start=1):
        wait = eta(pos, online, conv.tier, handle)
        bucket = eta_bucket(wait)
        if cu.telegram_id is None:
            continue
        if conv.told_position is None and conv.queued_at > now - OPENING_GRACE:
            continue
        if should_tell_position(
            conv.told_position, conv.told_eta_bucket, pos, bucket, min_step=p.min_step, top=p.top
        ):
            conv.told_position = pos
            conv.told_eta_bucket = bucket
            notices.append(PositionNotice(conv, cu, pos, wait))
    await session.flush()
    return notices


async def mark_told(session: AsyncSession, conv: Conversation, pos: int, eta: float | None) -> None:
    conv.told_position = pos
    conv.told_eta_bucket = eta_bucket(eta)
    await session.flush()
