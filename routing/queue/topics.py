"""Topics mode's records: one forum topic per customer, created exactly once; the queue
view's message; and the copies relays made, so an edit can follow its message.

Creating a topic is a Telegram call that must happen once per customer even when two
updates (or two instances) race. :func:`claim_creation` inserts the customer's row (the
primary key decides the race) and hands out a lease to one creator at a time; the creator
records the thread with :func:`created`, or gives the lease back with :func:`creation_failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.desk_models import (
    TOPIC_CLOSED,
    TOPIC_CREATING,
    TOPIC_OPEN,
    DeskBoard,
    DeskTopic,
    MessageCopy,
)

# How long a creator may take (429 waits included) before another may try.
CREATION_LEASE_SECONDS = 120.0


@dataclass(frozen=True)
class TopicClaim:
    thread_id: int | None  # the topic, once created
    state: str
    create: bool  # this caller holds the lease and must create it
    conversation_id: int | None  # the conversation whose card was posted last
    name: str | None


def _insert(session: AsyncSession) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's database."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def claim_creation(
    session: AsyncSession, customer_id: int, chat_id: int, now: datetime
) -> TopicClaim:
    """The customer's topic row, inserted if missing; ``create`` tells the one caller who
    must create the topic now (no thread yet and no live lease)."""
    ins = _insert(session)(DeskTopic).values(
        customer_id=customer_id, chat_id=chat_id, state=TOPIC_CREATING, created_at=now
    )
    await session.execute(ins.on_conflict_do_nothing(index_elements=["customer_id"]))
    won = (
        await session.execute(
            update(DeskTopic)
            .where(
                DeskTopic.customer_id == customer_id,
                DeskTopic.thread_id.is_(None),
                or_(DeskTopic.creating_until.is_(None), DeskTopic.creating_until < now),
            )
            .values(creating_until=now + timedelta(seconds=CREATION_LEASE_SECONDS))
            .returning(DeskTopic.customer_id)
        )
    ).scalar_one_or_none()
    row = await get(session, customer_id)
    assert row is not None
    return TopicClaim(row.thread_id, row.state, won is not None, row.conversation_id, row.name)


async def get(session: AsyncSession, customer_id: int) -> DeskTopic | None:
    return (
        await session.execute(
            select(DeskTopic)
            .where(DeskTopic.customer_id == customer_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def created(session: AsyncSession, customer_id: int, thread_id: int, name: str) -> None:
    await session.execute(
        update(DeskTopic)
        .where(DeskTopic.customer_id == customer_id)
        .values(thread_id=thread_id, name=name, state=TOPIC_OPEN, creating_until=None)
    )


async def creation_failed(session: AsyncSession, customer_id: int) -> None:
    """Give the lease back (a refusal that is not a flood wait): the next update tries."""
    await session.execute(
        update(DeskTopic)
        .where(DeskTopic.customer_id == customer_id, DeskTopic.thread_id.is_(None))
        .values(creating_until=None)
    )


async def set_state(
    session: AsyncSession,
    customer_id: int,
    state: str,
    *,
    name: str | None = None,
    conversation_id: int | None = None,
) -> None:
    values: dict[str, object] = {"state": state}
    if name is not None:
        values["name"] = name
    if conversation_id is not None:
        values["conversation_id"] = conversation_id
    await session.execute(
        update(DeskTopic).where(DeskTopic.customer_id == customer_id).values(**values)
    )


async def mark_card(session: AsyncSession, customer_id: int, conversation_id: int) -> bool:
    """Whether this call is the one to post ``conversation_id``'s card (once per chat)."""
    done = (
        await session.execute(
            update(DeskTopic)
            .where(
                DeskTopic.customer_id == customer_id,
                or_(
                    DeskTopic.conversation_id.is_(None),
                    DeskTopic.conversation_id != conversation_id,
                ),
            )
            .values(conversation_id=conversation_id)
            .returning(DeskTopic.customer_id)
        )
    ).scalar_one_or_none()
    return done is not None


async def customer_of_thread(session: AsyncSession, chat_id: int, thread_id: int) -> int | None:
    found = await session.scalar(
        select(DeskTopic.customer_id).where(
            DeskTopic.chat_id == chat_id, DeskTopic.thread_id == thread_id
        )
    )
    return int(found) if found is not None else None


async def thread_of(session: AsyncSession, customer_id: int) -> int | None:
    found = await session.scalar(
        select(DeskTopic.thread_id).where(DeskTopic.customer_id == customer_id)
    )
    return int(found) if found is not None else None


# --- the queue view -------------------------------------------------------------------


async def board(session: AsyncSession, chat_id: int) -> DeskBoard | None:
    return await session.get(DeskBoard, chat_id, populate_existing=True)


async def set_board(session: AsyncSession, chat_id: int, message_id: int | None, text: str) -> None:
    row = await session.get(DeskBoard, chat_id)
    if row is None:
        session.add(DeskBoard(chat_id=chat_id, message_id=message_id, text=text))
    else:
        row.message_id, row.text = message_id, text
    await session.flush()


# --- copies -----------------------------------------------------------------------------


async def record_copies(
    session: AsyncSession,
    src_chat_id: int,
    src_ids: list[int],
    dst_chat_id: int,
    dst_ids: list[int],
) -> None:
    """Remember where each source message went (pairs in order; extra ids are ignored)."""
    rows = [
        {"src_chat_id": src_chat_id, "src_message_id": s, "dst_chat_id": dst_chat_id,
         "dst_message_id": d}
        for s, d in zip(src_ids, dst_ids, strict=False)
    ]  # fmt: skip
    if not rows:
        return
    ins = _insert(session)(MessageCopy).values(rows)
    await session.execute(ins.on_conflict_do_nothing())


async def copy_of(
    session: AsyncSession, src_chat_id: int, src_message_id: int, dst_chat_id: int | None = None
) -> tuple[int, int] | None:
    """(destination chat, message) of a relayed message's copy, if any."""
    query = select(MessageCopy.dst_chat_id, MessageCopy.dst_message_id).where(
        MessageCopy.src_chat_id == src_chat_id, MessageCopy.src_message_id == src_message_id
    )
    if dst_chat_id is not None:
        query = query.where(MessageCopy.dst_chat_id == dst_chat_id)
    row = (await session.execute(query.limit(1))).first()
    return (int(row[0]), int(row[1])) if row is not None else None


async def copied_already(
    session: AsyncSession, src_chat_id: int, src_ids: list[int], dst_chat_id: int
) -> set[int]:
    found = await session.execute(
        select(MessageCopy.src_message_id).where(
            and_(
                MessageCopy.src_chat_id == src_chat_id,
                MessageCopy.src_message_id.in_(src_ids),
                MessageCopy.dst_chat_id == dst_chat_id,
            )
        )
    )
    return {int(i) for i in found.scalars()}


__all__ = [
    "TOPIC_CLOSED",
    "TOPIC_CREATING",
    "TOPIC_OPEN",
    "TopicClaim",
    "board",
    "claim_creation",
    "copied_already",
    "copy_of",
    "created",
    "creation_failed",
    "customer_of_thread",
    "mark_card",
    "record_copies",
    "set_board",
    "set_state",
    "thread_of",
]
