"""PostgreSQL: a customer's message in their live chat is stored and queued in one statement
(bot/handlers/customer/human.py ``_RELAY_ALONE``), not a transaction of six round trips, and
an agent's message stored, queued and linked in one (bot/handlers/agent.py ``_RELAY_ALONE``),
not nine (issue 19); with the claim's one read and the send's one mark, relaying either way
opens no transaction at all. Each part runs only if the one before it did: nothing is
written for a chat that is no longer the sender's, for a message stored before (a
redelivery), or (agents) while a case of the chat waits for its first answer; the
transaction path then decides as it always did. SQLite: the same statements in a direct
transaction, no session transaction (and none of its greenlets) either way."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select, update

from bot.app import make_dispatcher
from bot.handlers.agent import _RELAY_ALONE as _AGENT_RELAY_ALONE
from bot.handlers.customer.human import _RELAY_ALONE
from bot.intake import Intake
from routing.policy.root import Policy
from routing.store.care_models import COMPLAINT_OPEN, Complaint
from routing.store.models import CLOSED, Conversation, Delivery, Message, MessageLink
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers
from tests.integration.test_redelivery import NOW, _seed_live_chat


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


async def _count(db: Db, model: type) -> int:
    async with db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(("sender", "to"), [(700, 900), (900, 700)], ids=["customer", "agent"])
async def test_a_relayed_message_opens_no_transaction(
    pg_db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch, sender: int, to: int
) -> None:
    import asyncpg

    db = pg_db
    await _seed_live_chat(db, policy)
    begun: list[int] = []
    real = asyncpg.connection.Connection.transaction

    def counting(self: asyncpg.Connection, **kw: object) -> object:
        begun.append(1)
        return real(self, **kw)  # type: ignore[arg-type]

    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        raw = {"update_id": 1, "message": api.user_message(sender, "hello again")}
        # The first update of a process pays for what is loaded once (statements prepared,
        # the agents' cache): measured from the second.
        await intake.accept([raw])
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        # Stored in the inbox (a transaction per getUpdates batch), then handled.
        await intake.accept([{"update_id": 2, "message": api.user_message(sender, "and again")}])
        monkeypatch.setattr(asyncpg.connection.Connection, "transaction", counting)
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert len(api.calls_of("copyMessage", chat_id=to)) == 2
    assert begun == []
    assert await _count(db, Message) == 2
    async with db.sessions() as s:
        conv = (await s.scalars(select(Conversation))).one()
        statuses = list(await s.scalars(select(Delivery.status)))
        links = list(await s.scalars(select(MessageLink.kind)))
    if sender == 700:
        assert conv.last_customer_at == NOW and conv.inactivity_warned_at is None
        assert links.count("sent") == 0
    else:
        assert conv.first_response_at == NOW and conv.last_agent_at == NOW
        assert links.count("sent") == 2  # replying to them later addresses the chat
    assert statuses == ["sent", "sent"]


@pytest.mark.parametrize(("sender", "to"), [(700, 900), (900, 700)], ids=["customer", "agent"])
async def test_sqlite_a_relayed_message_takes_no_session_transaction(
    sqlite_db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch, sender: int, to: int
) -> None:
    """SQLite: the same statements in a direct transaction (``_relay_direct`` each way), not
    the session's with its greenlets; the claim and the send's mark take none either."""
    from sqlalchemy.ext.asyncio import AsyncSession

    db = sqlite_db
    await _seed_live_chat(db, policy)
    begun: list[int] = []
    real = AsyncSession.begin

    def counting(self: AsyncSession) -> object:
        begun.append(1)
        return real(self)

    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        await intake.accept([{"update_id": 1, "message": api.user_message(sender, "hello")}])
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await intake.accept([{"update_id": 2, "message": api.user_message(sender, "again")}])
        monkeypatch.setattr(AsyncSession, "begin", counting)
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert len(api.calls_of("copyMessage", chat_id=to)) == 2
    assert begun == []
    assert await _count(db, Message) == 2
    async with db.sessions() as s:
        links = list(await s.scalars(select(MessageLink.kind)))
        statuses = list(await s.scalars(select(Delivery.status)))
    assert links.count("sent") == (2 if sender == 900 else 0)
    assert statuses == ["sent", "sent"]


def _params(conv_id: int, message_id: int) -> dict[str, object]:
    return {
        "customer_id": 1, "v_conv": conv_id, "v_type": "text", "v_text": "hi", "v_file": None,
        "v_chat": 700, "v_message": message_id, "v_at": NOW, "v_from": 700,
        "v_ids": json.dumps([message_id]), "v_next": NOW,
    }  # fmt: skip


async def test_each_part_runs_only_if_the_one_before_did(pg_db: Db, policy: Policy) -> None:
    db = pg_db
    await _seed_live_chat(db, policy)
    async with db.sessions() as s:
        conv_id = (await s.scalars(select(Conversation.id))).one()

    (row,) = await _RELAY_ALONE.read(db.engine, _params(conv_id, 5))
    assert (row.open_id, row.spoke) == (conv_id, 1)
    assert row.stored is not None and row.queued is not None
    # The same Telegram message again (a redelivery): nothing stored, nothing queued.
    (row,) = await _RELAY_ALONE.read(db.engine, _params(conv_id, 5))
    assert (row.open_id, row.stored, row.spoke, row.queued) == (conv_id, None, 0, None)
    # Another chat than the open one (the lookup's is stale): nothing written.
    (row,) = await _RELAY_ALONE.read(db.engine, _params(conv_id + 1, 6))
    assert (row.open_id, row.stored, row.spoke, row.queued) == (conv_id, None, 0, None)
    # The chat closed since the lookup: nothing written.
    async with db.sessions() as s, s.begin():
        await s.execute(update(Conversation).values(status=CLOSED, closed_at=NOW))
    (row,) = await _RELAY_ALONE.read(db.engine, _params(conv_id, 7))
    assert (row.open_id, row.stored, row.spoke, row.queued) == (None, None, 0, None)
    assert await _count(db, Message) == 1
    assert await _count(db, Delivery) == 1


def _agent_params(conv_id: int, message_id: int, agent_id: int) -> dict[str, object]:
    return {
        "v_conv": conv_id, "v_agent": agent_id, "v_type": "text", "v_text": "hi",
        "v_file": None, "v_chat": 900, "v_message": message_id, "v_at": NOW, "v_to": 700,
        "v_from": 900, "v_ids": json.dumps([message_id]), "v_next": NOW,
    }  # fmt: skip


async def test_an_agents_message_is_written_only_into_a_chat_they_hold(
    pg_db: Db, policy: Policy
) -> None:
    db = pg_db
    await _seed_live_chat(db, policy)
    async with db.sessions() as s:
        conv = (await s.scalars(select(Conversation))).one()
    conv_id, agent_id = conv.id, conv.agent_id
    assert agent_id is not None

    def parts(row: object) -> tuple[object, ...]:
        return tuple(row)[1:4]

    (row,) = await _AGENT_RELAY_ALONE.read(db.engine, _agent_params(conv_id, 5, agent_id))
    assert row.stored is not None and row.queued is not None and parts(row) == (1, 1, 1)
    # A redelivery; another agent; a chat that is not theirs: nothing written.
    for params in (
        _agent_params(conv_id, 5, agent_id),
        _agent_params(conv_id, 6, agent_id + 1),
        _agent_params(conv_id + 1, 6, agent_id),
    ):
        (row,) = await _AGENT_RELAY_ALONE.read(db.engine, params)
        assert (row.stored, row.queued, parts(row)) == (None, None, (0, 0, 0))
    # A case of the chat waits for its first answer: the transaction acknowledges it.
    async with db.sessions() as s, s.begin():
        s.add(Complaint(customer_id=conv.customer_id, conversation_id=conv_id, tier="B",
                        category="billing", severity=1.0, opened_by="customer",
                        status=COMPLAINT_OPEN, opened_at=NOW))  # fmt: skip
    (row,) = await _AGENT_RELAY_ALONE.read(db.engine, _agent_params(conv_id, 7, agent_id))
    assert (row.stored, row.queued, parts(row)) == (None, None, (0, 0, 0))
    assert await _count(db, Message) == 1
    assert await _count(db, Delivery) == 1
    assert await _count(db, MessageLink) == 1
