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
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store import direct
from routing.store.models import DELIVERY_PENDING, DELIVERY_SENT, TO_AGENT, TO_CUSTOMER, Delivery

KIND_COPY = "copy"
KIND_TEXT = "text"
KIND_GATE = "gate"  # a claim's marker: relays wait for the hand-over (never sent)
LINK_RELAY = "relay"
LINK_HEADER = "header"

# Parts of an album arrive as separate updates within a fraction of a second.
ALBUM_HOLD_SECONDS = 1.0
# Telegram's limit on message ids in one copyMessages call.
COPY_LIMIT = 100


# --- backoff (pure) ---------------------------------------------------------------------


# --- enqueueing (inside the caller's transaction) -----------------------------------------


def _ids(raw: str | None) -> list[int]:
    return [int(i) for i in json.loads(raw)] if raw else []


# Prebuilt and run on the session's driver connection (routing/store/direct.py): every relay,
# both ways, queues one row.
_QUEUE = direct.Statement(
    insert(Delivery)
    .values(
        conversation_id=bindparam("v_conv"),
        direction=bindparam("v_direction"),
        agent_id=bindparam("v_agent"),
        chat_id=bindparam("v_chat"),
        kind=bindparam("v_kind"),
        from_chat_id=bindparam("v_from"),
        message_ids=bindparam("v_ids"),
        media_group_id=bindparam("v_group"),
        link_kind=bindparam("v_link"),
        status=DELIVERY_PENDING,
        attempts=0,
        next_at=bindparam("v_next", type_=Delivery.next_at.type),
        created_at=bindparam("v_at", type_=Delivery.created_at.type),
    )
    .returning(Delivery.id)
)


def to_agent_after(stored: Any, *, its_chat: bool = False) -> Any:
    """PostgreSQL: :func:`to_agent` of a message that is not part of an album, as a part of
    one statement (a data-modifying CTE; bot/handlers/customer/human.py composes it): queued
    only if ``stored`` (the CTE of the message's transcript row) has a row. The same row
    ``_QUEUE`` writes: ``v_conv``, ``v_from``, ``v_ids`` and ``v_next`` (also its
    ``created_at``) are its parameters. ``its_chat``: the chat is the transcript row's
    (``stored.c.conversation_id``: a chat opened in the same statement), not ``v_conv``."""
    return _queued_after(
        stored, TO_AGENT, None, LINK_RELAY, conv=stored.c.conversation_id if its_chat else None
    )


def to_customer_after(stored: Any) -> Any:
    """PostgreSQL: :func:`to_customer` of a message that is not part of an album, as a part
    of one statement (bot/handlers/agent.py composes it), queued only if ``stored`` (the CTE
    of the message's transcript row) has a row. Parameters: ``v_conv``, ``v_to`` (the
    customer's chat), ``v_from``, ``v_ids`` and ``v_next`` (also its ``created_at``)."""
    return _queued_after(stored, TO_CUSTOMER, "v_to", None)


def _queued_after(
    stored: Any, direction: str, chat: str | None, link_kind: str | None, *, conv: Any = None
) -> Any:
    # The row _copy queues for one message (``chat``: the parameter of its chat, or None),
    # from a SELECT that has a row only if ``stored`` has one.
    d = Delivery
    return (
        insert(d)
        .from_select(
            ["conversation_id", "direction", "agent_id", "chat_id", "kind", "from_chat_id",
             "message_ids", "media_group_id", "link_kind", "status", "attempts", "next_at",
             "created_at"],
            select(
                bindparam("v_conv", type_=d.conversation_id.type) if conv is None else conv,
                literal(direction, type_=d.direction.type),
                literal(None, type_=d.agent_id.type),
                literal(None, type_=d.chat_id.type) if chat is None
                else bindparam(chat, type_=d.chat_id.type),
                literal(KIND_COPY, type_=d.kind.type),
                bindparam("v_from", type_=d.from_chat_id.type),
                bindparam("v_ids", type_=d.message_ids.type),
                literal(None, type_=d.media_group_id.type),
                literal(link_kind, type_=d.link_kind.type),
                literal(DELIVERY_PENDING, type_=d.status.type),
                literal(0, type_=d.attempts.type),
                bindparam("v_next", type_=d.next_at.type),
                bindparam("v_next", type_=d.created_at.type),
            ).where(exists(select(stored.c.id))),
        )
        .returning(d.id)
        .cte("queued")
    )  # fmt: skip


async def _copy(
    session: AsyncSession | direct.Tx,
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
        assert isinstance(session, AsyncSession), "an album part is queued in a session"
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
    queued = await _QUEUE.scalar(
        session,
        {"v_conv": conversation_id, "v_direction": direction, "v_agent": agent_id,
         "v_chat": chat_id, "v_kind": KIND_COPY, "v_from": from_chat_id,
         "v_ids": json.dumps(message_ids), "v_group": media_group_id, "v_link": link_kind,
         "v_next": now + timedelta(seconds=held), "v_at": now},
    )  # fmt: skip
    return int(queued)


async def to_agent(
    session: AsyncSession | direct.Tx,
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
    session: AsyncSession | direct.Tx,
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


async def text_to_customer(
    session: AsyncSession, conversation_id: int, chat_id: int, text: str, *, now: datetime
) -> int:
    """A text the bot writes for the customer's chat ``chat_id`` on an agent's behalf (a
    canned reply): sent with sendMessage, in order with the agent's other messages."""
    return int(
        (
            await session.execute(
                insert(Delivery)
                .values(
                    conversation_id=conversation_id,
                    direction=TO_CUSTOMER,
                    chat_id=chat_id,
                    kind=KIND_TEXT,
                    text=text,
                    status=DELIVERY_PENDING,
                    attempts=0,
                    next_at=now,
                    created_at=now,
                )
                .returning(Delivery.id)
            )
        ).scalar_one()
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
            "b_conv": conversation_id,
            "b_agent": agent_id,
            "b_link": item.link_kind,
            "b_handover": assigned_at,
            "b_now": now,
            "b_kind": KIND_TEXT,
            "b_text": item.text,
            "b_from": None,
            "b_ids": None,
        }
        if item.text is not None:
            rows.append(base)
            continue
        ids = list(item.message_ids)
        for i in range(0, len(ids), COPY_LIMIT):
            rows.append(
                {
                    **base,
                    "b_kind": KIND_COPY,
                    "b_from": item.from_chat_id,
                    "b_ids": json.dumps(ids[i : i + COPY_LIMIT]),
                }
            )
    # The claim's hold ends here: what waited follows the briefing.
    await _END_HOLD.execute(session, {"e_conv": conversation_id})
    # ... at once: a message the sender found held (sending.claim_head) was put off for a
    # recheck, and as the head of the line it would hold the briefing back until then.
    # Never tried (no attempt yet), so no retry's backoff is cut short.
    await _DUE_NOW.execute(session, {"d_conv": conversation_id, "d_now": now})
    for row in rows:
        await _BRIEF.execute(session, row)


# The hand-over's statements, prebuilt (routing/store/direct.py): building them per claim
# (an INSERT's ``values(**row)`` coerces every value into a bound parameter) was a sixth of
# a claim's CPU (issue 19).
_END_HOLD = direct.Statement(
    delete(Delivery).where(
        Delivery.conversation_id == bindparam("e_conv"), Delivery.kind == KIND_GATE
    )
)
_DUE_NOW = direct.Statement(
    update(Delivery)
    .where(
        Delivery.conversation_id == bindparam("d_conv"),
        Delivery.direction == TO_AGENT,
        Delivery.agent_id.is_(None),
        Delivery.status == DELIVERY_PENDING,
        Delivery.attempts == 0,
        Delivery.next_at > bindparam("d_now", type_=Delivery.next_at.type),
    )
    .values(next_at=bindparam("d_now", type_=Delivery.next_at.type))
)
_BRIEF = direct.Statement(
    insert(Delivery).values(
        conversation_id=bindparam("b_conv"),
        direction=TO_AGENT,
        agent_id=bindparam("b_agent"),
        kind=bindparam("b_kind"),
        text=bindparam("b_text", type_=Delivery.text.type),
        from_chat_id=bindparam("b_from", type_=Delivery.from_chat_id.type),
        message_ids=bindparam("b_ids", type_=Delivery.message_ids.type),
        link_kind=bindparam("b_link", type_=Delivery.link_kind.type),
        handover_at=bindparam("b_handover", type_=Delivery.handover_at.type),
        status=DELIVERY_PENDING,
        attempts=0,
        next_at=bindparam("b_now", type_=Delivery.next_at.type),
        created_at=bindparam("b_now", type_=Delivery.created_at.type),
    )
)


async def handing_over(session: AsyncSession, conversation_id: int) -> bool:
    """Whether a claim of the conversation still waits for its :func:`hand_over` (its hold
    is in place): a crash came between the two, and the hand-over is still to do."""
    found = await session.scalar(
        select(Delivery.id)
        .where(Delivery.conversation_id == conversation_id, Delivery.kind == KIND_GATE)
        .limit(1)
    )
    return found is not None


async def waiting_message_ids(session: AsyncSession, conversation_id: int) -> set[tuple[int, int]]:
    """(chat, message) pairs still waiting for whoever holds the conversation (the rows
    :func:`hand_over` moves behind the briefing)."""
    found: set[tuple[int, int]] = set()
    for chat, raw in await _WAITING.rows(session, {"w_conv": conversation_id}):
        if chat is not None:
            found.update((int(chat), i) for i in _ids(raw))
    return found


_WAITING = direct.Statement(
    select(Delivery.from_chat_id, Delivery.message_ids).where(
        Delivery.conversation_id == bindparam("w_conv"),
        Delivery.direction == TO_AGENT,
        Delivery.agent_id.is_(None),
        Delivery.status == DELIVERY_PENDING,
    )
)


# --- claiming and outcomes (the sender's side) ----------------------------------------------


async def hold_for_hand_over(
    session: AsyncSession, conversation_id: int, agent_id: int, *, now: datetime
) -> None:
    """In a claim's transaction: hold the customer's messages until :func:`hand_over` has
    queued the briefing (at most ``GATE_GRACE_SECONDS``, should the hand-over never come)."""
    await _HOLD.execute(session, {"h_conv": conversation_id, "h_agent": agent_id, "h_now": now})


_HOLD = direct.Statement(
    insert(Delivery).values(
        conversation_id=bindparam("h_conv"),
        direction=TO_AGENT,
        agent_id=bindparam("h_agent"),
        kind=KIND_GATE,
        status=DELIVERY_SENT,  # a marker, never sent
        attempts=0,
        next_at=bindparam("h_now", type_=Delivery.next_at.type),
        created_at=bindparam("h_now", type_=Delivery.created_at.type),
    )
)
