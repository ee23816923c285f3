"""The per-chat delivery queue: what a conversation still has to put in a Telegram chat.

Every message for the other side of a conversation (a customer's message for the agent, an
agent's message for the customer, a hand-over's briefing, a transfer's transcript copies) is
a ``deliveries`` row written in the caller's transaction, next to the transcript row it
carries. The Telegram side (bot/delivery.py) claims the rows of one destination (a
conversation and a direction) strictly in id order, sends them and records the outcome here.

Rules kept here:

* Order. A destination's rows go in id order; a row waiting for its retry (or being sent)
  holds back the later rows of that destination, never other destinations.
* Albums. Parts of one album (same ``media_group_id``) join one row while it is still
  pending; the row is held ``hold`` seconds after its last part so all parts are in.
* The hand-over backlog. A customer's message is queued "for whoever holds the conversation"
  (``agent_id`` None) and resolved to the holder when sent. Such a row waits while the
  conversation is queued, and, after a claim that marked it (:func:`hold_for_hand_over`, in
  the claim's transaction), until the holder's briefing (:func:`hand_over`) is queued; the
  current assignment's briefing is sent before them (:func:`claim_head`), so the agent sees
  "you took #n" first and then every message in order, whichever of the claim and the
  customer's message committed first.
* Backoff (:func:`retry_delay`, pure): 429 waits exactly ``retry_after``; 5xx and network
  errors back off exponentially up to a cap, until a horizon; 400/403 are permanent.
* Leases. A claimed row is ``sending`` with ``next_at`` as its lease: a process that dies
  mid-send leaves it to be sent again once the lease ends (at-least-once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.models import (
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

KIND_COPY = "copy"
KIND_TEXT = "text"
KIND_GATE = "gate"  # a claim's marker: relays wait for the hand-over (never sent)
LINK_RELAY = "relay"
LINK_HEADER = "header"

# Parts of an album arrive as separate updates within a fraction of a second.
ALBUM_HOLD_SECONDS = 1.0
# A claimed row belongs to its sender this long (longer than one API call may take).
LEASE_SECONDS = 30.0
# A relay waiting for its hand-over looks again this often (sweep) while it waits.
GATE_RECHECK_SECONDS = 5.0
# A claim whose hand-over never came (the process died in between) stops holding the
# customer's messages back after this long: they go to the holder without the briefing.
GATE_GRACE_SECONDS = 30.0
# Telegram's limit on message ids in one copyMessages call.
COPY_LIMIT = 100

# Errors that no retry will fix: the request is wrong, the chat is gone or blocks the bot.
PERMANENT_CODES = frozenset({400, 401, 403, 404})


# --- backoff (pure) ---------------------------------------------------------------------


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


# --- enqueueing (inside the caller's transaction) -----------------------------------------


def _ids(raw: str | None) -> list[int]:
    return [int(i) for i in json.loads(raw)] if raw else []


async def _copy(
    session: AsyncSession,
    conversation_id: int,
    direction: str,
    *,
    chat_id: int | None,
    agent_id: int | None,
    from_chat_id: int,
    message_ids: list[int],
    media_group_id: str | None,
    link_kind: str | None,
    now: datetime,
    hold: float,
) -> int:
    if media_group_id is not None:
        # Another part of an album whose row has not been claimed yet: join it.
        row = (
            await session.execute(
                select(Delivery.id, Delivery.message_ids)
                .where(
                    Delivery.conversation_id == conversation_id,
                    Delivery.direction == direction,
                    Delivery.status == DELIVERY_PENDING,
                    Delivery.media_group_id == media_group_id,
                    Delivery.from_chat_id == from_chat_id,
                )
                .order_by(Delivery.id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            merged = sorted(set(_ids(row.message_ids)) | set(message_ids))
            if len(merged) <= COPY_LIMIT:
                joined = (
                    await session.execute(
                        update(Delivery)
                        .where(Delivery.id == row.id, Delivery.status == DELIVERY_PENDING)
                        .values(
                            message_ids=json.dumps(merged),
                            next_at=now + timedelta(seconds=hold),
                        )
                        .returning(Delivery.id)
                    )
                ).scalar_one_or_none()
                if joined is not None:
                    return int(joined)
    held = hold if media_group_id is not None else 0.0
    return int(
        (
            await session.execute(
                insert(Delivery)
                .values(
                    conversation_id=conversation_id,
                    direction=direction,
                    agent_id=agent_id,
                    chat_id=chat_id,
                    kind=KIND_COPY,
                    from_chat_id=from_chat_id,
                    message_ids=json.dumps(message_ids),
                    media_group_id=media_group_id,
                    link_kind=link_kind,
                    status=DELIVERY_PENDING,
                    attempts=0,
                    next_at=now + timedelta(seconds=held),
                    created_at=now,
                )
                .returning(Delivery.id)
            )
        ).scalar_one()
    )


async def to_agent(
    session: AsyncSession,
    conversation_id: int,
    *,
    from_chat_id: int,
    message_id: int,
    media_group_id: str | None = None,
    now: datetime,
    hold: float = ALBUM_HOLD_SECONDS,
) -> int:
    """A customer's message for whoever holds the conversation when it is sent."""
    return await _copy(
        session,
        conversation_id,
        TO_AGENT,
        chat_id=None,
        agent_id=None,
        from_chat_id=from_chat_id,
        message_ids=[message_id],
        media_group_id=media_group_id,
        link_kind=LINK_RELAY,
        now=now,
        hold=hold,
    )


async def to_customer(
    session: AsyncSession,
    conversation_id: int,
    chat_id: int,
    *,
    from_chat_id: int,
    message_id: int,
    media_group_id: str | None = None,
    now: datetime,
    hold: float = ALBUM_HOLD_SECONDS,
) -> int:
    """An agent's message for the customer's chat ``chat_id``."""
    return await _copy(
        session,
        conversation_id,
        TO_CUSTOMER,
        chat_id=chat_id,
        agent_id=None,
        from_chat_id=from_chat_id,
        message_ids=[message_id],
        media_group_id=media_group_id,
        link_kind=None,
        now=now,
        hold=hold,
    )


async def note_to_agent(
    session: AsyncSession,
    conversation_id: int,
    text: str,
    *,
    agent_id: int | None = None,
    link_kind: str = LINK_HEADER,
    now: datetime,
    handover_at: datetime | None = None,
) -> int:
    """A text for the agent's chat (a briefing, a survey answer): sent with sendMessage."""
    return int(
        (
            await session.execute(
                insert(Delivery)
                .values(
                    conversation_id=conversation_id,
                    direction=TO_AGENT,
                    agent_id=agent_id,
                    kind=KIND_TEXT,
                    text=text,
                    link_kind=link_kind,
                    handover_at=handover_at,
                    status=DELIVERY_PENDING,
                    attempts=0,
                    next_at=now,
                    created_at=now,
                )
                .returning(Delivery.id)
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class Briefing:
    """One item of a hand-over: a text, or copies of messages of one chat (an album, or a
    run of a transcript, kept together in one copyMessages)."""

    text: str | None = None
    from_chat_id: int | None = None
    message_ids: tuple[int, ...] = ()
    link_kind: str = LINK_RELAY


async def hand_over(
    session: AsyncSession,
    conversation_id: int,
    agent_id: int,
    assigned_at: datetime | None,
    items: list[Briefing],
    *,
    now: datetime,
) -> None:
    """Queue a won claim's briefing for ``agent_id`` and end the claim's hold.

    The customer's messages still waiting for whoever holds the conversation (queued while
    nobody did, or written between the claim and this call) stay where they are: they follow
    the briefing because :func:`claim_head` sends the current assignment's briefing
    (``handover_at``) before any of them. They are not moved (re-inserted with new ids): on
    PostgreSQL a message committing while this transaction ran would keep its older id and
    overtake the moved ones (seen as a reordered message in the scale-out benchmark).
    """
    rows: list[dict[str, object]] = []
    for item in items:
        base: dict[str, object] = {
            "conversation_id": conversation_id,
            "direction": TO_AGENT,
            "agent_id": agent_id,
            "link_kind": item.link_kind,
            "handover_at": assigned_at,
            "status": DELIVERY_PENDING,
            "attempts": 0,
            "next_at": now,
            "created_at": now,
        }
        if item.text is not None:
            rows.append({**base, "kind": KIND_TEXT, "text": item.text})
            continue
        ids = list(item.message_ids)
        for i in range(0, len(ids), COPY_LIMIT):
            rows.append(
                {
                    **base,
                    "kind": KIND_COPY,
                    "from_chat_id": item.from_chat_id,
                    "message_ids": json.dumps(ids[i : i + COPY_LIMIT]),
                }
            )
    # The claim's hold ends here: what waited follows the briefing.
    await session.execute(
        delete(Delivery).where(
            Delivery.conversation_id == conversation_id, Delivery.kind == KIND_GATE
        )
    )
    for row in rows:
        await session.execute(insert(Delivery).values(**row))


async def waiting_message_ids(session: AsyncSession, conversation_id: int) -> set[tuple[int, int]]:
    """(chat, message) pairs still waiting for whoever holds the conversation (the rows
    :func:`hand_over` moves behind the briefing)."""
    found: set[tuple[int, int]] = set()
    rows = await session.execute(
        select(Delivery.from_chat_id, Delivery.message_ids).where(
            Delivery.conversation_id == conversation_id,
            Delivery.direction == TO_AGENT,
            Delivery.agent_id.is_(None),
            Delivery.status == DELIVERY_PENDING,
        )
    )
    for chat, raw in rows.all():
        if chat is not None:
            found.update((int(chat), i) for i in _ids(raw))
    return found


# --- claiming and outcomes (the sender's side) ----------------------------------------------


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

    @property
    def idle(self) -> bool:
        return self.claimed is None and self.wait_until is None


async def hold_for_hand_over(
    session: AsyncSession, conversation_id: int, agent_id: int, *, now: datetime
) -> None:
    """In a claim's transaction: hold the customer's messages until :func:`hand_over` has
    queued the briefing (at most ``GATE_GRACE_SECONDS``, should the hand-over never come)."""
    await session.execute(
        insert(Delivery).values(
            conversation_id=conversation_id,
            direction=TO_AGENT,
            agent_id=agent_id,
            kind=KIND_GATE,
            status=DELIVERY_SENT,  # a marker, never sent
            attempts=0,
            next_at=now,
            created_at=now,
        )
    )


async def _gate_open(session: AsyncSession, conv_id: int, agent_id: int, now: datetime) -> bool:
    held = await session.scalar(
        select(
            exists().where(
                Delivery.conversation_id == conv_id,
                Delivery.kind == KIND_GATE,
                Delivery.agent_id == agent_id,
                Delivery.created_at > now - timedelta(seconds=GATE_GRACE_SECONDS),
            )
        )
    )
    return not held


async def claim_head(
    session: AsyncSession,
    conversation_id: int,
    direction: str,
    *,
    now: datetime,
    lease: float = LEASE_SECONDS,
) -> Head:
    """Claim the first unsent row of one destination if it is due and may go now.

    ``now`` is real time (the queue's timers run on it, not on the bot's clock).
    """
    head = (
        await session.execute(
            select(Delivery)
            .where(
                Delivery.conversation_id == conversation_id,
                Delivery.direction == direction,
                Delivery.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
            )
            .order_by(Delivery.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if head is None:
        return Head()
    if head.next_at > now:
        return Head(wait_until=head.next_at)
    agent_id = head.agent_id
    chat_id = head.chat_id
    relay = direction == TO_AGENT and head.agent_id is None
    if relay:
        conv = (
            await session.execute(
                select(Conversation.status, Conversation.agent_id, Conversation.assigned_at).where(
                    Conversation.id == conversation_id
                )
            )
        ).one()
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
            await session.execute(
                update(Delivery)
                .where(Delivery.id == head.id, Delivery.status == DELIVERY_PENDING)
                .values(next_at=recheck)
            )
            return Head(wait_until=recheck, gated=True)
        agent_id = conv.agent_id
        if conv.status == ASSIGNED:
            # The holder's briefing first, even if its rows were queued after this message
            # (PostgreSQL: the message's transaction took its id before the hand-over's).
            brief = (
                await session.execute(
                    select(Delivery)
                    .where(
                        Delivery.conversation_id == conversation_id,
                        Delivery.direction == TO_AGENT,
                        Delivery.agent_id == conv.agent_id,
                        Delivery.handover_at == conv.assigned_at,
                        Delivery.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
                    )
                    .order_by(Delivery.id)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if brief is not None:
                if brief.next_at > now:
                    return Head(wait_until=brief.next_at)
                head, relay, chat_id = brief, False, brief.chat_id
    if direction == TO_AGENT:
        chat_id = (
            await session.scalar(select(Agent.telegram_id).where(Agent.id == agent_id))
            if agent_id is not None
            else None
        )
    if chat_id is None:
        await fail(session, head.id, now=now, error="no chat to deliver to")
        return Head(wait_until=now)
    won = (
        await session.execute(
            update(Delivery)
            .where(
                Delivery.id == head.id,
                Delivery.status == head.status,
                Delivery.next_at == head.next_at,
            )
            .values(
                status=DELIVERY_SENDING,
                next_at=now + timedelta(seconds=lease),
                attempts=Delivery.attempts + 1,
                chat_id=chat_id,
            )
            .returning(Delivery.attempts)
        )
    ).scalar_one_or_none()
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
        )
    )


async def mark_sent(
    session: AsyncSession, row_id: int, *, now: datetime, agent_id: int | None
) -> None:
    await session.execute(
        update(Delivery)
        .where(Delivery.id == row_id)
        .values(status=DELIVERY_SENT, sent_at=now, agent_id=agent_id, error=None)
    )


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


async def fail(session: AsyncSession, row_id: int, *, now: datetime, error: str) -> None:
    await session.execute(
        update(Delivery)
        .where(Delivery.id == row_id)
        .values(status=DELIVERY_FAILED, sent_at=None, next_at=now, error=error[:1000])
    )


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
