"""A relay's claim reads its chat in one statement (routing/delivery/sending.py
``_HEAD_TO_AGENT``): the first unsent rows with the chat's state, the holder's gate and
whether their briefing waits, then the conditional claim. Asked one by one they were five
statements per relayed message, each a round trip on PostgreSQL (issue 19). What is sent,
and in which order, is unchanged: the gate holds a relay until the hand-over, the briefing
goes first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from routing.delivery import enqueue, sending
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import direct, sqlite_driver
from routing.store.models import TO_AGENT, Customer
from tests.conftest import Db

NOW = datetime(2026, 12, 3, tzinfo=UTC)
CUST = 700


@contextmanager
def _counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The direct statements run (every statement of a claim is one)."""
    ran: list[str] = []
    for name in ("_on_sqlite", "_on_asyncpg"):
        real = getattr(direct.Statement, name)

        def counting(self: direct.Statement, dialect: Any, *a: Any, _real: Any = real,
                     **kw: Any) -> Any:  # fmt: skip
            ran.append(self.compiled(dialect).sql.split()[0])
            return _real(self, dialect, *a, **kw)

        monkeypatch.setattr(direct.Statement, name, counting)
    yield ran


async def _claim(db: Db, conv_id: int, now: datetime) -> sending.Head:
    # As the sender claims (bot/delivery.py): a direct transaction, inline on SQLite.
    with sqlite_driver.inline():
        async with direct.transaction(db.engine) as tx:
            return await sending.claim_head(tx, conv_id, TO_AGENT, now=now, lease=30)


async def test_a_relay_is_claimed_in_two_statements_after_its_briefing(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
        cust = Customer(external_id="C", name="C", tier="B", telegram_id=CUST,
                        created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(cust)
        await s.flush()
        conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        await enqueue.to_agent(s, conv.id, from_chat_id=CUST, message_id=1, now=NOW)
        claimed = await claim_next(s, agent, NOW)
        assert claimed is not None
        await enqueue.hold_for_hand_over(s, conv.id, agent.id, now=NOW)
        conv_id, agent_id, assigned_at = conv.id, agent.id, claimed.assigned_at

    # PostgreSQL: the read is the statement that claims the head when it may go now
    # (sending._claim_first), so a relay due for its holder is claimed in that one.
    pg = db.backend == "postgresql"
    read = "WITH" if pg else "SELECT"
    with _counted(monkeypatch) as ran:
        # Claimed, not yet handed over: the gate holds the relay back (one read, and the
        # row's recheck time).
        head = await _claim(db, conv_id, NOW)
        assert head.claimed is None and head.gated
        assert ran == [read, "UPDATE"]
        ran.clear()

        async with db.sessions() as s, s.begin():
            await enqueue.hand_over(
                s, conv_id, agent_id, assigned_at, [enqueue.Briefing(text="You took it")],
                now=NOW,
            )  # fmt: skip
            await enqueue.to_agent(s, conv_id, from_chat_id=CUST, message_id=2, now=NOW)

        sent = []
        later = NOW + timedelta(seconds=sending.GATE_RECHECK_SECONDS + 1)
        for _ in range(4):
            ran.clear()
            head = await _claim(db, conv_id, later)
            if head.claimed is None:
                break
            c = head.claimed
            # One read (the head with its chat, gate and briefing), one conditional claim;
            # the briefing's own row is read when it goes (once per hand-over).
            briefing = ["SELECT"] if c.text == "You took it" else []
            claim = [] if pg and not briefing else ["UPDATE"]
            assert ran == [read, *briefing, *claim], ran
            assert c.agent_id == agent_id
            sent.append(c.text or f"copy {c.message_ids}")
            async with db.sessions() as s, s.begin():
                await sending.mark_sent(s, c.id, now=later, agent_id=c.agent_id)
    assert sent == ["You took it", "copy [1]", "copy [2]"]


async def test_a_relay_to_a_chat_closed_before_anyone_took_it_fails(db: Db, policy: Policy) -> None:
    from sqlalchemy import select, update

    from routing.store.models import CLOSED, DELIVERY_FAILED, Conversation, Delivery

    async with db.sessions() as s, s.begin():
        cust = Customer(external_id="C", name="C", tier="B", telegram_id=CUST,
                        created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(cust)
        await s.flush()
        conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        await enqueue.to_agent(s, conv.id, from_chat_id=CUST, message_id=1, now=NOW)
        await s.execute(update(Conversation).where(Conversation.id == conv.id)
                        .values(status=CLOSED, closed_at=NOW))  # fmt: skip
        conv_id = conv.id
    head = await _claim(db, conv_id, NOW)
    assert head.claimed is None
    async with db.sessions() as s:
        statuses = list(await s.scalars(select(Delivery.status)))
    assert statuses == [DELIVERY_FAILED]


async def test_pg_a_relay_each_way_is_claimed_in_one_statement_and_only_once(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a row due now for the customer, and a customer's message due now for
    the agent who holds the chat, are claimed by the statement that reads them, one round
    trip instead of two; claimed at once by many senders, each row goes to one of them."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's round trips")
    import asyncio

    from routing.store.models import TO_CUSTOMER

    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
        cust = Customer(external_id="C", name="C", tier="B", telegram_id=CUST,
                        created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(cust)
        await s.flush()
        conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        claimed = await claim_next(s, agent, NOW)
        assert claimed is not None
        await enqueue.hand_over(s, conv.id, agent.id, claimed.assigned_at, [], now=NOW)
        await enqueue.to_agent(s, conv.id, from_chat_id=CUST, message_id=1, now=NOW)
        await enqueue.to_customer(s, conv.id, CUST, from_chat_id=900, message_id=5, now=NOW)
        conv_id, agent_id = conv.id, agent.id
    later = NOW + timedelta(seconds=1)

    async def claim(direction: str) -> sending.Head:
        async with direct.transaction(db.engine) as tx:
            return await sending.claim_head(tx, conv_id, direction, now=later, lease=30)

    with _counted(monkeypatch) as ran:
        to_agent = await claim(TO_AGENT)
        assert ran == ["WITH"]
        c = to_agent.claimed
        assert c is not None and c.relay and c.agent_id == agent_id and c.chat_id == 900
        assert (c.message_ids, c.attempts, to_agent.more) == ([1], 1, False)
        ran.clear()
        heads = await asyncio.gather(*(claim(TO_CUSTOMER) for _ in range(6)))
    won = [h.claimed for h in heads if h.claimed is not None]
    assert len(won) == 1 and won[0].chat_id == CUST and won[0].message_ids == [5]
    assert not won[0].relay and won[0].attempts == 1
    # The losers claimed nothing; each sees the row under its lease (a wait) or not due.
    assert all(h.wait_until is not None for h in heads if h.claimed is None)
