"""Conversation lifecycle: open, transcript, agent-side addressing, close."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from routing.policy.root import Policy
from routing.queue.priority import effective_rank, queue_key_at
from routing.store import direct, lane
from routing.store.models import (
    ASSIGNED,
    CLOSED,
    OPEN_STATUSES,
    QUEUED,
    Agent,
    Conversation,
    Customer,
    Message,
    MessageLink,
    Survey,
    open_chat_of,
    open_chats_of,
)

# Why a conversation entered the human queue.
ORIGIN_VIP = "human_first"
ORIGIN_REQUEST = "customer_request"
# A transcript entry that is a note for agents (a survey answer), not a message to copy.
CONTENT_SURVEY = "survey"
# An agent's internal note on the chat (``/note``): kept for agents, never sent to the customer.
CONTENT_NOTE = "note"


# Built once (hot paths: every chat opened, every relay addressed).
_OPEN_FOR_CUSTOMER = select(Conversation).where(open_chat_of(bindparam("customer_id")))


async def open_for_customer(session: AsyncSession, customer_id: int) -> Conversation | None:
    return (
        await session.execute(_OPEN_FOR_CUSTOMER, {"customer_id": customer_id})
    ).scalar_one_or_none()


# Conversations and customers read directly become the session's instances (direct.attach).
_CONV_KEYS, _CONV_COLS = direct.columns(Conversation, "v")
_CUSTOMER_KEYS, _CUSTOMER_COLS = direct.columns(Customer, "c")


def _insert_open(d: Any, *, spoke: bool = False) -> Any:
    # ON CONFLICT DO NOTHING on the unique open index: no row when the customer has an open
    # chat, instead of a savepoint around an INSERT that may fail. RETURNING every column:
    # the new chat becomes the session's instance without reading it back. ``spoke``: opened
    # by the customer's message, stored with it (opening_parts): "the customer spoke" then.
    table = cast(Table, Conversation.__table__)
    values: dict[str, Any] = {"last_customer_at": _AT} if spoke else {}
    return (
        d.insert(Conversation)
        .values(
            customer_id=bindparam("v_customer"),
            status=QUEUED,
            tier=bindparam("v_tier"),
            priority=bindparam("v_rank"),
            origin=bindparam("v_origin"),
            queued_at=bindparam("v_at", type_=Conversation.queued_at.type),
            queue_key=bindparam("v_key", type_=Conversation.queue_key.type),
            **values,
        )
        .on_conflict_do_nothing()
        .returning(*(table.c[p.columns[0].name] for p in sa_inspect(Conversation).column_attrs))
    )


_OPEN_NEW = direct.Statement(per_dialect=_insert_open)


def open_params(
    customer: Customer, policy: Policy, origin: str, now: datetime, priority_boost: int = 0
) -> dict[str, Any]:
    """The values a chat is opened with (``_OPEN_NEW``, :func:`opening_parts`)."""
    rank = effective_rank(policy.rank(customer.tier), priority_boost)
    return {
        "v_customer": customer.id, "v_tier": customer.tier, "v_rank": rank,
        "v_origin": origin, "v_at": now,
        # Virtual arrival (routing.queue.priority): the queue's order, fixed at open like
        # the tier.
        "v_key": queue_key_at(rank, now, policy.queue.aging_outrank_seconds),
    }  # fmt: skip


async def open_conversation(
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    origin: str,
    now: datetime,
    *,
    priority_boost: int = 0,
) -> tuple[Conversation, bool]:
    """Queue a conversation for the customer, or return the one already open.

    Returns (conversation, created). The tier is frozen at open: a re-grade while waiting
    does not reorder the queue under the agents' feet. ``priority_boost`` queues it as if
    the customer's tier were that many ranks higher (service recovery).
    """
    opened = await _OPEN_NEW.first(
        session, open_params(customer, policy, origin, now, priority_boost)
    )
    if opened is None:
        # One is open already (the unique open index), maybe opened by a concurrent update.
        existing = await open_for_customer(session, customer.id)
        if existing is None:  # pragma: no cover - the index guarantees one exists
            raise RuntimeError(f"customer {customer.id}: no chat opened and none open")
        return existing, False
    return attach_opened(session, opened), True


def attach_opened(session: AsyncSession, row: Any) -> Conversation:
    """A chat just opened (``_OPEN_NEW``'s row, or a row that begins with its columns, as
    :func:`opening_parts`' statement returns) as the session's instance."""
    conv = direct.attach(session, Conversation, _CONV_KEYS, row[: len(_CONV_KEYS)])
    assert conv is not None
    return conv


async def add_message(
    session: AsyncSession,
    conv: Conversation,
    *,
    sender: str,
    content_type: str,
    text: str | None,
    file_id: str | None,
    chat_id: int,
    message_id: int,
    now: datetime,
    agent_id: int | None = None,
) -> Message:
    msg = Message(
        conversation_id=conv.id,
        sender=sender,
        agent_id=agent_id,
        content_type=content_type,
        text=text,
        file_id=file_id,
        chat_id=chat_id,
        message_id=message_id,
        created_at=now,
    )
    session.add(msg)
    if sender == "agent" and content_type == CONTENT_NOTE:
        # A note answers nobody: no first response, no silence ended; the agent is active.
        if agent_id is not None:
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_active_at=now)
            )
    elif sender == "agent":
        # First response (SLA) is the agent's first relayed message.
        if conv.first_response_at is None:
            conv.first_response_at = now
        conv.last_agent_at = now
        if agent_id is not None:
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_active_at=now)
            )
    elif sender == "customer":
        conv.last_customer_at = now
        conv.inactivity_warned_at = None
    await session.flush()
    return msg


# The relay's statements, prebuilt and run on the session's driver connection
# (routing/store/direct.py): every message of a chat, both ways, runs them.
def _insert_once(d: Any) -> Any:
    # ON CONFLICT DO NOTHING (the relay's guard, uq_messages_source): a message stored before
    # returns no id, without the savepoint an IntegrityError would need on PostgreSQL.
    return (
        d.insert(Message)
        .values(
            conversation_id=bindparam("v_conv"),
            sender=bindparam("v_sender"),
            agent_id=bindparam("v_agent"),
            content_type=bindparam("v_type"),
            text=bindparam("v_text"),
            file_id=bindparam("v_file"),
            chat_id=bindparam("v_chat"),
            message_id=bindparam("v_message"),
            created_at=bindparam("v_at", type_=Message.created_at.type),
        )
        .on_conflict_do_nothing()
        .returning(Message.id)
    )


_ADD_ONCE = direct.Statement(per_dialect=_insert_once)
_AT = bindparam("v_at", type_=Conversation.last_customer_at.type)
_CUSTOMER_SPOKE = direct.Statement(
    update(Conversation)
    .where(Conversation.id == bindparam("conv"))
    .values(last_customer_at=_AT, inactivity_warned_at=None)
)
_AGENT_SPOKE = direct.Statement(
    update(Conversation)
    .where(Conversation.id == bindparam("conv"))
    .values(first_response_at=func.coalesce(Conversation.first_response_at, _AT), last_agent_at=_AT)
)
_AGENT_ACTIVE = direct.Statement(
    update(Agent).where(Agent.id == bindparam("agent")).values(last_active_at=_AT)
)


def _written(conv: Conversation, **values: Any) -> None:
    """What a direct UPDATE wrote, on the session's instance too (as clean, loaded state):
    the caller may read it; an attribute not loaded is read from the database when used."""
    loaded = sa_inspect(conv).dict
    for name, value in values.items():
        if name in loaded:
            set_committed_value(conv, name, value)


def _stored_once(
    pg: Any, chat: Any, sender: str, agent: str | None, where: ColumnElement[bool] | None
) -> Any:
    # The transcript row _ADD_ONCE writes, into the chat of the CTE ``chat`` (``agent``: the
    # parameter of the sender's agent id, or None), as a CTE returning its id if stored.
    m = Message
    rows = select(
        chat.c.id,
        literal(sender, type_=m.sender.type),
        literal(None, type_=m.agent_id.type) if agent is None
        else bindparam(agent, type_=m.agent_id.type),
        bindparam("v_type", type_=m.content_type.type),
        bindparam("v_text", type_=m.text.type),
        bindparam("v_file", type_=m.file_id.type),
        bindparam("v_chat", type_=m.chat_id.type),
        bindparam("v_message", type_=m.message_id.type),
        bindparam("v_at", type_=m.created_at.type),
    )  # fmt: skip
    return (
        pg.insert(m)
        .from_select(
            ["conversation_id", "sender", "agent_id", "content_type", "text", "file_id",
             "chat_id", "message_id", "created_at"],
            rows if where is None else rows.where(where),
        )
        .on_conflict_do_nothing()
        .returning(m.id, m.conversation_id)
        .cte("stored")
    )  # fmt: skip


def opening_parts(pg: Any) -> tuple[Any, Any]:
    """PostgreSQL: :func:`open_conversation` of a chat the customer's message opens, and
    :func:`add_message_once` of that message, as parts of one statement (data-modifying
    CTEs; bot/handlers/customer/human.py composes them): the chat, opened only if the
    customer has none open (the unique open index) and marked "the customer spoke"; and
    the transcript row, stored into it only once (``uq_messages_source``). Parameters:
    :func:`open_params`' and ``v_type``, ``v_text``, ``v_file``, ``v_chat``, ``v_message``
    (``v_at`` is the message's time too). The transcript row's CTE returns its chat's id
    (``conversation_id``) with its own."""
    opened = _insert_open(pg, spoke=True).cte("opened")
    return opened, _stored_once(pg, opened, "customer", None, None)


def customer_message_parts(pg: Any, open_chat: Any) -> tuple[Any, Any]:
    """PostgreSQL: :func:`add_message_once` of a customer's message as two parts of one
    statement (data-modifying CTEs; the bot's relay composes them, bot/handlers/customer/
    human.py): the transcript row, stored only into ``open_chat`` (a CTE of the customer's
    open chat's id) if that is the chat ``v_conv`` and only once (``uq_messages_source``,
    as ``_ADD_ONCE``), and the chat's "customer spoke" mark (``_CUSTOMER_SPOKE``), made only
    if the row was stored. ``pg`` is ``sqlalchemy.dialects.postgresql``."""
    conv = bindparam("v_conv", type_=Message.conversation_id.type)
    stored = _stored_once(pg, open_chat, "customer", None, open_chat.c.id == conv)
    spoke = (
        update(Conversation)
        .where(Conversation.id == bindparam("v_conv"), exists(select(stored.c.id)))
        .values(last_customer_at=_AT, inactivity_warned_at=None)
        .returning(Conversation.id)
        .cte("spoke")
    )
    return stored, spoke


# The link of an agent's own message to the chat it went to: replying to it addresses the chat.
LINK_SENT = "sent"


def agent_message_parts(pg: Any, target: Any) -> tuple[Any, ...]:
    """PostgreSQL: :func:`add_message_once` of an agent's message and its :func:`link`, as
    parts of one statement (data-modifying CTEs; bot/handlers/agent.py composes them): the
    transcript row, stored only into ``target`` (a CTE of the chat's id, empty when the chat
    may not take it) and only once; then, only if it was stored, the chat's first response
    and last agent message (``_AGENT_SPOKE``), the agent's last activity (``_AGENT_ACTIVE``)
    and the link of the agent's message to the chat (kind ``sent``: replying to it later
    addresses the chat). Parameters: ``v_conv``, ``v_agent``, ``v_type``, ``v_text``,
    ``v_file``, ``v_chat`` (the agent's chat), ``v_message``, ``v_at``."""
    stored = _stored_once(pg, target, "agent", "v_agent", None)
    was_stored = exists(select(stored.c.id))
    spoke = (
        update(Conversation)
        .where(Conversation.id == bindparam("v_conv"), was_stored)
        .values(
            first_response_at=func.coalesce(Conversation.first_response_at, _AT),
            last_agent_at=_AT,
        )
        .returning(Conversation.id)
        .cte("spoke")
    )
    active = (
        update(Agent)
        .where(Agent.id == bindparam("v_agent"), was_stored)
        .values(last_active_at=_AT)
        .returning(Agent.id)
        .cte("active")
    )
    link_ = MessageLink
    linked = (
        insert(link_)
        .from_select(
            ["chat_id", "message_id", "conversation_id", "kind"],
            select(
                bindparam("v_chat", type_=link_.chat_id.type),
                bindparam("v_message", type_=link_.message_id.type),
                bindparam("v_conv", type_=link_.conversation_id.type),
                literal(LINK_SENT, type_=link_.kind.type),
            ).where(was_stored),
        )
        .returning(link_.chat_id)
        .cte("linked")
    )
    return stored, spoke, active, linked


def agent_spoke(conv: Conversation, now: datetime) -> None:
    """What :func:`agent_message_parts` wrote, on the session's instance too."""
    first = sa_inspect(conv).dict.get("first_response_at") or now
    _written(conv, first_response_at=first, last_agent_at=now)


def customer_spoke(conv: Conversation, now: datetime) -> None:
    """What :func:`customer_message_parts` wrote, on the session's instance too."""
    _written(conv, last_customer_at=now, inactivity_warned_at=None)


async def add_message_once(
    session: AsyncSession | direct.Tx,
    conv: Conversation,
    *,
    sender: str,
    content_type: str,
    text: str | None,
    file_id: str | None,
    chat_id: int,
    message_id: int,
    now: datetime,
    agent_id: int | None = None,
) -> bool:
    """Store a person's Telegram message in the transcript unless it is there already
    (what :func:`add_message` stores, and the same marks on the chat and the agent).

    Returns False for a message stored before: its update was handled before (a redelivery,
    or a crash between the relay and the inbox's "done" mark). This is the relay's guard
    (``uq_messages_source``), taken in the caller's transaction with the delivery it queues.
    """
    stored = await _ADD_ONCE.scalar(
        session,
        {"v_conv": conv.id, "v_sender": sender, "v_agent": agent_id, "v_type": content_type,
         "v_text": text, "v_file": file_id, "v_chat": chat_id, "v_message": message_id,
         "v_at": now},
    )  # fmt: skip
    if stored is None:
        return False
    if sender == "agent" and content_type != CONTENT_NOTE:
        # First response (SLA) is the agent's first relayed message. A note answers nobody:
        # no first response, no silence ended.
        await _AGENT_SPOKE.execute(session, {"conv": conv.id, "v_at": now})
        first = sa_inspect(conv).dict.get("first_response_at") or now
        _written(conv, first_response_at=first, last_agent_at=now)
    elif sender == "customer":
        await _CUSTOMER_SPOKE.execute(session, {"conv": conv.id, "v_at": now})
        _written(conv, last_customer_at=now, inactivity_warned_at=None)
    if sender == "agent" and agent_id is not None:
        await _AGENT_ACTIVE.execute(session, {"agent": agent_id, "v_at": now})
    return True


async def add_note(
    session: AsyncSession,
    conv: Conversation,
    *,
    agent_id: int,
    text: str,
    chat_id: int,
    message_id: int,
    now: datetime,
) -> bool:
    """Keep an agent's internal note in the transcript (``chat_id``/``message_id``: the
    agent's message that carried it, the redelivery guard). Nothing is queued for the
    customer. False: this message was kept before."""
    return await add_message_once(
        session,
        conv,
        sender="agent",
        agent_id=agent_id,
        content_type=CONTENT_NOTE,
        text=text,
        file_id=None,
        chat_id=chat_id,
        message_id=message_id,
        now=now,
    )


async def transcript(session: AsyncSession, conversation_id: int) -> list[Message]:
    params = {"conversation_id": conversation_id}
    return list((await session.execute(_TRANSCRIPT, params)).scalars())


# Built once: a claim's briefing asks both (routing/care/card.py says why).
_TRANSCRIPT = (
    select(Message)
    .where(Message.conversation_id == bindparam("conversation_id"))
    .order_by(Message.id)
)
_NOTIFICATIONS = select(MessageLink).where(
    MessageLink.conversation_id == bindparam("conversation_id"),
    MessageLink.kind == "notification",
)


async def link(
    session: AsyncSession | direct.Tx, chat_id: int, message_id: int, conversation_id: int,
    kind: str,
) -> None:  # fmt: skip
    # A prebuilt Core INSERT on the session's driver connection (direct.py): nothing reads the
    # row back as an object in the same session, and an agent's every relay writes one.
    _, params = link_step(chat_id, message_id, conversation_id, kind)
    await _LINK.execute(session, params)


async def link_now(
    engine: AsyncEngine, chat_id: int, message_id: int, conversation_id: int, kind: str
) -> None:
    """:func:`link` in a transaction of its own on the driver's connection (after a send)."""
    await lane.write_all(engine, [link_step(chat_id, message_id, conversation_id, kind)])


async def links_now(
    engine: AsyncEngine, links: Sequence[tuple[int, int]], conversation_id: int, kind: str
) -> None:
    """:func:`link_now` for several sent messages (``links``: chat and message ids) of one
    conversation, in one transaction, with other chats' links made at the same time
    (lane.together; on PostgreSQL one statement)."""
    await lane.together(engine).write(
        [link_step(chat, message, conversation_id, kind) for chat, message in links]
    )


_LINK_LANE = lane.Prepared(
    insert(cast(Table, MessageLink.__table__)).values(
        chat_id=bindparam("chat_id"),
        message_id=bindparam("message_id"),
        conversation_id=bindparam("conversation_id"),
        kind=bindparam("kind"),
    )
)
_LINK = _LINK_LANE  # also run inside a session's transaction (link)
_LAST_INBOUND_LANE = lane.Prepared(
    update(cast(Table, Agent.__table__))
    .where(Agent.__table__.c.id == bindparam("agent_id"))
    .values(last_inbound_conversation_id=bindparam("conversation_id"))
)


# PostgreSQL: several sends' links and last chats as one statement each, their values given
# as arrays (bot/delivery.py writes them through lane.Together).
_LINK_TABLE = cast(Table, MessageLink.__table__)
_LINK_ROWS = (
    func.unnest(
        bindparam("chat_id", type_=ARRAY(_LINK_TABLE.c.chat_id.type)),
        bindparam("message_id", type_=ARRAY(_LINK_TABLE.c.message_id.type)),
        bindparam("conversation_id", type_=ARRAY(_LINK_TABLE.c.conversation_id.type)),
        bindparam("kind", type_=ARRAY(_LINK_TABLE.c.kind.type)),
    )
    .table_valued("chat_id", "message_id", "conversation_id", "kind")
    .render_derived(name="v")
)
_LINK_MANY = lane.Prepared(
    insert(_LINK_TABLE).from_select(
        ["chat_id", "message_id", "conversation_id", "kind"], select(*_LINK_ROWS.c)
    )
)
lane.batch_as(_LINK_LANE, _LINK_MANY)
_AGENTS = cast(Table, Agent.__table__)
_LAST_ROWS = (
    func.unnest(
        bindparam("agent_id", type_=ARRAY(_AGENTS.c.id.type)),
        bindparam("conversation_id", type_=ARRAY(_AGENTS.c.last_inbound_conversation_id.type)),
    )
    .table_valued("agent_id", "conversation_id")
    .render_derived(name="v")
)
_LAST_INBOUND_MANY = lane.Prepared(
    update(_AGENTS)
    .where(_AGENTS.c.id == _LAST_ROWS.c.agent_id)
    .values(last_inbound_conversation_id=_LAST_ROWS.c.conversation_id)
)
lane.batch_as(_LAST_INBOUND_LANE, _LAST_INBOUND_MANY, key="agent_id")


def link_step(chat_id: int, message_id: int, conversation_id: int, kind: str) -> lane.Step:
    """:func:`link` as a step of a driver-level transaction (routing/store/lane.py)."""
    return _LINK_LANE, {
        "chat_id": chat_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "kind": kind,
    }


def last_inbound_step(agent_id: int, conversation_id: int) -> lane.Step:
    """The chat whose message reached the agent last (a header is due when it changes)."""
    return _LAST_INBOUND_LANE, {"agent_id": agent_id, "conversation_id": conversation_id}


async def notifications(session: AsyncSession, conversation_id: int) -> list[MessageLink]:
    params = {"conversation_id": conversation_id}
    return list((await session.execute(_NOTIFICATIONS, params)).scalars())


def header_is_due(last_inbound: int | None, open_chats: int, conversation_id: int) -> bool:
    """The rule: a header says whose messages follow when the agent holds several chats
    (``open_chats``: models.open_chats_of) and the last message relayed to them was from
    another."""
    return open_chats > 1 and last_inbound != conversation_id


# Whether a relayed message needs a header first, read before a relay to an agent whose
# claim did not read it (bot/delivery.py).
_HEADER_STATE = select(
    Agent.last_inbound_conversation_id, open_chats_of(Agent.id).correlate(Agent)
).where(Agent.id == bindparam("agent_id"))


_HEADER_STATE_D = direct.Statement(_HEADER_STATE)


async def header_needed(engine: AsyncEngine, agent_id: int, conversation_id: int) -> bool:
    """With several chats open, a header says whose messages follow; none is needed when the
    agent holds one chat or the last message relayed to them was from this one. Read before
    every relay to an agent, so on a pooled connection, not in a transaction of its own."""
    rows = await _HEADER_STATE_D.read(engine, {"agent_id": agent_id})
    row = rows[0] if rows else None
    if row is None:
        return False
    last, open_chats = row
    return header_is_due(last, open_chats, conversation_id)


# Read for every message an agent sends (which chat it is for): on the driver's connection,
# the rows made instances of the session as the ORM's loading would (routing/store/direct.py).
_AGENT_CHATS_D = direct.Statement(
    select(*_CONV_COLS, *_CUSTOMER_COLS)
    .select_from(Conversation)
    .join(Customer, Customer.id == Conversation.customer_id)
    .where(Conversation.agent_id == bindparam("agent_id"), Conversation.status == ASSIGNED)
    .order_by(Conversation.assigned_at, Conversation.id)
)


def _agent_chats_many() -> direct.Statement:
    # PostgreSQL: several agents' chats at once (agents writing at the same time).
    k = (
        func.unnest(bindparam("agent_id", type_=ARRAY(Integer)))
        .table_valued("agent_id", with_ordinality="n")
        .render_derived(name="k")
    )
    return direct.Statement(
        select(k.c.n, *_CONV_COLS, *_CUSTOMER_COLS)
        .select_from(k)
        .join(Conversation, Conversation.agent_id == k.c.agent_id)
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(Conversation.status == ASSIGNED)
        .order_by(k.c.n, Conversation.assigned_at, Conversation.id)
    )


_AGENT_CHATS_MANY = _agent_chats_many()


async def agent_chats(session: AsyncSession, agent: Agent) -> list[tuple[Conversation, Customer]]:
    """The agent's open chats, oldest assignment first."""
    # Outside a transaction it begins none (bot/handlers/agent.py reads the target first);
    # on PostgreSQL agents writing at the same time are read together (rows_gathered).
    rows = await _AGENT_CHATS_D.rows_gathered(session, {"agent_id": agent.id}, _AGENT_CHATS_MANY)
    n = len(_CONV_KEYS)
    chats = []
    for row in rows:
        conv = direct.attach(session, Conversation, _CONV_KEYS, row[:n])
        customer = direct.attach(session, Customer, _CUSTOMER_KEYS, row[n:])
        assert conv is not None and customer is not None  # an inner join
        chats.append((conv, customer))
    return chats


class TargetHow(StrEnum):
    REPLY = "reply"
    FOCUS = "focus"
    ONLY = "only"
    AMBIGUOUS = "ambiguous"
    NONE = "none"
    NOT_YOURS = "not_yours"


@dataclass(frozen=True)
class Target:
    how: TargetHow
    conversation: Conversation | None = None
    customer: Customer | None = None


# The chat a message in an agent's chat belongs to (a reply addresses it).
_LINKED_TO = direct.Statement(
    select(MessageLink.conversation_id).where(
        MessageLink.chat_id == bindparam("chat_id"),
        MessageLink.message_id == bindparam("message_id"),
    )
)


async def resolve_target(
    session: AsyncSession, agent: Agent, reply_to_message_id: int | None
) -> Target:
    """Which of the agent's chats a message (or /close) addresses.

    A reply to a relayed message wins, then the focused chat, then the agent's only chat.
    Anything else is ambiguous: sending it to a guessed customer would be worse than asking.
    """
    chats = await agent_chats(session, agent)
    by_id = {c.id: (c, cu) for c, cu in chats}
    if reply_to_message_id is not None:
        linked = await _LINKED_TO.rows_now(
            session, {"chat_id": agent.telegram_id, "message_id": reply_to_message_id}
        )
        if linked:
            if linked[0].conversation_id in by_id:
                c, cu = by_id[linked[0].conversation_id]
                return Target(TargetHow.REPLY, c, cu)
            return Target(TargetHow.NOT_YOURS)
    if agent.focus_conversation_id in by_id:
        c, cu = by_id[agent.focus_conversation_id]
        return Target(TargetHow.FOCUS, c, cu)
    if len(chats) == 1:
        c, cu = chats[0]
        return Target(TargetHow.ONLY, c, cu)
    return Target(TargetHow.AMBIGUOUS if chats else TargetHow.NONE)


async def close(
    session: AsyncSession, conv: Conversation, customer: Customer, policy: Policy, now: datetime
) -> Survey | None:
    """Close the conversation and write its CSAT survey row (the durable outbox).

    Returns the survey row, or None if the conversation was already closed (a double /close).
    """
    closed = (
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conv.id, Conversation.status.in_(OPEN_STATUSES))
            .values(status=CLOSED, closed_at=now)
            .returning(Conversation.id)
        )
    ).scalar_one_or_none()
    if closed is None:
        return None
    await session.refresh(conv)
    survey = Survey(
        kind="csat",
        customer_id=customer.id,
        conversation_id=conv.id,
        agent_id=conv.agent_id,
        created_at=now,
        due_at=now + timedelta(seconds=policy.surveys.csat.delay_seconds),
        # Not sent by then (the bot was down, quiet hours): it is too late to ask.
        expires_at=now
        + timedelta(seconds=policy.surveys.csat.delay_seconds)
        + timedelta(hours=policy.surveys.csat.expiry_hours),
        # Guests cannot be asked about a service we cannot attribute to a customer record.
        status="skipped" if customer.is_guest else "scheduled",
        reason="guest" if customer.is_guest else None,
    )
    session.add(survey)
    await session.flush()
    return survey
