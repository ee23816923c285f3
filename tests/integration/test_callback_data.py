"""Callback data is typed by anyone: a field outside its range is a stale button, not a crash.

Before, ``claim:99999999999999999999999`` reached the database as an integer past 64 bits,
the driver raised OverflowError and the press was never answered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update

from bot.app import make_dispatcher
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.store.models import Customer
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers

NOW = datetime(2026, 11, 23, tzinfo=UTC)
AGENT, CUSTOMER = 900, 700
HUGE = "99999999999999999999999"


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


@pytest.mark.parametrize(
    ("user", "data"),
    [
        (AGENT, f"claim:{HUGE}"),
        (AGENT, f"focus:{HUGE}"),
        (AGENT, f"close:{HUGE}"),
        (AGENT, f"offer:{HUGE}:1"),
        (AGENT, "claim:-1"),
        (CUSTOMER, f"sv:{HUGE}:5"),
        (CUSTOMER, f"sv:1:{HUGE}"),
        (CUSTOMER, f"svskip:{HUGE}"),
        (CUSTOMER, f"claim:{HUGE}"),
        (CUSTOMER, "ss:" + "x" * 80),
    ],
)
async def test_out_of_range_callback_data_is_answered_as_no_longer_active(
    db: Db, policy: Policy, user: int, data: str
) -> None:
    async with db.sessions() as s, s.begin():
        await add_agent(s, AGENT, "Bob", now=NOW)
        s.add(
            Customer(
                external_id="B1",
                name="Beth",
                tier="B",
                telegram_id=CUSTOMER,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        under = api.user_message(user, "a message with a button")
        api.press(user, under["message_id"], data)
        raw = api.pending_updates[-1]
        await dp.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))
        answers = api.calls_of("answerCallbackQuery")
        await bot.session.close()
    assert len(answers) == 1
    assert "no longer active" in (answers[0].params.get("text") or "")
