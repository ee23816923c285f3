"""PostgreSQL: a VIP's first message opens their chat, is stored into it and queued for
whoever will hold it in one statement (bot/handlers/customer/human.py ``_OPEN_ALONE``), not
a transaction of seven round trips (issue 19); the chat is then paged as before. Each part
runs only if the one before it did: with a chat open already (opened since the lookup)
nothing is written and the transaction path decides as it always did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select, update

from bot.app import make_dispatcher
from bot.handlers.customer import human
from bot.intake import Intake
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.conversations import ORIGIN_VIP, open_params
from routing.store.models import (
    CLOSED,
    QUEUED,
    TO_AGENT,
    Conversation,
    Customer,
    Delivery,
    Message,
)
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers
from tests.integration.test_redelivery import NOW

VIP, AGENT = 701, 900


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


async def _seed(db: Db) -> Customer:
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, AGENT, "Bob", now=NOW)
        agent.online = True
        cust = Customer(external_id="V1", name="Vera", tier="VIP", telegram_id=VIP,
                        created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(cust)
    return cust


async def _count(db: Db, model: type) -> int:
    async with db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_vips_first_message_opens_the_chat_in_one_statement(
    pg_db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = pg_db
    await _seed(db)
    ran: list[str] = []
    for name, statement in (("open alone", human._OPEN_ALONE), ("chat read", human._OPEN_CHAT_NOW)):
        real = statement.execute

        async def counting(*a: Any, _real: Any = real, _n: str = name, **kw: Any) -> Any:
            ran.append(_n)
            return await _real(*a, **kw)

        monkeypatch.setattr(statement, "execute", counting)
    real_read = human._OPEN_ALONE.read

    async def read(*a: Any, **kw: Any) -> Any:
        ran.append("open alone")
        return await real_read(*a, **kw)

    monkeypatch.setattr(human._OPEN_ALONE, "read", read)
    import asyncpg

    begun: list[int] = []
    real_tx = asyncpg.connection.Connection.transaction

    def counting_tx(self: asyncpg.Connection, **kw: object) -> object:
        begun.append(1)
        return real_tx(self, **kw)  # type: ignore[arg-type]

    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        await intake.accept([{"update_id": 1, "message": api.user_message(VIP, "help me")}])
        # Stored in the inbox (a transaction per getUpdates batch), then handled: the chat
        # opened, its plan made and recorded, the agent paged, with no transaction at all
        # (the plan's reads need none, each write is one statement).
        monkeypatch.setattr(asyncpg.connection.Connection, "transaction", counting_tx)
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        paged = api.calls_of("sendMessage", chat_id=AGENT)
        told = api.calls_of("sendMessage", chat_id=VIP)
    # The opening's one statement; the transaction's read of the open chat never ran.
    assert ran == ["open alone"]
    assert begun == []
    assert paged and told  # the agent is paged and the customer told, as before
    async with db.sessions() as s:
        conv = (await s.scalars(select(Conversation))).one()
        msg = (await s.scalars(select(Message))).one()
        queued = (await s.scalars(select(Delivery).where(Delivery.kind == "copy"))).one()
    assert (conv.status, conv.origin, conv.tier) == (QUEUED, ORIGIN_VIP, "VIP")
    assert conv.last_customer_at == NOW and conv.queued_at == NOW
    assert (msg.conversation_id, msg.sender, msg.text) == (conv.id, "customer", "help me")
    assert (queued.conversation_id, queued.direction, queued.agent_id) == (conv.id, TO_AGENT, None)
    assert json.loads(queued.message_ids) == [msg.message_id]
    assert queued.status == "pending"  # for whoever takes the chat, at the hand-over


def _params(customer: Customer, policy: Policy, message_id: int) -> dict[str, object]:
    return {
        **open_params(customer, policy, ORIGIN_VIP, NOW),
        "v_type": "text", "v_text": "hi", "v_file": None, "v_chat": VIP,
        "v_message": message_id, "v_from": VIP, "v_ids": json.dumps([message_id]),
        "v_next": NOW,
    }  # fmt: skip


async def test_each_part_runs_only_if_the_one_before_did(pg_db: Db, policy: Policy) -> None:
    db = pg_db
    cust = await _seed(db)
    (row,) = await human._OPEN_ALONE.read(db.engine, _params(cust, policy, 5))
    assert row.stored is not None and row.queued is not None
    # A chat is open already: nothing opened, stored or queued (no row).
    assert await human._OPEN_ALONE.read(db.engine, _params(cust, policy, 6)) == []
    assert (await _count(db, Conversation), await _count(db, Message)) == (1, 1)
    # Closed; the same Telegram message again (a redelivery): a chat is opened, nothing is
    # stored twice or queued.
    async with db.sessions() as s, s.begin():
        await s.execute(update(Conversation).values(status=CLOSED, closed_at=NOW))
    (row,) = await human._OPEN_ALONE.read(db.engine, _params(cust, policy, 5))
    assert (row.stored, row.queued) == (None, None)
    assert (await _count(db, Conversation), await _count(db, Message)) == (2, 1)
    assert await _count(db, Delivery) == 1
