"""The inbox stores a getUpdates answer with one prebuilt statement (executemany with
RETURNING): every new update once, redeliveries reported as not new, payloads kept as
received, on both backends and at batch sizes beyond SQLite's bound-variable limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import func, select

from routing.store import inbox
from routing.store.models import INBOX_PENDING, InboundUpdate
from tests.conftest import Db

T = datetime(2026, 12, 2, 9, 0, 0, 654321, tzinfo=UTC)


def _raw(update_id: int) -> dict[str, object]:
    chat = {"id": 1000 + update_id % 7, "type": "private"}
    return {
        "update_id": update_id,
        "message": {"message_id": update_id, "date": 0, "chat": chat, "text": f"héllo {update_id}"},
    }


async def test_new_ids_only_and_rows_as_received(db: Db) -> None:
    first, bad = inbox.parse_batch([_raw(i) for i in range(1, 2501)])
    assert bad == []
    async with db.sessions() as s, s.begin():
        assert await inbox.store(s, first, T) == set(range(1, 2501))
    # A redelivered answer overlapping the stored ones: only the ten new ids are new.
    again, _ = inbox.parse_batch([_raw(i) for i in range(2495, 2511)])
    async with db.sessions() as s, s.begin():
        assert await inbox.store(s, again, T) == set(range(2501, 2511))
        assert await inbox.store(s, again[:1], T) == set()
    async with db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(InboundUpdate)) == 2510
        row = await s.get(InboundUpdate, 2503)
        assert row is not None
        assert (row.status, row.attempts, row.chat_id) == (INBOX_PENDING, 0, 1000 + 2503 % 7)
        assert row.received_at == T
        assert json.loads(row.payload) == _raw(2503)
