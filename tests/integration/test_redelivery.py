"""An update Telegram delivers twice (after a crash before the offset was confirmed) is acted on
once: a customer's message is not relayed to the agent twice."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import func, select

from bot.app import make_dispatcher
from routing.agents import add_agent
from routing.conversations import ORIGIN_REQUEST, open_conversation
from routing.models import Customer, Message
from routing.policy import Policy
from routing.queue import claim_next
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

NOW = datetime(2026, 11, 23, tzinfo=UTC)


async def test_redelivered_update_is_not_relayed_twice(sqlite_db: Db, policy: Policy) -> None:
    async with sqlite_db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
        cust = Customer(
            external_id="B1", name="Beth", tier="B", telegram_id=700, created_at=NOW, updated_at=NOW
        )
        s.add(cust)
        await s.flush()
        await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        assert await claim_next(s, agent, NOW) is not None

    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(sqlite_db.sessions, policy, bot, clock=lambda: NOW)
        raw = api.user_message(700, "hello again")
        update = Update.model_validate({"update_id": 1, "message": raw}, context={"bot": bot})
        await dp.feed_update(bot, update)
        await dp.feed_update(bot, update)
        assert len(api.calls_of("copyMessage", chat_id=900)) == 1
        # Shutdown writes the handled ids and forgets them in memory; the same update
        # redelivered to the restarted process is stopped by the recorded row.
        processed = dp["processed_log"]
        await processed.close()
        assert update.update_id not in processed
        await dp.feed_update(bot, update)
        await bot.session.close()
        assert len(api.calls_of("copyMessage", chat_id=900)) == 1

    async with sqlite_db.sessions() as s:
        stored = await s.scalar(select(func.count()).select_from(Message))
    assert stored == 1
