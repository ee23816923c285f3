"""Sending the delivery queue: claiming a destination's head row under a lease, the
hand-over gate, backoff (pure), and recording each send's outcome.

The rows are written by :mod:`routing.delivery.enqueue.enqueue`; the Telegram side (bot/delivery.py)
calls these to send them in order, each at least once and, with the relay guard, never twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Select, Table, bindparam, exists, func, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from routing.delivery.enqueue import KIND_GATE, _ids
from routing.store import direct, gather, lane
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
    open_chats_of,
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
    # A relay's holder as the claim read them: the chat whose message reached them last
    # and how many chats they hold (whether a header is due, conversations.header_needed).
    holder_state: tuple[int | None, int] | None = None


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


def _head(conversation_id: Any, direction: Any) -> Select[Any]:
    return (
        select(_TABLE)
        .where(
            _TABLE.c.conversation_id == conversation_id,
            _TABLE.c.direction == direction,
            _TABLE.c.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
        )
        .order_by(_TABLE.c.id)
        .limit(2)
    )


_HEAD = _head(bindparam("conversation_id"), bindparam("direction"))


# The agent's Telegram chat, for a row to a named agent (a briefing, a transfer's notes).
_AGENT_CHAT = select(Agent.telegram_id).where(Agent.id == bindparam("agent_id"))
# Run on the session's driver connection (routing/store/direct.py): a claim's statements were
# most of a relay's database cost through the session.
_HEAD_D, _AGENT_CHAT_D = direct.Statement(_HEAD), direct.Statement(_AGENT_CHAT)


def _head_to_agent(conversation_id: Any = None, since: Any = None) -> Select[Any]:
    """The first two unsent rows to an agent (``_HEAD``), each with what a relay's claim
    needs to know of its chat: the chat's state and its holder's Telegram chat; whether the
    holder's gate is held (a gate row for them queued within the grace, ``since``); and the
    id and time of the holder's first unsent briefing row (queued for them at the hand-over,
    ``assigned_at``). Asked one after the other they were four statements per relayed
    message, each a round trip on PostgreSQL (issue 19); joined they are one, read in one
    snapshot. The joined facts are used only for a relay (a row with no agent)."""
    d, b, b2, gate = _TABLE, _TABLE.alias("b"), _TABLE.alias("b2"), _TABLE.alias("g")
    first_brief = (
        select(b2.c.id)
        .where(
            b2.c.conversation_id == Conversation.id,
            b2.c.direction == TO_AGENT,
            b2.c.agent_id == Conversation.agent_id,
            b2.c.handover_at == Conversation.assigned_at,
            b2.c.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
        )
        .order_by(b2.c.id)
        .limit(1)
        .scalar_subquery()
    )
    gate_held = (
        exists()
        .where(
            gate.c.conversation_id == Conversation.id,
            gate.c.kind == KIND_GATE,
            gate.c.agent_id == Conversation.agent_id,
            gate.c.created_at
            > (since if since is not None else bindparam("since", type_=Delivery.created_at.type)),
        )
        # ``since`` may be a column of the rows this is read for (_claim_first_many).
        .correlate_except(gate)
    )
    return (
        select(
            d,
            Conversation.status.label("c_status"),
            Conversation.agent_id.label("c_agent_id"),
            Agent.telegram_id.label("c_telegram_id"),
            gate_held.label("c_gate_held"),
            # Whether a header is due before the relay (bot/delivery.py), read here rather
            # than in a statement of its own before every relay to an agent (issue 19).
            Agent.last_inbound_conversation_id.label("c_last_inbound"),
            open_chats_of(Agent.id).label("c_open_chats"),
            # The briefing's id and time only: the row itself is read when it is due, once
            # per hand-over (a row's columns converted on every relay cost more than that).
            b.c.id.label("b_id"),
            b.c.next_at.label("b_next_at"),
        )
        .join(Conversation, Conversation.id == d.c.conversation_id)
        .outerjoin(Agent, Agent.id == Conversation.agent_id)
        .outerjoin(b, b.c.id == first_brief)
        .where(
            d.c.conversation_id
            == (conversation_id if conversation_id is not None else bindparam("conversation_id")),
            d.c.direction == TO_AGENT,
            d.c.status.in_((DELIVERY_PENDING, DELIVERY_SENDING)),
        )
        .order_by(d.c.id)
        .limit(2)
    )


_HEAD_TO_AGENT = direct.Statement(_head_to_agent())


def _claim_first(head: Select[Any], *, to_agent: bool) -> direct.Statement:
    """PostgreSQL: ``head``'s rows, the first claimed in the same statement when it may go
    now with nothing else to decide (``won``: its attempts, NULL when not claimed).

    A claim was two round trips, the read and the conditional UPDATE, on every relayed
    message (issue 19). One statement decides the common case: a row to a customer due
    now; a customer's message due now for the agent who holds the chat, with their gate
    open and no briefing of theirs queued. Any other head (a wait, a gate, a briefing, a
    row to a named agent, a closed chat) is decided by :func:`claim_head` from the rows this
    returned, as before. The UPDATE is conditional on the status and time it read, as
    ``_CLAIM``: under a concurrent claim PostgreSQL rechecks them on the row's newest version
    and the loser claims nothing. When it claims nothing it changed nothing (a read)."""
    h = head.cte("h")
    first = select(func.min(h.c.id)).scalar_subquery()
    now = bindparam("now", type_=Delivery.next_at.type)
    lease_until = bindparam("lease_until", type_=Delivery.next_at.type)
    claimed = _claim_due(h, first, now, lease_until, to_agent=to_agent)
    return direct.Statement(
        select(h, claimed.c.won)
        .select_from(h.outerjoin(claimed, claimed.c.won_id == h.c.id))
        .order_by(h.c.id)
    )


def _claim_due(h: Any, first: Any, now: Any, lease_until: Any, *, to_agent: bool) -> Any:
    """The conditional claim of ``h``'s head row (``first``: its id) when it may go now
    with nothing else to decide, as a CTE returning ``won_id`` and ``won`` (its attempts):
    the rule :func:`_claim_first` and :func:`_claim_first_many` share."""
    due = [
        _TABLE.c.id == h.c.id,
        h.c.id == first,
        _TABLE.c.status == h.c.status,
        _TABLE.c.next_at == h.c.next_at,
        h.c.next_at <= now,
    ]
    if to_agent:
        due += [
            h.c.agent_id.is_(None),
            h.c.c_status == ASSIGNED,
            h.c.c_agent_id.is_not(None),
            h.c.c_telegram_id.is_not(None),
            ~h.c.c_gate_held,
            h.c.b_id.is_(None),
        ]
        chat = h.c.c_telegram_id
    else:
        due.append(h.c.chat_id.is_not(None))
        chat = h.c.chat_id
    return (
        update(_TABLE)
        .where(*due)
        .values(
            status=DELIVERY_SENDING,
            next_at=lease_until,
            attempts=_TABLE.c.attempts + 1,
            chat_id=chat,
        )
        .returning(_TABLE.c.id.label("won_id"), _TABLE.c.attempts.label("won"))
        .cte("c")
    )


_CLAIM_FIRST_TO_AGENT = _claim_first(_head_to_agent(), to_agent=True)
_CLAIM_FIRST = _claim_first(_HEAD, to_agent=False)


def _claim_first_many(*, to_agent: bool) -> direct.Statement:
    """:func:`_claim_first` for several destinations at once (PostgreSQL), their parameters
    given as arrays: each destination's first two rows (numbered ``n`` by its place in the
    arrays), its first claimed by the same rule. Relays to different chats that are claimed
    at the same time are one statement, where each was a round trip and a commit of its own
    (issue 19). The caller asks each destination at most once per statement: a row is
    claimed by one part of it at most."""
    side = "since" if to_agent else "direction"
    side_type = Delivery.created_at.type if to_agent else _TABLE.c.direction.type
    k = (
        func.unnest(
            bindparam("conversation_ids", type_=ARRAY(_TABLE.c.conversation_id.type)),
            bindparam("sides", type_=ARRAY(side_type)),
            bindparam("nows", type_=ARRAY(Delivery.next_at.type)),
            bindparam("leases", type_=ARRAY(Delivery.next_at.type)),
        )
        .table_valued("conversation_id", side, "now", "lease_until", with_ordinality="n")
        .render_derived(name="k")
    )
    rows = (
        _head_to_agent(k.c.conversation_id, k.c[side])
        if to_agent
        else _head(k.c.conversation_id, k.c[side])
    ).lateral("x")
    h = (
        select(k.c.n, k.c.now.label("k_now"), k.c.lease_until.label("k_lease"), rows)
        .select_from(k.join(rows, true()))
        .cte("h")
    )
    h2 = h.alias("h2")
    first = select(func.min(h2.c.id)).where(h2.c.n == h.c.n).scalar_subquery()
    claimed = _claim_due(h, first, h.c.k_now, h.c.k_lease, to_agent=to_agent)
    return direct.Statement(
        select(h, claimed.c.won)
        .select_from(h.outerjoin(claimed, claimed.c.won_id == h.c.id))
        .order_by(h.c.n, h.c.id)
    )


_CLAIM_MANY_TO_AGENT = _claim_first_many(to_agent=True)
_CLAIM_MANY = _claim_first_many(to_agent=False)


class _Ask(NamedTuple):
    conversation_id: int
    side: Any  # the direction, or for a relay to an agent the gate's grace (``since``)
    now: datetime
    lease_until: datetime


def _claims(engine: AsyncEngine, to_agent: bool) -> gather.Gather[_Ask, list[Any]]:
    """The claims waiting on ``engine``, one way: asked together (gather.py)."""
    ways = _GATHERED.get(engine.sync_engine)
    if ways is None:
        ways = _GATHERED[engine.sync_engine] = {}
    found = ways.get(to_agent)
    if found is None:
        many = _CLAIM_MANY_TO_AGENT if to_agent else _CLAIM_MANY

        async def run(asks: Sequence[_Ask]) -> list[list[Any]]:
            if len(asks) == 1 or len({a.conversation_id for a in asks}) < len(asks):
                # Alone, or one destination twice (two drains of one process never claim
                # one way of one chat at once; this is not that): one statement each.
                return [await _claim_alone(engine, to_agent, a) for a in asks]
            found_rows = await many.read(
                engine,
                {
                    "conversation_ids": [a.conversation_id for a in asks],
                    "sides": [a.side for a in asks],
                    "nows": [a.now for a in asks],
                    "leases": [a.lease_until for a in asks],
                },
            )
            by_ask: list[list[Any]] = [[] for _ in asks]
            for row in found_rows:
                by_ask[row.n - 1].append(row)
            return by_ask

        found = ways[to_agent] = gather.Gather(run)
    return found


# Per engine: the claims waiting on one database, each way.
_GATHERED: weakref.WeakKeyDictionary[Any, dict[bool, gather.Gather[_Ask, list[Any]]]] = (
    weakref.WeakKeyDictionary()
)


async def _claim_alone(engine: AsyncEngine, to_agent: bool, a: _Ask) -> list[Any]:
    params: dict[str, object] = {
        "conversation_id": a.conversation_id,
        "since" if to_agent else "direction": a.side,
        "now": a.now,
        "lease_until": a.lease_until,
    }
    return await (_CLAIM_FIRST_TO_AGENT if to_agent else _CLAIM_FIRST).read(engine, params)


def claimed_now(read: list[Any], conversation_id: int, direction: str) -> Head | None:
    """The claim :func:`claim_first` made, if it made one."""
    if read and read[0].won is not None:
        return _claimed_first(read, conversation_id, direction)
    return None


async def claim_first(
    engine: AsyncEngine,
    conversation_id: int,
    direction: str,
    *,
    now: datetime,
    lease: float = LEASE_SECONDS,
) -> list[Any]:
    """PostgreSQL, outside any transaction: :func:`_claim_first`'s rows for one destination
    (its first claimed when it may go now), asked together with the other destinations
    claimed at the same time. Give them to :func:`claim_head` as ``read``: it returns the
    claim, or decides any other head from them as it always did."""
    to_agent = direction == TO_AGENT
    side: Any = now - timedelta(seconds=GATE_GRACE_SECONDS) if to_agent else direction
    ask = _Ask(conversation_id, side, now, now + timedelta(seconds=lease))
    return await _claims(engine, to_agent).ask(ask)


_ROW = direct.Statement(select(_TABLE).where(_TABLE.c.id == bindparam("row_id")))


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


async def claim_head(
    session: AsyncSession | direct.Tx,
    conversation_id: int,
    direction: str,
    *,
    now: datetime,
    lease: float = LEASE_SECONDS,
    read: list[Any] | None = None,
) -> Head:
    """Claim the first unsent row of one destination if it is due and may go now.

    ``now`` is real time (the queue's timers run on it, not on the bot's clock). ``read``:
    the destination's rows as :func:`claim_first` read them at ``now`` (PostgreSQL).
    """
    params: dict[str, object] = {"conversation_id": conversation_id}
    if direction == TO_AGENT:
        params["since"] = now - timedelta(seconds=GATE_GRACE_SECONDS)
    else:
        params["direction"] = direction
    if read is not None:
        first_two = read
        if first_two and first_two[0].won is not None:
            return _claimed_first(first_two, conversation_id, direction)
    elif isinstance(session, direct.Tx) and session.pg is not None:
        fused = _CLAIM_FIRST_TO_AGENT if direction == TO_AGENT else _CLAIM_FIRST
        params.update(now=now, lease_until=now + timedelta(seconds=lease))
        first_two = await fused.rows(session, params, alone=True)
        if first_two and first_two[0].won is not None:
            return _claimed_first(first_two, conversation_id, direction)
    elif direction == TO_AGENT:
        first_two = await _HEAD_TO_AGENT.rows(session, params)
    else:
        first_two = await _HEAD_D.rows(session, params)
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
        status, holder = head.c_status, head.c_agent_id
        gate = holder is not None and (
            status == CLOSED or (status == ASSIGNED and not head.c_gate_held)
        )
        if holder is None and status == CLOSED:
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
        agent_id, holder_chat = holder, head.c_telegram_id
        if status == ASSIGNED and head.b_id is not None:
            # The holder's briefing first, even if its rows were queued after this message
            # (PostgreSQL: the message's transaction took its id before the hand-over's).
            if head.b_next_at > now:
                return Head(wait_until=head.b_next_at)
            brief = await _ROW.first(session, {"row_id": head.b_id})
            assert brief is not None  # unsent rows are not deleted
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
    claimed = _claimed(head, conversation_id, direction, agent_id, chat_id, int(won), relay)
    return Head(claimed, more=more)


def _claimed(
    head: Any,
    conversation_id: int,
    direction: str,
    agent_id: int | None,
    chat_id: int,
    attempts: int,
    relay: bool,
) -> Claimed:
    """A claimed row (``head``, as read) with its destination resolved."""
    return Claimed(
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
        attempts=attempts,
        created_at=head.created_at,
        relay=relay,
        holder_state=_holder_state(head) if relay else None,
    )


def _claimed_first(rows: list[Any], conversation_id: int, direction: str) -> Head:
    """The head :func:`_claim_first` claimed: to the customer's chat, or to the holder."""
    head = rows[0]
    relay = direction == TO_AGENT
    if relay:
        agent_id, chat_id = head.c_agent_id, head.c_telegram_id
    else:
        agent_id, chat_id = head.agent_id, head.chat_id
    claimed = _claimed(head, conversation_id, direction, agent_id, chat_id, int(head.won), relay)
    return Head(claimed, more=len(rows) > 1)


def _holder_state(head: Any) -> tuple[int | None, int] | None:
    """A relay's holder as its head row read them (``_head_to_agent``)."""
    if getattr(head, "c_open_chats", None) is None:
        return None
    return head.c_last_inbound, int(head.c_open_chats)


async def mark_sent(
    session: AsyncSession, row_id: int, *, now: datetime, agent_id: int | None
) -> None:
    await session.execute(_SENT, {"row_id": row_id, "at": now, "to_agent": agent_id})


_SENT_LANE = lane.Prepared(_SENT)
# PostgreSQL: the marks of sends that end together as one statement, their values given as
# arrays (bot/delivery.py writes them through lane.Together).
_SENT_ROWS = (
    func.unnest(
        bindparam("row_id", type_=ARRAY(_TABLE.c.id.type)),
        bindparam("at", type_=ARRAY(Delivery.sent_at.type)),
        bindparam("to_agent", type_=ARRAY(_TABLE.c.agent_id.type)),
    )
    .table_valued("row_id", "at", "to_agent")
    .render_derived(name="v")
)
_SENT_MANY = lane.Prepared(
    update(_TABLE)
    .where(_TABLE.c.id == _SENT_ROWS.c.row_id)
    .values(
        status=DELIVERY_SENT,
        sent_at=_SENT_ROWS.c.at,
        agent_id=_SENT_ROWS.c.to_agent,
        error=None,
    )
)
lane.batch_as(_SENT_LANE, _SENT_MANY, key="row_id")


def sent_step(row_id: int, *, now: datetime, agent_id: int | None) -> lane.Step:
    """:func:`mark_sent` as a step of a driver-level transaction (routing/store/lane.py): the
    sender's mark after every send, with the relay's links (bot/delivery.py)."""
    return _SENT_LANE, {"row_id": row_id, "at": now, "to_agent": agent_id}


async def retry_at(
    session: AsyncSession,
    row_id: int,
    *,
    at: datetime,
    error: str,
    counted: bool = True,
    attempts: int | None = None,
) -> None:
    """Back to pending until ``at``. ``counted=False``: the claim's attempt was not a
    failure (a 429, or the chat's turn had not come), so the 5xx backoff does not grow.
    ``attempts``: only if the row is still that claim's (each claim counts an attempt), not
    one another instance made after its lease ended."""
    values: dict[str, object] = {"status": DELIVERY_PENDING, "next_at": at, "error": error[:1000]}
    if not counted:
        values["attempts"] = Delivery.attempts - 1
    mine = [] if attempts is None else [Delivery.attempts == attempts]
    await session.execute(
        update(Delivery)
        .where(Delivery.id == row_id, Delivery.status == DELIVERY_SENDING, *mine)
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
