"""The models of the agents' desk in topics mode: one forum topic per customer, the queue
view's message, and the copies a relay made (so an edit can follow its message)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from routing.store.base import Base, UtcDateTime

# desk_topics.state
TOPIC_CREATING = "creating"
TOPIC_OPEN = "open"
TOPIC_CLOSED = "closed"


class DeskTopic(Base):
    """A customer's forum topic in the staff group: one row per customer, claimed before the
    topic is created, so two racing updates create it once (``creating_until`` is the
    creator's lease; ``thread_id`` is set once Telegram made it)."""

    __tablename__ = "desk_topics"
    __table_args__ = (UniqueConstraint("chat_id", "thread_id", name="uq_desk_topics_thread"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=TOPIC_CREATING)
    name: Mapped[str | None] = mapped_column(String(128))
    creating_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The conversation whose card was posted last (a new one posts its own).
    conversation_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeskBoard(Base):
    """The queue view: one message in the staff group, edited as the queue changes."""

    __tablename__ = "desk_board"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str | None] = mapped_column(String(4096))


class MessageCopy(Base):
    """A relayed message's copy: (source chat, message) -> (destination chat, message)."""

    __tablename__ = "message_copies"

    src_chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    src_message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dst_chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dst_message_id: Mapped[int] = mapped_column(BigInteger)
