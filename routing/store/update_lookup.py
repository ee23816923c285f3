"""Who sent an update, and has it been handled before: one statement per update.

Every update needs the same three facts before a handler runs: was this update id already
handled (a redelivery), is the sender a registered agent, and which customer row is theirs.
Asked separately they were three statements and, through aiosqlite, three trips to the
driver thread on the hot path of every message; joined they are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.models import (
    INBOX_DONE,
    OPEN_STATUSES,
    Agent,
    Conversation,
    Customer,
    InboundUpdate,
)


@dataclass(frozen=True)
class Lookup:
    seen: bool
    agent: Agent | None
    customer: Customer | None
    # The customer's open (queued or assigned) conversation, if any.
    conversation: Conversation | None = None


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
    full = (
        select(seen, Agent, Customer, Conversation)
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


async def lookup(session: AsyncSession, update_id: int, telegram_id: int | None) -> Lookup:
    """The redelivery check, the sender's agent and customer rows and the customer's open
    conversation, in one round trip."""
    if telegram_id is None:
        seen = await session.scalar(_SEEN_ONLY, {"update_id": update_id})
        return Lookup(bool(seen), None, None)
    row = (await session.execute(_FULL, {"update_id": update_id, "tid": telegram_id})).one()
    return Lookup(bool(row[0]), row[1], row[2], row[3])
