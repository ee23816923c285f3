"""The marks of sends that end together (bot/delivery.py, through routing/store/lane.py
``Together``): each send's row marked sent with its relay's links and its agent's last chat,
exactly as when written alone; on PostgreSQL one statement for them all, where each was a
round trip (issue 19). A mark the database refuses fails only its own send."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from routing.delivery import enqueue, sending
from routing.policy.root import Policy
from routing.queue import conversations
from routing.queue.agents import add_agent
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import lane
from routing.store.models import (
    DELIVERY_PENDING,
    DELIVERY_SENT,
    Agent,
    Customer,
    Delivery,
    MessageLink,
)
from tests.conftest import Db

NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)
SENT = NOW + timedelta(seconds=2)


async def _rows(db: Db, policy: Policy) -> tuple[list[int], list[int], list[int]]:
    """Three agents (the first holds two chats) and four chats, one queued row each: the
    agents' ids and Telegram ids, and the rows' conversation ids (in the rows' order)."""
    async with db.sessions() as s, s.begin():
        agents = [(await add_agent(s, 900 + i, f"A{i}", now=NOW))[0] for i in range(3)]
        convs = []
        for i in range(4):
            cust = Customer(external_id=f"C{i}", name=f"C{i}", tier="B", telegram_id=700 + i,
                            created_at=NOW, updated_at=NOW)  # fmt: skip
            s.add(cust)
            await s.flush()
            conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
            await enqueue.to_agent(s, conv.id, from_chat_id=700 + i, message_id=1, now=NOW)
            convs.append(conv.id)
    return [a.id for a in agents], [a.telegram_id for a in agents], convs


def _mark(row_id: int, agent: int, agent_tg: int, conv: int, message: int) -> list[lane.Step]:
    # As bot/delivery.py ``_send`` leaves it after a relay to an agent.
    return [
        sending.sent_step(row_id, now=SENT, agent_id=agent),
        conversations.link_step(agent_tg, message, conv, enqueue.LINK_RELAY),
        conversations.last_inbound_step(agent, conv),
    ]


def _trips(db: Db, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """PostgreSQL: the driver calls made from here on (each a round trip), by method."""
    trips: list[str] = []
    if db.backend == "postgresql":
        import asyncpg

        for name in ("execute", "fetchrow", "fetch", "transaction"):
            real = getattr(asyncpg.connection.Connection, name)

            def counting(self: object, *a: object, _real: object = real, _n: str = name,
                         **kw: object) -> object:  # fmt: skip
                trips.append(_n)
                return _real(self, *a, **kw)  # type: ignore[operator]

            monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    return trips


async def _state(db: Db) -> tuple[Any, ...]:
    async with db.sessions() as s:
        rows = (await s.execute(select(Delivery.conversation_id, Delivery.status,
                                       Delivery.sent_at, Delivery.agent_id)
                                .order_by(Delivery.id))).all()  # fmt: skip
        links = (await s.execute(select(MessageLink.chat_id, MessageLink.message_id,
                                        MessageLink.conversation_id, MessageLink.kind)
                                 .order_by(MessageLink.message_id))).all()  # fmt: skip
        last = (await s.execute(select(Agent.id, Agent.last_inbound_conversation_id)
                                .order_by(Agent.id))).all()  # fmt: skip
    return [tuple(r) for r in rows], [tuple(r) for r in links], [tuple(r) for r in last]


async def _row_ids(db: Db) -> list[int]:
    async with db.sessions() as s:
        return list((await s.scalars(select(Delivery.id).order_by(Delivery.id))).all())


@pytest.mark.parametrize("same_agent", [False, True])
async def test_marks_made_together_store_what_each_alone_would(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch, same_agent: bool
) -> None:
    """``same_agent``: two sends to one agent in the batch, whose last chat is the later
    send's (their marks cannot be one row each of one statement: they run in order)."""
    agents, tgs, convs = await _rows(db, policy)
    rows = await _row_ids(db)
    who = [0, 1, 2, 0] if same_agent else [0, 1, 2]
    marks = [_mark(rows[i], agents[a], tgs[a], convs[i], 50 + i) for i, a in enumerate(who)]
    trips = _trips(db, monkeypatch)
    together = lane.Together(db.engine)
    await asyncio.gather(*(together.write(m) for m in marks))
    monkeypatch.undo()
    if db.backend == "postgresql":
        # One statement: the rows, the links, the last chats. With one agent's last chat
        # twice, the later send's mark is a statement of its own after the others'.
        assert trips == ["fetchrow", "fetchrow"] if same_agent else ["fetchrow"]
    deliveries, links, last = await _state(db)
    sent = {(convs[i], DELIVERY_SENT, SENT, agents[a]) for i, a in enumerate(who)}
    assert set(deliveries) >= sent
    assert len([d for d in deliveries if d[1] == DELIVERY_PENDING]) == 4 - len(who)
    assert links == [(tgs[a], 50 + i, convs[i], enqueue.LINK_RELAY) for i, a in enumerate(who)]
    want_last = {agents[a]: convs[i] for i, a in enumerate(who)}  # the later send's wins
    assert last == [(a, want_last.get(a)) for a in agents]


async def test_a_mark_the_database_refuses_fails_only_its_own_send(db: Db, policy: Policy) -> None:
    agents, tgs, convs = await _rows(db, policy)
    rows = await _row_ids(db)
    # The second send's link names a message already linked: refused.
    await lane.write_all(db.engine, [conversations.link_step(tgs[1], 51, convs[0], "relay")])
    marks = [_mark(rows[i], agents[i], tgs[i], convs[i], 50 + i) for i in range(3)]
    together = lane.Together(db.engine)
    out = await asyncio.gather(*(together.write(m) for m in marks), return_exceptions=True)
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], IntegrityError)
    deliveries, _links, _last = await _state(db)
    assert [d[1] for d in deliveries] == [DELIVERY_SENT, DELIVERY_PENDING, DELIVERY_SENT,
                                          DELIVERY_PENDING]  # fmt: skip


async def test_plans_and_links_of_new_chats_made_at_once_are_one_write(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New chats' plans (their reservations, what their customers were told) and their
    pages' links, made at the same time (lane.together): each stored as alone; on
    PostgreSQL one statement."""
    from routing.queue import offers
    from routing.store.models import Conversation

    agents, tgs, convs = await _rows(db, policy)
    until = NOW + timedelta(minutes=2)
    writes = [
        [(offers._SET_RESERVED, {"conv_id": convs[0], "reserved_agent_id": agents[0],
                                 "reserved_until": until})],
        [(offers._SET_RESERVED_TOLD, {"conv_id": convs[1], "reserved_agent_id": None,
                                      "reserved_until": None, "told_position": 1,
                                      "told_eta_bucket": 0})],
        [(offers._SET_RESERVED_TOLD, {"conv_id": convs[2], "reserved_agent_id": agents[1],
                                      "reserved_until": until, "told_position": 2,
                                      "told_eta_bucket": 0})],
        [conversations.link_step(tgs[0], 77, convs[0], "notification"),
         conversations.link_step(tgs[1], 78, convs[0], "notification")],
    ]  # fmt: skip
    trips = _trips(db, monkeypatch)
    await asyncio.gather(*(lane.together(db.engine).write(w) for w in writes))
    monkeypatch.undo()
    if db.backend == "postgresql":
        assert trips == ["fetchrow"]
    async with db.sessions() as s:
        plans = (await s.execute(select(Conversation.id, Conversation.reserved_agent_id,
                                        Conversation.reserved_until, Conversation.told_position,
                                        Conversation.told_eta_bucket)
                                 .where(Conversation.id.in_(convs[:3]))
                                 .order_by(Conversation.id))).all()  # fmt: skip
        links = (await s.execute(select(MessageLink.chat_id, MessageLink.message_id)
                                 .where(MessageLink.kind == "notification")
                                 .order_by(MessageLink.message_id))).all()  # fmt: skip
    assert [tuple(p) for p in plans] == [
        (convs[0], agents[0], until, None, None),
        (convs[1], None, None, 1, 0),
        (convs[2], agents[1], until, 2, 0),
    ]
    assert [tuple(link) for link in links] == [(tgs[0], 77), (tgs[1], 78)]
