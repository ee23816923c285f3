"""Reads every new chat's plan makes with nothing of the chat in them (the online agents and
their loads, the recent handle times): on PostgreSQL, plans made at the same time share one
execution (routing/store/direct.py ``rows_shared``), each answered by a read begun after it
asked, so each sees what was committed before (issue 19)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from routing.policy.root import Policy
from routing.queue import estimate
from routing.queue.agents import add_agent
from routing.queue.eligibility import online_slots
from routing.store.models import Agent
from tests.conftest import Db

NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)


async def _agents(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        for i in range(3):
            agent, _ = await add_agent(s, 900 + i, f"A{i}", now=NOW)
            agent.online = True


async def _slots(db: Db) -> list[tuple[int, str, int]]:
    async with db.sessions() as s:
        found = await online_slots(s)
        assert not s.in_transaction()
        return sorted((a.id, a.name, slot.load) for a, slot in found.values())


def _count_fetches(monkeypatch: pytest.MonkeyPatch, db: Db) -> list[str]:
    fetched: list[str] = []
    if db.backend == "postgresql":
        import asyncpg

        real = asyncpg.connection.Connection.fetch

        async def counting(self: Any, sql: str, *args: Any, **kw: Any) -> Any:
            fetched.append(sql)
            return await real(self, sql, *args, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, "fetch", counting)
    return fetched


async def test_plans_made_at_once_share_the_online_agents_read(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _agents(db)
    alone = await _slots(db)
    assert [name for _, name, _ in alone] == ["A0", "A1", "A2"]
    fetched = _count_fetches(monkeypatch, db)
    together = await asyncio.gather(*(_slots(db) for _ in range(5)))
    handle = await asyncio.gather(*(_handle(db, policy) for _ in range(4)))
    monkeypatch.undo()
    assert together == [alone] * 5
    assert handle == [policy.queue.position.default_handle_seconds] * 4
    if db.backend == "postgresql":
        assert len(fetched) == 2  # one read of the agents, one of the handle times


async def _handle(db: Db, policy: Policy) -> float:
    async with db.sessions() as s:
        return await estimate.mean_handle_seconds(s, policy)


async def test_a_shared_read_sees_what_was_committed_before_it_was_asked(db: Db) -> None:
    """An agent gone offline just before a plan asks is not among its agents, even while
    another plan's read of them is in flight."""
    await _agents(db)
    first = asyncio.ensure_future(_slots(db))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first read is on its way
    async with db.sessions() as s, s.begin():
        await s.execute(update(Agent).where(Agent.name == "A1").values(online=False))
    second = await _slots(db)
    assert [name for _, name, _ in await first] in (["A0", "A1", "A2"], ["A0", "A2"])
    assert [name for _, name, _ in second] == ["A0", "A2"]
