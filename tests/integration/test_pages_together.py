"""A chat paged to several agents (a VIP's, with nobody reserved): the pages go out together,
and the ones that went out are linked in one write (issue 19).

One after the other, a VIP's chat paged to three agents waited for three sends and three
link writes before the VIP was told someone is coming; a slow or refused page held up the
rest. A refused page is still only logged, and the others are linked as before, so that
whoever claims the chat settles every page that went out."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage
from sqlalchemy import select

from bot.desk import Desk
from routing.policy.root import Policy
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import lane
from routing.store.models import Agent, Customer, MessageLink
from tests.conftest import Db

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
AGENTS = (901, 902, 903)
REFUSES = 902


class _Sent:
    def __init__(self, chat_id: int, message_id: int) -> None:
        self.chat_id, self.message_id = chat_id, message_id


class _TogetherBot:
    """Answers a send only once every agent's page is in flight: pages sent one after the
    other never get there (the first waits for the others, which are not sent yet)."""

    def __init__(self, expected: int) -> None:
        self.in_flight: list[int] = []
        self.all_asked = asyncio.Event()
        self.expected = expected

    async def send_message(self, chat_id: int, text: str, **_: Any) -> _Sent:
        self.in_flight.append(chat_id)
        if len(self.in_flight) == self.expected:
            self.all_asked.set()
        await asyncio.wait_for(self.all_asked.wait(), 5)
        if chat_id == REFUSES:
            raise TelegramBadRequest(SendMessage(chat_id=chat_id, text=text), "chat not found")
        return _Sent(chat_id, 5000 + chat_id)


async def test_pages_go_out_together_and_are_linked_in_one_write(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.sessions() as s, s.begin():
        agents = [
            Agent(telegram_id=t, name=f"Agent {t}", role="agent", max_chats=3, online=True,
                  active=True, created_at=NOW)
            for t in AGENTS
        ]  # fmt: skip
        s.add_all(agents)
        customer = Customer(
            external_id="V1", name="Vera", tier="VIP", telegram_id=700, created_at=NOW,
            updated_at=NOW,
        )  # fmt: skip
        s.add(customer)
        await s.flush()
        conv, _ = await open_conversation(s, customer, policy, ORIGIN_REQUEST, NOW)

    writes: list[int] = []
    real = lane.write_all

    async def counting(engine: Any, steps: Any) -> list[int]:
        writes.append(len(steps))
        return await real(engine, steps)

    monkeypatch.setattr(lane, "write_all", counting)
    bot = _TogetherBot(len(AGENTS))
    desk = Desk(bot, policy, lambda: NOW)  # type: ignore[arg-type]
    async with db.sessions() as s:
        # Nobody is Vera's account manager: every online agent is paged.
        assert await desk.page(s, conv, customer, "my order arrived broken") == len(AGENTS)

    assert sorted(bot.in_flight) == list(AGENTS)
    # The two pages that went out, in one write (PostgreSQL: after the plan's record, a
    # statement of its own there, the plan being made outside a transaction).
    assert writes == ([1, 2] if db.backend == "postgresql" else [2])
    async with db.sessions() as s:
        links = (await s.execute(select(MessageLink.chat_id, MessageLink.message_id,
                                        MessageLink.kind))).all()  # fmt: skip
    assert sorted(links) == [(901, 5901, "notification"), (903, 5903, "notification")]


async def test_a_vip_chat_reads_the_agents_once(db: Db, policy: Policy, tmp_path: Any) -> None:
    """The plan for a new chat finds the account manager among the online agents it has
    just read (an offline manager changes nothing): before, a second read of the agents, and
    a read of every active agent when the CRM's name matched nobody."""
    if db.backend != "sqlite":
        pytest.skip("counted with SQLite's trace of the statements it runs")
    from sqlalchemy import event

    from routing.store.db import make_engine, make_sessionmaker

    async with db.sessions() as s, s.begin():
        s.add_all([
            Agent(telegram_id=t, name=f"Agent {t}", role="agent", max_chats=3, online=True,
                  active=True, created_at=NOW)
            for t in AGENTS
        ])  # fmt: skip
        for name, manager in (("Vera", "Agent 902"), ("Val", "nobody we know")):
            s.add(Customer(external_id=name, name=name, tier="VIP", telegram_id=len(name),
                           account_manager=manager, created_at=NOW, updated_at=NOW))  # fmt: skip
    engine = make_engine(db.url)
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.driver_connection._conn.set_trace_callback(seen.append)

    try:
        sessions = make_sessionmaker(engine)
        bot = _TogetherBot(1)
        bot.all_asked.set()
        desk = Desk(bot, policy, lambda: NOW)  # type: ignore[arg-type]
        for name in ("Vera", "Val"):
            async with sessions() as s, s.begin():
                customer = (
                    await s.execute(select(Customer).where(Customer.name == name))
                ).scalar_one()
                conv, _ = await open_conversation(s, customer, policy, ORIGIN_REQUEST, NOW)
            seen.clear()
            async with sessions() as s:
                await desk.page(s, conv, customer, "hello")
            reads = [q for q in seen if re.search(r"\sFROM agents\b", q)]
            assert len(reads) == 1, reads
        # Vera's manager is online: her chat waits for him alone, and he is told it is his.
        assert bot.in_flight[0] == 902
    finally:
        await engine.dispose()
