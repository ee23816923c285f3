"""PostgreSQL: the claims of relays to different chats made at the same time are one
statement (routing/delivery/sending.py ``claim_first``, bot/delivery.py), where each was a
round trip and a commit of its own (issue 19). Each chat's head is claimed exactly as alone:
a relay due for the agent holding the chat, a row due for the customer; a relay whose chat
waits in the queue is held at its gate, a row not due yet waits; and of senders claiming one
row at once (two instances), one wins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from routing.delivery import enqueue, sending
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import direct
from routing.store.db import make_engine
from routing.store.models import TO_AGENT, TO_CUSTOMER, Customer
from tests.conftest import Db

NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)
LATER = NOW + timedelta(seconds=1)
AGENT_TG = 900


async def _chats(db: Db, policy: Policy) -> tuple[list[int], int, int]:
    """Three chats the agent holds (handed over), each with a customer's message for the
    agent and the agent's answer for the customer; a fourth chat still queued, with a
    customer's message. Returns the held chats, the queued one and the agent's id."""
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, AGENT_TG, "Bob", now=NOW)
        convs = []
        for i in range(4):
            cust = Customer(external_id=f"C{i}", name=f"C{i}", tier="B", telegram_id=700 + i,
                            created_at=NOW, updated_at=NOW)  # fmt: skip
            s.add(cust)
            await s.flush()
            conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
            convs.append(conv.id)
        for conv_id in convs[:3]:
            claimed = await claim_next(s, agent, NOW)
            assert claimed is not None and claimed.id == conv_id
            await enqueue.hand_over(s, conv_id, agent.id, claimed.assigned_at, [], now=NOW)
        for i, conv_id in enumerate(convs):
            await enqueue.to_agent(s, conv_id, from_chat_id=700 + i, message_id=1, now=NOW)
        for i, conv_id in enumerate(convs[:3]):
            await enqueue.to_customer(s, conv_id, 700 + i, from_chat_id=AGENT_TG,
                                      message_id=10 + i, now=NOW)  # fmt: skip
        return convs[:3], convs[3], agent.id


def _statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import asyncpg

    ran: list[str] = []
    for name in ("execute", "fetch", "fetchrow"):
        real = getattr(asyncpg.connection.Connection, name)

        def counting(self: object, sql: str, *a: object, _real: Any = real, **kw: object) -> Any:
            ran.append(sql)
            return _real(self, sql, *a, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    return ran


async def _head(db: Db, conv_id: int, direction: str, engine: Any = None) -> sending.Head:
    # As bot/delivery.py claims on PostgreSQL: together, then anything else decided alone.
    engine = engine or db.engine
    read = await sending.claim_first(engine, conv_id, direction, now=LATER, lease=30)
    claimed = sending.claimed_now(read, conv_id, direction)
    if claimed is not None:
        return claimed
    async with direct.transaction(engine) as tx:
        return await sending.claim_head(tx, conv_id, direction, now=LATER, lease=30, read=read)


async def test_pg_claims_of_several_chats_made_at_once_are_one_statement_each_way(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's round trips")
    held, queued, agent_id = await _chats(db, policy)
    ran = _statements(monkeypatch)
    to_agent = await asyncio.gather(*(_head(db, c, TO_AGENT) for c in held))
    assert len(ran) == 1 and "unnest" in ran[0]
    ran.clear()
    to_customer = await asyncio.gather(*(_head(db, c, TO_CUSTOMER) for c in held))
    assert len(ran) == 1 and "unnest" in ran[0]
    monkeypatch.undo()
    for conv_id, head in zip(held, to_agent, strict=True):
        c = head.claimed
        assert c is not None and c.conversation_id == conv_id and c.relay
        assert (c.agent_id, c.chat_id, c.message_ids, c.attempts) == (agent_id, AGENT_TG, [1], 1)
    for i, (conv_id, head) in enumerate(zip(held, to_customer, strict=True)):
        c = head.claimed
        assert c is not None and c.conversation_id == conv_id and not c.relay
        assert (c.chat_id, c.message_ids) == (700 + i, [10 + i])
    # Asked again together with the queued chat: the claimed rows are under their lease
    # (a wait), the queued chat's relay is held at its gate, decided from the same read.
    again = await asyncio.gather(*(_head(db, c, TO_AGENT) for c in [*held, queued]))
    assert all(h.claimed is None and h.wait_until is not None for h in again)
    assert again[3].gated and not any(h.gated for h in again[:3])


async def test_pg_senders_claiming_the_same_rows_at_once_each_row_goes_once(
    db: Db, policy: Policy
) -> None:
    """Two instances (two pools), each claiming the same chats' heads together."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's concurrent claims")
    held, _queued, _agent = await _chats(db, policy)
    other = make_engine(db.url)
    try:
        heads = await asyncio.gather(
            *(_head(db, c, way, engine) for engine in (db.engine, other, db.engine, other)
              for c in held for way in (TO_AGENT, TO_CUSTOMER))
        )  # fmt: skip
    finally:
        await other.dispose()
    won = [(h.claimed.conversation_id, h.claimed.direction) for h in heads if h.claimed]
    assert sorted(won) == sorted((c, way) for c in held for way in (TO_AGENT, TO_CUSTOMER))
