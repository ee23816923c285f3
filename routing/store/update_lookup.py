"""Who sent an update, and has it been handled before: one statement per update.

Every update needs the same three facts before a handler runs: was this update id already
handled (a redelivery), is the sender a registered agent, and which customer row is theirs.
Asked separately they were three statements and, through aiosqlite, three trips to the
driver thread on the hot path of every message; joined they are one.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from routing.store import direct, gather
from routing.store.models import (
    INBOX_DONE,
    SURVEY_COMMENT_ASKED,
    Agent,
    Conversation,
    Customer,
    InboundUpdate,
    SelfServiceSession,
    Survey,
    open_chat_of,
)


class LiveSelfService(NamedTuple):
    """The customer's latest self-service session not ended, as a step reads it
    (routing/selfservice/deflection.py)."""

    id: int
    last_at: datetime
    language: str | None
    answers: int
    searches: int
    path: str | None
    question: str | None


@dataclass(frozen=True)
class Lookup:
    seen: bool
    agent: Agent | None
    customer: Customer | None
    # The customer's open (queued or assigned) conversation, if any.
    conversation: Conversation | None = None
    # The survey whose follow-up question the customer's next text answers, if any
    # (asked since ``comment_since``); surveys/feedback.py ``awaiting_comment`` is the rule.
    awaiting_survey: int | None = None
    # The customer's self-service session not ended (None: none; only when customer is set):
    # a self-service step reads it here instead of in a statement of its own (issue 19).
    selfservice: LiveSelfService | None = None


def awaiting_comment_where(customer_id: Any, since: Any) -> tuple[ColumnElement[bool], ...]:
    """The rule for the survey whose follow-up question a customer's next text answers:
    asked, and its score given since ``since`` (the latest such one is meant)."""
    return (
        Survey.customer_id == customer_id,
        Survey.comment_state == SURVEY_COMMENT_ASKED,
        Survey.answered_at >= since,
    )


_AGENT_KEYS, _AGENT_COLS = direct.columns(Agent, "a")
_CUSTOMER_KEYS, _CUSTOMER_COLS = direct.columns(Customer, "c")
_CONV_KEYS, _CONV_COLS = direct.columns(Conversation, "v")
_S = SelfServiceSession
_LIVE_TABLE_COLS = (_S.id, _S.last_at, _S.language, _S.answers, _S.searches, _S.path, _S.question)
_LIVE_COLS = [c.label(f"s{i}") for i, c in enumerate(_LIVE_TABLE_COLS)]


def _joined(
    sender: Any, update_id: Any, since: Any, *first: Any, many: bool = False
) -> Select[Any]:
    """The lookup's columns for the senders of ``sender`` (a FROM with a ``tid`` column),
    ``first`` before them.

    ``many``: for many senders at once (the rows of ``unnest``), written so that PostgreSQL
    looks each row up by its indexes, as it does for one. Estimating ``unnest`` at a hundred
    rows, it planned the subqueries of one sender's form as hashes over every done update
    and every self-service session: a batch of 30 lookups took 3.8 ms, 30 alone 3 ms."""
    # Handled before: a redelivery of an update whose inbox row is done.
    done = and_(InboundUpdate.update_id == update_id, InboundUpdate.status == INBOX_DONE)
    if many:
        seen: Any = select(true()).where(done).limit(1).scalar_subquery().label("seen")
    else:
        seen = exists().where(done).label("seen")
    # Asked here rather than in a statement of its own for every customer text.
    awaiting = (
        select(Survey.id)
        .where(*awaiting_comment_where(Customer.id, since))
        .order_by(Survey.answered_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("awaiting_survey")
    )
    # The latest session not ended (deflection's rule for the live one; whether it went
    # quiet is the step's to decide).
    latest = (
        select(_S.id)
        .where(_S.customer_id == Customer.id, _S.outcome.is_(None))
        .order_by(_S.id.desc())
        .limit(1)
    )
    if many:
        live: Any = latest.with_only_columns(*_LIVE_TABLE_COLS).lateral("s")
        live_cols = [live.c[c.name].label(f"s{i}") for i, c in enumerate(_LIVE_TABLE_COLS)]
    else:
        live = _S
        live_cols = _LIVE_COLS
    found = (
        select(*first, seen, awaiting, *_AGENT_COLS, *_CUSTOMER_COLS, *_CONV_COLS, *live_cols)
        .select_from(sender)
        .outerjoin(Agent, and_(Agent.telegram_id == sender.c.tid, Agent.active.is_(True)))
        .outerjoin(Customer, Customer.telegram_id == sender.c.tid)
        .outerjoin(Conversation, open_chat_of(Customer.id))
    )
    if many:
        return found.outerjoin(live, true())
    # Correlated to the customer, not to the session the outer join finds by this id.
    return found.outerjoin(_S, _S.id == latest.correlate(Customer).scalar_subquery())


def _lookup_statements() -> tuple[direct.Statement, direct.Statement, direct.Statement]:
    # Built once, and run on the driver's connection (routing/store/direct.py): through the
    # ORM, executing this statement and loading its three entities cost more CPU than
    # anything else in an update (issue 19). The rows become ORM instances in the session
    # (direct.attach), as the ORM's own loading would have made them.
    update_id = bindparam("update_id", type_=BigInteger)
    sender = select(bindparam("tid", type_=BigInteger).label("tid")).subquery()
    since = bindparam("comment_since", type_=Survey.answered_at.type)
    full = _joined(sender, update_id, since)
    seen_only = select(full.selected_columns[0])
    # PostgreSQL: the lookups of several updates, their parameters given as arrays, each
    # row numbered by its update's place in them (routing/store/gather.py).
    many = (
        func.unnest(
            bindparam("update_ids", type_=ARRAY(BigInteger)),
            bindparam("tids", type_=ARRAY(BigInteger)),
            bindparam("sinces", type_=ARRAY(Survey.answered_at.type)),
        )
        .table_valued("update_id", "tid", "since", with_ordinality="n")
        .render_derived(name="k")
    )
    together = _joined(many, many.c.update_id, many.c.since, many.c.n, many=True)
    return direct.Statement(seen_only), direct.Statement(full), direct.Statement(together)


_SEEN_ONLY, _FULL, _MANY = _lookup_statements()
# After the seen flag and the survey: the agent's, the customer's, the conversation's and the
# live session's columns.
_A = 2 + len(_AGENT_KEYS)
_C = _A + len(_CUSTOMER_KEYS)
_V = _C + len(_CONV_KEYS)


class _Key(NamedTuple):
    engine: AsyncEngine
    update_id: int
    telegram_id: int | None
    since: datetime


async def _together(keys: Sequence[_Key]) -> list[Any]:
    """The rows of several lookups (PostgreSQL), in the order of ``keys``."""
    if len(keys) == 1:
        return [await _alone(keys[0])]
    rows = await _MANY.read(
        keys[0].engine,
        {
            "update_ids": [k.update_id for k in keys],
            "tids": [k.telegram_id for k in keys],
            "sinces": [k.since for k in keys],
        },
    )
    by_place = {row[0]: row[1:] for row in rows}
    return [by_place[i] for i in range(1, len(keys) + 1)]


async def _alone(key: _Key) -> Any:
    if key.telegram_id is None:
        return (await _SEEN_ONLY.read(key.engine, {"update_id": key.update_id}))[0]
    params = {"update_id": key.update_id, "tid": key.telegram_id, "comment_since": key.since}
    return (await _FULL.read(key.engine, params))[0]


# One per engine: the lookups waiting on one database go together.
_GATHERS: weakref.WeakKeyDictionary[Any, gather.Gather[_Key, Any]] = weakref.WeakKeyDictionary()


def _gather(engine: AsyncEngine) -> gather.Gather[_Key, Any]:
    found = _GATHERS.get(engine.sync_engine)
    if found is None:
        found = _GATHERS[engine.sync_engine] = gather.Gather(_together)
    return found


async def lookup(
    session: AsyncSession, update_id: int, telegram_id: int | None, comment_since: datetime
) -> Lookup:
    """The redelivery check, the sender's agent and customer rows, the customer's open
    conversation and the survey awaiting their comment, in one round trip.

    Outside a transaction (the update's first statement) it needs none of its own: one
    statement reads one consistent snapshot, on a pooled connection. On PostgreSQL the
    lookups of updates handled at the same time are then one statement (gather.py). The
    instances join ``session`` as loaded from the database."""
    if session.in_transaction():
        if telegram_id is None:
            row = await _SEEN_ONLY.first(session, {"update_id": update_id})
        else:
            params = {"update_id": update_id, "tid": telegram_id, "comment_since": comment_since}
            row = await _FULL.first(session, params)
    else:
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        key = _Key(engine, update_id, telegram_id, comment_since)
        if engine.dialect.driver == "asyncpg":
            row = await _gather(engine).ask(key)
        else:
            row = await _alone(key)
    if telegram_id is None:
        return Lookup(bool(row[0]), None, None)
    live = row[_V:]
    # Attaching begins no transaction: the handlers begin theirs as after any other read.
    return Lookup(
        bool(row[0]),
        direct.attach(session, Agent, _AGENT_KEYS, row[2:_A]),
        direct.attach(session, Customer, _CUSTOMER_KEYS, row[_A:_C]),
        direct.attach(session, Conversation, _CONV_KEYS, row[_C:_V]),
        row[1],
        None if live[0] is None else LiveSelfService(*live),
    )


async def warm_up(session: AsyncSession, now: datetime) -> None:
    """Compile the statements of :func:`lookup` before the first update needs them.

    A statement is compiled on its first execution in a process: for this joined statement
    of four tables that took about 15 ms of CPU, paid by the first message after every start
    (a VIP's page among them) unless paid here, before polling. The ids match no row."""
    await lookup(session, 0, 0, now)
    await lookup(session, 0, None, now)
