"""Claims are atomic: however many agents press at once, each conversation gets one agent."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim, claim_next, waiting
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.models import ASSIGNED, QUEUED, Agent, Conversation, Customer
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _agents(db: Db, n: int) -> list[Agent]:
    async with db.sessions() as s, s.begin():
        return [
            (await add_agent(s, 1000 + i, f"agent{i}", max_chats=1000, now=NOW))[0]
            for i in range(n)
        ]


async def _customers(db: Db, tiers: list[str]) -> list[Customer]:
    async with db.sessions() as s, s.begin():
        customers = [
            Customer(external_id=f"C{i}", name=f"cust{i}", tier=t, created_at=NOW, updated_at=NOW)
            for i, t in enumerate(tiers)
        ]
        s.add_all(customers)
        await s.flush()
        return customers


async def _queue(db: Db, policy: Policy, customers: list[Customer]) -> list[int]:
    ids = []
    async with db.sessions() as s, s.begin():
        for i, c in enumerate(customers):
            conv, created = await open_conversation(
                s, c, policy, ORIGIN_REQUEST, NOW + timedelta(seconds=i)
            )
            assert created
            ids.append(conv.id)
    return ids


async def test_twenty_agents_claim_one_conversation_one_wins(db: Db, policy: Policy) -> None:
    agents = await _agents(db, 20)
    [conv_id] = await _queue(db, policy, await _customers(db, ["VIP"]))
    start = asyncio.Event()

    async def press(agent: Agent) -> tuple[bool, int | None]:
        await start.wait()
        async with db.sessions() as s, s.begin():
            r = await claim(s, conv_id, agent, NOW)
            return r.won, r.holder.id if r.holder else None

    tasks = [asyncio.create_task(press(a)) for a in agents]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    winners = [a.id for a, (won, _) in zip(agents, results, strict=True) if won]
    assert len(winners) == 1
    # Every loser is told who holds it: the one winner.
    assert {holder for _, holder in results} == {winners[0]}
    async with db.sessions() as s:
        conv = await s.get(Conversation, conv_id)
        assert conv is not None and conv.status == ASSIGNED and conv.agent_id == winners[0]


async def test_twenty_agents_next_over_a_thousand_each_claimed_once(db: Db, policy: Policy) -> None:
    agents = await _agents(db, 20)
    conv_ids = await _queue(db, policy, await _customers(db, ["C"] * 1000))
    claimed: list[tuple[int, int]] = []

    async def work(agent: Agent) -> None:
        while True:
            async with db.sessions() as s, s.begin():
                conv = await claim_next(s, agent, NOW)
            if conv is None:
                return
            assert conv.agent_id == agent.id
            claimed.append((conv.id, agent.id))

    await asyncio.gather(*(work(a) for a in agents))
    per_conv = Counter(cid for cid, _ in claimed)
    assert sorted(per_conv) == sorted(conv_ids)
    assert set(per_conv.values()) == {1}
    async with db.sessions() as s:
        left = await s.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.status == QUEUED)
        )
        assert left == 0
        owners = dict((await s.execute(select(Conversation.id, Conversation.agent_id))).all())
    assert owners == dict(claimed)
    # The work was shared, not done by one agent while the others spun.
    assert len({aid for _, aid in claimed}) > 1


async def test_next_takes_higher_tier_first_then_oldest(db: Db, policy: Policy) -> None:
    [agent] = await _agents(db, 1)
    ids = await _queue(db, policy, await _customers(db, ["C", "B", "VIP", "B", "A"]))
    order = []
    for _ in ids:
        async with db.sessions() as s, s.begin():
            conv = await claim_next(s, agent, NOW)
            assert conv is not None
            order.append(conv.id)
    # VIP, A, then the two Bs in arrival order, then C.
    assert order == [ids[2], ids[4], ids[1], ids[3], ids[0]]
    async with db.sessions() as s, s.begin():
        assert await claim_next(s, agent, NOW) is None
        assert await waiting(s, 10) == []


async def test_one_open_conversation_per_customer(db: Db, policy: Policy) -> None:
    [cust] = await _customers(db, ["VIP"])

    async def open_one() -> int:
        async with db.sessions() as s, s.begin():
            conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
            return conv.id

    ids = await asyncio.gather(*(open_one() for _ in range(10)))
    assert len(set(ids)) == 1
