"""Who sent an update, and has it been handled before: one statement per update.

Every update needs the same three facts before a handler runs: was this update id already
handled (a redelivery), is the sender a registered agent, and which customer row is theirs.
Asked separately they were three statements and, through aiosqlite, three trips to the
driver thread on the hot path of every message; joined they are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.models import (
    INBOX_DONE,
    OPEN_STATUSES,
    SURVEY_COMMENT_ASKED,
    Agent,
    Conversation,
    Customer,
    InboundUpdate,
    Survey,
)


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


def awaiting_comment_where(customer_id: Any, since: Any) -> tuple[ColumnElement[bool], ...]:
    """The rule for the survey whose follow-up question a customer's next text answers:
    asked, and its score given since ``since`` (the latest such one is meant)."""
    return (
        Survey.customer_id == customer_id,
        Survey.comment_state == SURVEY_COMMENT_ASKED,
        Survey.answered_at >= since,
    )


def _lookup_statements() -> tuple[Any, Any]:
    # Built once: constructing the joined statement and its cache key on every update cost
    # more CPU than running it.
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
    full = (
        select(seen, Agent, Customer, Conversation, awaiting)
        .select_from(sender)
        .outerjoin(Agent, and_(Agent.telegram_id == sender.c.tid, Agent.active.is_(True)))
        .outerjoin(Customer, Customer.telegram_id == sender.c.tid)
        .outerjoin(
            Conversation,
            and_(
                Conversation.customer_id == Customer.id,
                Conversation.status.in_(OPEN_STATUSES),
            ),
        )
    )
    return select(seen), full


_SEEN_ONLY, _FULL = _lookup_statements()


async def lookup(
    session: AsyncSession, update_id: int, telegram_id: int | None, comment_since: datetime
) -> Lookup:
    """The redelivery check, the sender's agent and customer rows, the customer's open
    conversation and the survey awaiting their comment, in one round trip."""
    if telegram_id is None:
        seen = await session.scalar(_SEEN_ONLY, {"update_id": update_id})
        return Lookup(bool(seen), None, None)
    row = (
        await session.execute(
            _FULL, {"update_id": update_id, "tid": telegram_id, "comment_since": comment_since}
        )
    ).one()
    return Lookup(bool(row[0]), row[1], row[2], row[3], row[4])


async def warm_up(session: AsyncSession, now: datetime) -> None:
    """Compile the statements of :func:`lookup` before the first update needs them.

    SQLAlchemy compiles a statement on its first execution in a process and caches it: for
    this joined statement of four entities that is about 15 ms of CPU, paid by the first
    message after every start (a VIP's page among them) unless paid here, before polling.
    The ids match no row."""
    await lookup(session, 0, 0, now)
    await lookup(session, 0, None, now)
