"""The model of tier announcements (``contactbot broadcast``): one row per broadcast, its
texts and figures; the messages themselves are rows of the survey outbox (``surveys``, kind
``news``, ``campaign`` = the broadcast's key). See ``surveys/broadcasts.py``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from routing.store.base import Base, UtcDateTime


class Broadcast(Base):
    """An announcement to tiers: written before its outbox rows, finished when all are."""

    __tablename__ = "broadcasts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Comma-separated tier names, in the policy's order.
    tiers: Mapped[str] = mapped_column(String(200))
    # JSON object: language -> text; ``default_language`` is always among them.
    texts: Mapped[str] = mapped_column(Text)
    default_language: Mapped[str] = mapped_column(String(16))
    # sha256 of (tiers, texts): a re-run of the same command finds its unfinished broadcast.
    digest: Mapped[str] = mapped_column(String(64))
    fire_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Rows not sent by then are not sent ("not sent in time").
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str | None] = mapped_column(String(64))
    # Every outbox row written; the figures below are set then.
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recipients: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Customers of the tiers who get no row: guests and customers without a Telegram chat.
    guests: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    no_chat: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    __table_args__ = (
        Index("ix_broadcasts_digest", "digest"),
        Index("ix_broadcasts_created_at", "created_at"),
    )
