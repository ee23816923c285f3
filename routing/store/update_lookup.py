"""Who sent an update, and has it been handled before: one statement per update.

Every update needs the same three facts before a handler runs: was this update id already
handled (a redelivery), is the sender a registered agent, and which customer row is theirs.
Asked separately they were three statements and, through aiosqlite, three trips to the
driver thread on the hot path of every message; joined they are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, ColumnElement, and_, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from routing.store import direct
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
_LIVE_COLS = [
    c.label(f"s{i}")
    for i, c in enumerate(
        (_S.id, _S.last_at, _S.language, _S.answers, _S.searches, _S.path, _S.question)
    )
]


def _lookup_statements() -> tuple[direct.Statement, direct.Statement]:
    # Built once, and run on the driver's connection (routing/store/direct.py): through the
    # ORM, executing this statement and loading its three entities cost more CPU than
    # anything else in an update (issue 19). The rows become ORM instances in the session
    # (direct.attach), as the ORM's own loading would have made them.
    update_id = bindparam("update_id", type_=BigInteger)
    # Handled before: a redelivery of an update whose inbox row is done.
    seen = (
        exists()
        .where(InboundUpdate.update_id == update_id, InboundUpdate.status == INBOX_DONE)
        .label("seen")
    )
    sender = select(bindparam("tid", type_=BigInteger).label("tid")).subquery()
    # Asked here rather than in a statement of its own for every customer text.
    awaiting = (
        select(Survey.id)
        .where(
            *awaiting_comment_where(
                Customer.id, bindparam("comment_since", type_=Survey.answered_at.type)
            )
        )
        .order_by(Survey.answered_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("awaiting_survey")
    )
    # The latest session not ended (deflection's rule for the live one; whether it went
    # quiet is the step's to decide).
    live = (
        select(_S.id)
        .where(_S.customer_id == Customer.id, _S.outcome.is_(None))
        .order_by(_S.id.desc())
        .limit(1)
        .correlate(Customer)  # not the session the outer join finds by this id
        .scalar_subquery()
    )
    full = (
        select(seen, awaiting, *_AGENT_COLS, *_CUSTOMER_COLS, *_CONV_COLS, *_LIVE_COLS)
        .select_from(sender)
        .outerjoin(Agent, and_(Agent.telegram_id == sender.c.tid, Agent.active.is_(True)))
        .outerjoin(Customer, Customer.telegram_id == sender.c.tid)
        .outerjoin(
            Conversation,
            open_chat_of(Customer.id),
        )
        .outerjoin(_S, _S.id == live)
    )
    return direct.Statement(select(seen)), direct.Statement(full)


_SEEN_ONLY, _FULL = _lookup_statements()


async def lookup(
    session: AsyncSession, update_id: int, telegram_id: int | None, comment_since: datetime
) -> Lookup:
    """The redelivery check, the sender's agent and customer rows, the customer's open
    conversation and the survey awaiting their comment, in one round trip.

    Outside a transaction (the update's first statement) it needs none of its own: one
    statement reads one consistent snapshot, on a pooled connection. The instances join
    ``session`` as loaded from the database."""
    params: dict[str, Any] = {"update_id": update_id}
    statement = _SEEN_ONLY
    if telegram_id is not None:
        params.update(tid=telegram_id, comment_since=comment_since)
        statement = _FULL
    if session.in_transaction():
        row = await statement.first(session, params)
    else:
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        row = (await statement.read(engine, params))[0]
    if telegram_id is None:
        return Lookup(bool(row[0]), None, None)
    a, c = 2 + len(_AGENT_KEYS), 2 + len(_AGENT_KEYS) + len(_CUSTOMER_KEYS)
    v = c + len(_CONV_KEYS)
    live = row[v:]
    # Attaching begins no transaction: the handlers begin theirs as after any other read.
    return Lookup(
        bool(row[0]),
        direct.attach(session, Agent, _AGENT_KEYS, row[2:a]),
        direct.attach(session, Customer, _CUSTOMER_KEYS, row[a:c]),
        direct.attach(session, Conversation, _CONV_KEYS, row[c:v]),
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
