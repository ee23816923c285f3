"""Races between instances on one database (issue 14): capacity inside the claim (point 6),
and a new user's first two updates at once (point 5). Two sessions stand for two instances;
on PostgreSQL they really run at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from routing.customers.identity import ensure_customer
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import AtCapacity, claim, claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.models import ASSIGNED, Agent, Conversation, Customer
from tests.conftest import Db

NOW = datetime(2026, 11, 23, tzinfo=UTC)


async def _two_waiting(db: Db, policy: Policy, round_: int) -> tuple[int, int, int]:
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900 + round_, f"Ann{round_}", max_chats=1, now=NOW)
        agent.online = True
        ids = []
        for n in (1, 2):
            c = Customer(
                external_id=f"R{round_}-{n}", name=f"C{n}", tier="B",
                telegram_id=10_000 * round_ + n, created_at=NOW, updated_at=NOW,
            )  # fmt: skip
            s.add(c)
            await s.flush()
            conv, _ = await open_conversation(s, c, policy, ORIGIN_REQUEST, NOW)
            ids.append(conv.id)
        return agent.id, ids[0], ids[1]


async def _held(db: Db, agent_id: int) -> int:
    async with db.sessions() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.agent_id == agent_id, Conversation.status == ASSIGNED)
            )
            or 0
        )


async def _press(db: Db, agent_id: int, conv_id: int) -> bool:
    async with db.sessions() as s, s.begin():
        agent = await s.get(Agent, agent_id)
        assert agent is not None
        return (await claim(s, conv_id, agent, NOW)).won


async def _next(db: Db, agent_id: int) -> bool:
    async with db.sessions() as s, s.begin():
        agent = await s.get(Agent, agent_id)
        assert agent is not None
        try:
            return await claim_next(s, agent, NOW) is not None
        except AtCapacity:  # the other one won first
            return False


async def test_an_agent_at_one_chat_claiming_two_at_once_holds_one(db: Db, policy: Policy) -> None:
    for round_ in range(10):
        agent_id, first, second = await _two_waiting(db, policy, round_)

        won = await asyncio.gather(_press(db, agent_id, first), _press(db, agent_id, second))
        assert sum(won) == 1, f"round {round_}: {won}"
        assert await _held(db, agent_id) == 1


async def test_next_and_a_claim_at_once_stay_within_capacity(db: Db, policy: Policy) -> None:
    for round_ in range(10):
        agent_id, first, _ = await _two_waiting(db, policy, round_)

        await asyncio.gather(_press(db, agent_id, first), _next(db, agent_id))
        assert await _held(db, agent_id) == 1


async def test_a_new_users_first_two_updates_at_once_both_get_the_one_row(
    db: Db, policy: Policy
) -> None:
    async def first_update(user: int) -> int:
        async with db.sessions() as s, s.begin():
            row = await ensure_customer(s, user, name="New", language="en", policy=policy, now=NOW)
            return row.id

    for user in range(50_000, 50_010):
        a, b = await asyncio.gather(first_update(user), first_update(user))
        assert a == b
    async with db.sessions() as s:
        rows = await s.scalar(
            select(func.count()).select_from(Customer).where(Customer.telegram_id >= 50_000)
        )
    assert rows == 10
