"""The mean handling time behind every new chat's ETA reads the latest closed chats through
an index, not by sorting every closed chat ever (migration 0015), and from the index alone
(0017): the cost must not grow with the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from routing.policy.root import Policy
from routing.queue import estimate
from routing.store.models import CLOSED, Conversation, Customer
from tests.conftest import Db

T = datetime(2026, 12, 2, tzinfo=UTC)


async def test_latest_closed_chats_come_from_the_index(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        for i in range(120):
            c = Customer(external_id=f"E{i}", name=f"E{i}", tier="B", created_at=T, updated_at=T)
            s.add(c)
            await s.flush()
            s.add(Conversation(customer_id=c.id, status=CLOSED, tier="B", priority=2,
                               origin="customer_request", queued_at=T,
                               assigned_at=T + timedelta(minutes=i),
                               closed_at=T + timedelta(minutes=i, seconds=60 + i)))  # fmt: skip
    async with db.sessions() as s:
        # The newest 50 (handle_window) spans: 60 + i seconds for i in 70..119.
        mean = await estimate.mean_handle_seconds(s, policy)
        assert mean == sum(60 + i for i in range(70, 120)) / 50
        if db.backend != "sqlite":
            return
        window = policy.queue.position.handle_window
        stmt = (
            estimate.latest_closed()
            .params(window=window)
            .compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
        )
        plan = (await s.execute(text(f"EXPLAIN QUERY PLAN {stmt}"))).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "ix_conversations_closed" in details, details
    assert "TEMP B-TREE" not in details, details
    # The claim times too (migration 0017): no lookup into the table per closed chat.
    assert "COVERING INDEX ix_conversations_closed" in details, details
