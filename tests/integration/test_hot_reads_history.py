"""Reads on the hot paths must not cost more as the history grows: the online agents' loads
and last assignments (every chat queued, paged, claimed or offered), an agent's load (before
every relay to them), an agent's open chats (every message an agent sends), a customer's
open chat (every update's lookup, every message in a chat), and in a long conversation the
destination's first unsent message and the hand-over's marker (every send). Fixed by
migrations 0017 and 0018 and ``models.open_chat_of``.

Before, "when was each agent last given a chat" was ``max(assigned_at)`` grouped over every
conversation any agent ever held: with 500,000 closed chats in the history it took 320 ms on
SQLite, on the path that pages a VIP's agents. Now it is one index seek per online agent.

The work is counted, not timed: SQLite's virtual-machine steps (its progress handler) and
PostgreSQL's rows read from ``conversations`` (``EXPLAIN ANALYZE``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from bot.handlers.customer.human import _OPEN_CHAT_NOW
from routing.delivery.sending import _HEAD_D, _HEAD_TO_AGENT
from routing.queue.conversations import _AGENT_CHATS_D, _HEADER_STATE_D
from routing.queue.eligibility import _ONLINE_SLOTS, online_slots
from routing.store import direct
from routing.store.models import (
    ASSIGNED,
    CLOSED,
    DELIVERY_SENT,
    TO_AGENT,
    TO_CUSTOMER,
    Agent,
    Conversation,
    Customer,
    Delivery,
)
from routing.store.update_lookup import _FULL
from tests.conftest import Db

T = datetime(2026, 12, 2, tzinfo=UTC)
AGENTS = 4
CUSTOMERS = 500
CUSTOMER_TG = 5_000  # customer 1's: a quarter of the history is theirs, the rest is spread


async def _world(db: Db) -> list[int]:
    async with db.sessions() as s, s.begin():
        agents = [
            Agent(telegram_id=900 + i, name=f"A{i}", role="agent", online=True, created_at=T)
            for i in range(AGENTS)
        ]
        s.add_all(agents)
        await s.execute(
            insert(Customer),
            [
                {"external_id": f"E{i}", "name": f"E{i}", "tier": "B",
                 "telegram_id": CUSTOMER_TG + i, "created_at": T, "updated_at": T}
                for i in range(CUSTOMERS)
            ],
        )  # fmt: skip
        await s.flush()
        return [a.id for a in agents]


async def _add_history(db: Db, agent_ids: list[int], n: int, start: int, open_id: int) -> None:
    """``n`` closed chats, spread over the agents, assigned before ``T``; every fourth is
    customer 1's (a loyal customer), the rest are spread over the others. With statistics
    the planner then sees ``customer_id`` as selective, and reads customer 1's open chat by it.
    And ``n`` messages sent both ways, a quarter in the open chat ``open_id`` (a long
    conversation), the rest in the closed ones (so the statistics are a real table's).
    """
    rows = [
        {
            "customer_id": 1 if i % 4 == 0 else 2 + i % (CUSTOMERS - 1),
            "status": CLOSED, "tier": "B", "priority": 2,
            "origin": "customer_request", "queued_at": T - timedelta(days=400),
            "agent_id": agent_ids[i % len(agent_ids)],
            "assigned_at": T - timedelta(days=400) + timedelta(minutes=i),
            "closed_at": T - timedelta(days=399),
        }
        for i in range(start, start + n)
    ]  # fmt: skip
    async with db.sessions() as s, s.begin():
        ids = await s.execute(insert(Conversation).returning(Conversation.id), rows)
        closed = list(ids.scalars())
        sent = [
            {
                "conversation_id": open_id if i % 4 == 0 else closed[i % len(closed)],
                "direction": TO_AGENT if i % 2 else TO_CUSTOMER,
                "agent_id": agent_ids[0], "chat_id": 1, "kind": "copy",
                "status": DELIVERY_SENT, "attempts": 1,
                "next_at": T - timedelta(days=1), "created_at": T - timedelta(days=1),
            }
            for i in range(start, start + n)
        ]  # fmt: skip
        await s.execute(insert(Delivery), sent)


async def _analyze(db: Db) -> None:
    """Statistics, as after ``PRAGMA optimize`` or autovacuum: on SQLite they made a count of
    an agent's open chats walk the agent's history when only (agent_id, assigned_at) was
    indexed, where without them a bound ``status != ?`` made the customer's open chat a walk
    of the customer's history."""
    async with db.sessions() as s, s.begin():
        await s.execute(text("ANALYZE conversations" if db.backend != "sqlite" else "ANALYZE"))


def _reads(agent_id: int, open_id: int) -> dict[str, tuple[direct.Statement, dict[str, Any]]]:
    """The reads that must not walk the history (see the module's docstring), with the values
    they are run with: bound as the bot binds them, since a planner proves less from a bound
    value than from a literal."""
    return {
        "online_slots": (_ONLINE_SLOTS, {}),
        "header_state": (_HEADER_STATE_D, {"agent_id": agent_id}),
        "agent_chats": (_AGENT_CHATS_D, {"agent_id": agent_id}),
        "lookup": (
            _FULL,
            {"update_id": 1, "tid": CUSTOMER_TG, "comment_since": T - timedelta(days=1)},
        ),
        "open_chat": (_OPEN_CHAT_NOW, {"customer_id": 1}),
        # Every send: the destination's first unsent row, and (to an agent, with the chat's
        # state) whether a hand-over still holds a relay back and its briefing.
        "delivery_head": (_HEAD_D, {"conversation_id": open_id, "direction": TO_CUSTOMER}),
        "delivery_head_to_agent": (
            _HEAD_TO_AGENT,
            {"conversation_id": open_id, "since": T - timedelta(hours=1)},
        ),
    }


async def _work(db: Db, name: str, agent_id: int, open_id: int) -> int:
    """SQLite: VM steps of one read (in units of 100). PostgreSQL: rows read from
    ``conversations`` by its scans."""
    statement, params = _reads(agent_id, open_id)[name]
    async with db.sessions() as s:
        conn = await s.connection()
        compiled = statement.compiled(conn.dialect)
        values = statement.values(compiled, params)
        raw = (await conn.get_raw_connection()).driver_connection
        if db.backend == "sqlite":
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            await raw._execute(raw._conn.set_progress_handler, count, 100)
            try:
                await raw._execute(lambda: raw._conn.execute(compiled.sql, values).fetchall())
            finally:
                await raw._execute(raw._conn.set_progress_handler, None, 100)
            return steps[0]
        explained = await raw.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled.sql}", *values)
    plan = explained if isinstance(explained, list) else json.loads(explained)
    return _rows_read(plan[0]["Plan"])


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's scans of the growing tables produced or filtered out."""
    own = 0
    if node.get("Relation Name") in ("conversations", "deliveries"):
        own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
        own += int(node.get("Rows Removed by Filter", 0)) * int(node.get("Actual Loops", 1))
    return own + sum(_rows_read(c) for c in node.get("Plans", []))


async def test_hot_reads_cost_the_same_whatever_the_history(db: Db) -> None:
    agent_ids = await _world(db)
    # One open chat, assigned now, so loads and "last assigned" have something to find.
    async with db.sessions() as s, s.begin():
        chat = Conversation(customer_id=1, status=ASSIGNED, tier="B", priority=2,
                            origin="customer_request", queued_at=T, agent_id=agent_ids[0],
                            assigned_at=T)  # fmt: skip
        s.add(chat)
        await s.flush()
        open_id = chat.id
        # A customer's message waiting for the holder: the relay's claim reads the chat's
        # state, the gate and the briefing with it.
        s.add(Delivery(conversation_id=open_id, direction=TO_AGENT, kind="copy", chat_id=None,
                       status="pending", attempts=0, next_at=T, created_at=T))  # fmt: skip
    await _add_history(db, agent_ids, 1_000, 0, open_id)
    names = tuple(_reads(0, 0))
    small = {n: await _work(db, n, agent_ids[0], open_id) for n in names}
    await _add_history(db, agent_ids, 20_000, 1_000, open_id)
    large = {n: await _work(db, n, agent_ids[0], open_id) for n in names}
    await _analyze(db)
    analyzed = {n: await _work(db, n, agent_ids[0], open_id) for n in names}

    # Twenty times the history: the same work, give or take the index's depth, with the
    # planner's statistics and without.
    for name in names:
        assert large[name] <= small[name] * 1.5 + 10, (name, small, large)
        assert analyzed[name] <= small[name] * 1.5 + 10, (name, small, analyzed)

    async with db.sessions() as s:
        slots = await online_slots(s)
    assert sorted(slots) == agent_ids
    first = slots[agent_ids[0]][1]
    assert first.load == 1
    # The latest assignment of each agent, history included.
    assert first.last_assigned == T.timestamp()
    last_of_second = T - timedelta(days=400) + timedelta(minutes=21_000 - 3)
    assert slots[agent_ids[1]][1].last_assigned == last_of_second.timestamp()
