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


async def test_places_and_agents_chats_asked_at_once_are_one_read_each_as_alone(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chats queued at the same time are told their places, and agents writing at the same
    time have their chats read: each answer as alone, on PostgreSQL one statement for all
    (direct.rows_gathered)."""
    from sqlalchemy import select

    from routing.queue import conversations
    from routing.queue.claims import claim_next, position
    from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
    from routing.store.models import Conversation, Customer

    await _agents(db)
    async with db.sessions() as s, s.begin():
        for i in range(6):
            cust = Customer(external_id=f"C{i}", name=f"C{i}", tier="B" if i % 2 else "VIP",
                            telegram_id=700 + i, created_at=NOW, updated_at=NOW)  # fmt: skip
            s.add(cust)
            await s.flush()
            await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        agents = list((await s.scalars(select(Agent).order_by(Agent.id))).all())
        # A0 takes two chats, A1 one, A2 none.
        for a in (agents[0], agents[0], agents[1]):
            assert await claim_next(s, a, NOW) is not None

    async def loaded(model: Any, row_id: int) -> Any:
        # Read, then asked about outside a transaction, as the desk and handlers ask.
        async with db.sessions() as s:
            obj = await s.get(model, row_id)
            assert obj is not None
            s.expunge(obj)
            return obj

    async def place(conv: Conversation) -> int:
        async with db.sessions() as s:
            return await position(s, conv)

    async def chats(agent: Agent) -> list[tuple[int, str]]:
        async with db.sessions() as s:
            return [(c.id, cu.name) for c, cu in await conversations.agent_chats(s, agent)]

    async with db.sessions() as s:
        queued = list(
            await s.scalars(select(Conversation.id).where(Conversation.status == "queued"))
        )
    assert len(queued) == 3
    convs = [await loaded(Conversation, c) for c in queued]
    people = [await loaded(Agent, a.id) for a in agents]
    places_alone = [await place(c) for c in convs]
    chats_alone = [await chats(a) for a in people]
    assert sorted(places_alone) == [1, 2, 3]
    assert [len(c) for c in chats_alone] == [2, 1, 0]
    fetched = _count_fetches(monkeypatch, db)
    places = await asyncio.gather(*(place(c) for c in convs))
    n_places = len(fetched)
    held = await asyncio.gather(*(chats(a) for a in people))
    monkeypatch.undo()
    assert places == places_alone and held == chats_alone
    if db.backend == "postgresql":
        assert n_places == 1 and len(fetched) == 2
