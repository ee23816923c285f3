"""Sending the delivery queue: claiming a destination's head row under a lease, the
hand-over gate, backoff (pure), and recording each send's outcome.

The rows are written by :mod:`routing.delivery.enqueue.enqueue`; the Telegram side (bot/delivery.py)
calls these to send them in order, each at least once and, with the relay guard, never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.delivery.enqueue import KIND_GATE, _ids
from routing.store import direct, lane
from routing.store.models import (
    ASSIGNED,
    CLOSED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    TO_AGENT,
    TO_CUSTOMER,
    Agent,
    Conversation,
    Delivery,
)

# A claimed row belongs to its sender this long (longer than one API call may take).
LEASE_SECONDS = 30.0


# A relay waiting for its hand-over looks again this often (sweep) while it waits.
GATE_RECHECK_SECONDS = 5.0


# A claim whose hand-over never came (the process died in between) stops holding the
# customer's messages back after this long: they go to the holder without the briefing.
GATE_GRACE_SECONDS = 30.0


# Errors that no retry will fix: the request is wrong, the chat is gone or blocks the bot.
PERMANENT_CODES = frozenset({400, 401, 403, 404})


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0  # first wait after a 5xx or network error, seconds
    cap: float = 60.0  # longest wait between attempts
    horizon: float = 24 * 3600.0  # give up on a row this long after it was queued


DEFAULT_BACKOFF = Backoff()


def retry_delay(
    code: int | None,
    *,
    retry_after: float | None,
    failures: int,
    age_seconds: float,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> float | None:
    """Seconds until the next attempt after a failed send, or None: fail for good.

    ``code`` is the API's error code (None for a network error or timeout), ``failures`` how
    many attempts have failed so far including this one, ``age_seconds`` how long ago the row
    was queued. 429 waits exactly ``retry_after``; 5xx and network errors wait base, 2 base,
    4 base ... capped; 400/401/403/404 (and any other 4xx) are permanent. Past the horizon
    nothing is retried.
    """
    if code is not None and (code in PERMANENT_CODES or (400 <= code < 500 and code != 429)):
        return None
    if age_seconds >= backoff.horizon:
        return None
    if code == 429:
        return float(retry_after) if retry_after is not None else backoff.base
    exponent = max(failures - 1, 0)
    if exponent > 32:  # 2**32 s is far beyond any cap
        return backoff.cap
    return float(min(backoff.cap, backoff.base * (2**exponent)))


@dataclass(frozen=True)
class Claimed:
    """A row claimed for sending, its destination resolved."""

    id: int
    conversation_id: int
    direction: str
    agent_id: int | None  # to_agent: the agent it goes to
    chat_id: int
    kind: str
    from_chat_id: int | None
    message_ids: list[int]
    text: str | None
    link_kind: str | None
    attempts: int  # including this one
    created_at: datetime
    relay: bool  # a customer's message resolved to the holder (not a briefing row)


@dataclass(frozen=True)
class Head:
    """What a destination's first row allows: a claim, a wait until ``wait_until``, or
    nothing (``idle``)."""

    claimed: Claimed | None = None
    wait_until: datetime | None = None
    gated: bool = False  # a relay waiting for a claim or its hand-over, not for a timer
    # False: the claimed row was the destination's last unsent one when it was claimed, so
    # the sender need not look again after sending it (a row queued since then is kicked by
    # whoever queued it, or found by the sweep): one transaction less per relay.
    more: bool = True

    @property
    def idle(self) -> bool:
        return self.claimed is None and self.wait_until is None


# Built once (the hot path of every relay): a destination's first two unsent rows, the
# second only to know whether there is one. Rows of the table, not ORM objects: a claim
# reads them and updates by id, and loading instances into the session cost more than the
# statement (issue 19).
_TABLE = cast(Table, Delivery.__table__)
_HEAD = (
    select(_TABLE)
    .where(
        Delivery.conversation_id == bindparam("conversation_id"),
        Delivery.direction == bindparam("direction"),
        Delivery.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
    )
    .order_by(Delivery.id)
    .limit(2)
)


# The rest of a claim's statements, built once as well (they run for every relay).
_GATE_HELD = select(
    exists().where(
        Delivery.conversation_id == bindparam("conversation_id"),
        Delivery.kind == KIND_GATE,
        Delivery.agent_id == bindparam("agent_id"),
        Delivery.created_at > bindparam("since", type_=Delivery.created_at.type),
    )
)
# The chat's state and its holder's Telegram chat, in one read.
_CONV_STATE = (
    select(Conversation.status, Conversation.agent_id, Conversation.assigned_at, Agent.telegram_id)
    .outerjoin(Agent, Agent.id == Conversation.agent_id)
    .where(Conversation.id == bindparam("conversation_id"))
)
_BRIEF = (
    select(_TABLE)
    .where(
        Delivery.conversation_id == bindparam("conversation_id"),
        Delivery.direction == TO_AGENT,
        Delivery.agent_id == bindparam("agent_id"),
        Delivery.handover_at == bindparam("handover_at", type_=Delivery.handover_at.type),
        Delivery.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
    )
    .order_by(Delivery.id)
    .limit(1)
)
_AGENT_CHAT = select(Agent.telegram_id).where(Agent.id == bindparam("agent_id"))
# Run on the session's driver connection (routing/store/direct.py): a claim's statements were
# most of a relay's database cost through the session.
_HEAD_D, _GATE_HELD_D, _CONV_STATE_D, _BRIEF_D, _AGENT_CHAT_D = (
    direct.Statement(s) for s in (_HEAD, _GATE_HELD, _CONV_STATE, _BRIEF, _AGENT_CHAT)
)
_CLAIM = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("row_id"),
        _TABLE.c.status == bindparam("was_status"),
        _TABLE.c.next_at == bindparam("was_next_at", type_=Delivery.next_at.type),
    )
    .values(
        status=DELIVERY_SENDING,
        next_at=bindparam("lease_until", type_=Delivery.next_at.type),
        attempts=_TABLE.c.attempts + 1,
        chat_id=bindparam("to_chat"),
    )
    .returning(_TABLE.c.attempts)
)
_CLAIM_D = direct.Statement(_CLAIM)
_RECHECK_LATER = direct.Statement(
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.status == DELIVERY_PENDING)
    .values(next_at=bindparam("v_at", type_=Delivery.next_at.type))
)
_SENT = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(
        status=DELIVERY_SENT,
        sent_at=bindparam("at", type_=Delivery.sent_at.type),
        agent_id=bindparam("to_agent"),
        error=None,
    )
)


async def _gate_open(
    session: AsyncSession | direct.Tx, conv_id: int, agent_id: int, now: datetime
) -> bool:
    held = await _GATE_HELD_D.scalar(
        session,
        {
            "conversation_id": conv_id,
            "agent_id": agent_id,
            "since": now - timedelta(seconds=GATE_GRACE_SECONDS),
        },
    )
    return not held


async def claim_head(
    session: AsyncSession | direct.Tx,
    conversation_id: int,
    direction: str,
    *,
    now: datetime,
    lease: float = LEASE_SECONDS,
) -> Head:
    """Claim the first unsent row of one destination if it is due and may go now.

    ``now`` is real time (the queue's timers run on it, not on the bot's clock).
    """
    first_two = await _HEAD_D.rows(
        session, {"conversation_id": conversation_id, "direction": direction}
    )
    if not first_two:
        return Head()
    head = first_two[0]
    more = len(first_two) > 1
    if head.next_at > now:
        return Head(wait_until=head.next_at)
    agent_id = head.agent_id
    chat_id = head.chat_id
    relay = direction == TO_AGENT and head.agent_id is None
    holder_chat: int | None = None  # the holder's Telegram chat, read with the chat's state
    if relay:
        conv = await _CONV_STATE_D.first(session, {"conversation_id": conversation_id})
        assert conv is not None  # a delivery's conversation is never deleted
        gate = conv.agent_id is not None and (
            conv.status == CLOSED
            or (
                conv.status == ASSIGNED
                and await _gate_open(session, conversation_id, conv.agent_id, now)
            )
        )
        if conv.agent_id is None and conv.status == CLOSED:
            # Closed before anyone took it: there is nobody to deliver to.
            await fail(session, head.id, now=now, error="closed before an agent took it")
            return await claim_head(
                session,
                conversation_id,
                direction,
                now=now,
                lease=lease,
            )
        if not gate:
            recheck = now + timedelta(seconds=GATE_RECHECK_SECONDS)
            await _RECHECK_LATER.execute(session, {"row_id": head.id, "v_at": recheck}, last=True)
            return Head(wait_until=recheck, gated=True)
        agent_id, holder_chat = conv.agent_id, conv.telegram_id
        if conv.status == ASSIGNED:
            # The holder's briefing first, even if its rows were queued after this message
            # (PostgreSQL: the message's transaction took its id before the hand-over's).
            brief = await _BRIEF_D.first(
                session,
                {
                    "conversation_id": conversation_id,
                    "agent_id": conv.agent_id,
                    "handover_at": conv.assigned_at,
                },
            )
            if brief is not None:
                if brief.next_at > now:
                    return Head(wait_until=brief.next_at)
                head, relay, chat_id = brief, False, brief.chat_id
                more = True  # the relay that was at the head still waits behind it
    if direction == TO_AGENT:
        if holder_chat is not None:
            chat_id = holder_chat
        elif agent_id is not None:
            chat_id = await _AGENT_CHAT_D.scalar(session, {"agent_id": agent_id})
        else:
            chat_id = None
    if chat_id is None:
        await fail(session, head.id, now=now, error="no chat to deliver to")
        return Head(wait_until=now)
    won = await _CLAIM_D.scalar(
        session,
        {
            "row_id": head.id,
            "was_status": head.status,
            "was_next_at": head.next_at,
            "lease_until": now + timedelta(seconds=lease),
            "to_chat": chat_id,
        },
        # Conditional on what was read (status, next_at): atomic alone (direct.Tx).
        last=True,
    )
    if won is None:  # another sender took it first
        return Head(wait_until=now + timedelta(seconds=lease))
    return Head(
        Claimed(
            id=head.id,
            conversation_id=conversation_id,
            direction=direction,
            agent_id=agent_id,
            chat_id=chat_id,
            kind=head.kind,
            from_chat_id=head.from_chat_id,
            message_ids=_ids(head.message_ids),
            text=head.text,
            link_kind=head.link_kind,
            attempts=int(won),
            created_at=head.created_at,
            relay=relay,
        ),
        more=more,
    )


async def mark_sent(
    session: AsyncSession, row_id: int, *, now: datetime, agent_id: int | None
) -> None:
    await session.execute(_SENT, {"row_id": row_id, "at": now, "to_agent": agent_id})


_SENT_LANE = lane.Prepared(_SENT)


def sent_step(row_id: int, *, now: datetime, agent_id: int | None) -> lane.Step:
    """:func:`mark_sent` as a step of a driver-level transaction (routing/store/lane.py): the
    sender's mark after every send, with the relay's links (bot/delivery.py)."""
    return _SENT_LANE, {"row_id": row_id, "at": now, "to_agent": agent_id}


async def retry_at(
    session: AsyncSession, row_id: int, *, at: datetime, error: str, counted: bool = True
) -> None:
    """Back to pending until ``at``. ``counted=False``: the claim's attempt was not a
    failure (a 429, or the chat's turn had not come), so the 5xx backoff does not grow."""
    values: dict[str, object] = {"status": DELIVERY_PENDING, "next_at": at, "error": error[:1000]}
    if not counted:
        values["attempts"] = Delivery.attempts - 1
    await session.execute(
        update(Delivery)
        .where(Delivery.id == row_id, Delivery.status == DELIVERY_SENDING)
        .values(**values)
    )


_FAIL = direct.Statement(
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(
        status=DELIVERY_FAILED,
        sent_at=None,
        next_at=bindparam("v_at", type_=Delivery.next_at.type),
        error=bindparam("v_error"),
    )
)


async def fail(on: AsyncSession | direct.Tx, row_id: int, *, now: datetime, error: str) -> None:
    await _FAIL.execute(on, {"row_id": row_id, "v_at": now, "v_error": error[:1000]})


async def fail_destination(
    session: AsyncSession, conversation_id: int, direction: str, *, now: datetime, error: str
) -> int:
    """Fail every pending row of a destination (its chat blocks the bot). Returns how many."""
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.conversation_id == conversation_id,
            Delivery.direction == direction,
            Delivery.status == DELIVERY_PENDING,
        )
        .values(status=DELIVERY_FAILED, error=f"403: {error}"[:1000])
        .returning(Delivery.id)
    )
    return len(result.all())


async def blocked_before(session: AsyncSession, conversation_id: int) -> bool:
    """Has a message of this conversation already failed because the customer blocked us?"""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    Delivery.conversation_id == conversation_id,
                    Delivery.direction == TO_CUSTOMER,
                    Delivery.status == DELIVERY_FAILED,
                    Delivery.error.like("403%"),
                )
            )
        )
    )


async def give_back(session: AsyncSession, row_id: int, *, now: datetime, error: str) -> None:
    """A customer's message its holder could not receive: back to "whoever holds it"."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id == row_id)
        .values(status=DELIVERY_PENDING, agent_id=None, chat_id=None, next_at=now, error=error)
    )


async def due_conversations(session: AsyncSession, now: datetime, limit: int = 500) -> list[int]:
    """Conversations with a row due now (retries, leases ended, rows a crash left)."""
    rows = await session.execute(
        select(Delivery.conversation_id)
        .where(
            Delivery.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
            Delivery.next_at <= now,
        )
        .group_by(Delivery.conversation_id)
        .order_by(func.min(Delivery.id))
        .limit(limit)
    )
    return [int(c) for c in rows.scalars()]
