"""Flood control (bot/throttle.py) and quiet Telegram refusals (bot/errors.py).

The token bucket on its own, then the real dispatcher fed in-process against the fake Bot
API: what a flooder, an agent and a customer in a live chat cost in calls to Telegram.
Throttle time is a virtual monotonic clock; nothing sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import func, select

from bot.app import make_dispatcher
from bot.handlers import get_routers
from bot.throttle import BURST, PER_SECOND, ThrottleMiddleware, TokenBuckets, Verdict
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.models import Customer, Message
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
AGENT, LIVE, GUEST = 900, 700, 800
NOTICE = "too fast"

# ------------------------------------------------------------------ the bucket itself


def test_bucket_burst_then_refill_rate() -> None:
    b = TokenBuckets(burst=3, rate=1.0)
    assert [b.take("u", 0.0) for _ in range(3)] == [Verdict.ALLOW] * 3
    assert b.take("u", 0.0) is Verdict.NOTIFY
    assert b.take("u", 0.5) is Verdict.DROP  # half a token
    assert b.take("u", 1.0) is Verdict.ALLOW  # one token back a second later
    assert b.take("u", 1.0) is Verdict.DROP  # same episode: no second notice
    assert b.take("other", 1.0) is Verdict.ALLOW  # per key


def test_one_notice_per_episode_while_the_flood_goes_on() -> None:
    b = TokenBuckets(burst=10, rate=1.0)
    verdicts = [b.take("u", i * 0.25) for i in range(400)]  # 4 a second for 100 s
    assert verdicts.count(Verdict.NOTIFY) == 1
    # 10 at once, then one a second: never more than the rate allows.
    assert verdicts.count(Verdict.ALLOW) <= 10 + 100 + 1
    # Quiet long enough to be full again: the episode is over; a new flood is told again.
    t = 100 + 10 / 1.0 + 1
    assert [b.take("u", t) for _ in range(10)] == [Verdict.ALLOW] * 10
    assert b.take("u", t) is Verdict.NOTIFY


def test_always_passes_but_still_takes_tokens() -> None:
    b = TokenBuckets(burst=2, rate=1.0)
    assert [b.take("u", 0.0, always=True) for _ in range(5)] == [Verdict.ALLOW] * 5
    assert b.take("u", 0.0) is Verdict.NOTIFY  # the live chat's flood emptied the bucket


def test_idle_buckets_are_evicted_and_the_table_is_capped() -> None:
    b = TokenBuckets(burst=10, rate=1.0)
    for user in range(1000):
        b.take(user, 0.0)
    assert len(b) == 1000
    b.take("late", 9.0)  # 9 tokens + 9 s: full, so the same as no bucket
    assert len(b) == 1
    capped = TokenBuckets(burst=10, rate=1.0, max_buckets=50)
    for user in range(1000):
        capped.take(user, 0.0)
    assert len(capped) == 50 and 999 in capped and 0 not in capped


def test_bucket_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(burst=0, rate=1)
    with pytest.raises(ValueError):
        TokenBuckets(burst=5, rate=0)


# ------------------------------------------------------------------ through the dispatcher


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    db: Db
    api: FakeBotAPI
    bot: Bot
    dp: Dispatcher
    throttle: ThrottleMiddleware
    time: Monotonic

    async def feed(self) -> None:
        while self.api._pending:
            raw = self.api._pending.popleft()
            await self.dp.feed_update(
                self.bot, Update.model_validate(raw, context={"bot": self.bot})
            )

    async def say(self, user: int, text: str, times: int = 1) -> int:
        mark = self.api.mark()
        for _ in range(times):
            self.api.user_message(user, text)
        await self.feed()
        return mark

    def to(self, chat: int, since: int = 0) -> list[str]:
        return [c.text or "" for c in self.api.calls[since:] if c.chat_id == chat]

    def notices(self, chat: int, since: int = 0) -> int:
        texts = self.to(chat, since) + [
            str(c.params.get("text", ""))
            for c in self.api.calls[since:]
            if c.method == "answerCallbackQuery"
        ]
        return sum(NOTICE in t for t in texts)


def _detach_routers() -> None:
    for router in get_routers():
        router._parent_router = None


@pytest.fixture
async def h(sqlite_db: Db, policy: Policy) -> AsyncIterator[Harness]:
    async with sqlite_db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, AGENT, "Bob", now=NOW)
        cust = Customer(
            external_id="B1", name="Beth", tier="B", telegram_id=LIVE, created_at=NOW,
            updated_at=NOW,
        )  # fmt: skip
        s.add(cust)
        await s.flush()
        await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        assert await claim_next(s, agent, NOW) is not None
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        _detach_routers()
        dp = make_dispatcher(sqlite_db.sessions, policy, bot, clock=lambda: NOW)
        [throttle] = [m for m in dp.update.outer_middleware if isinstance(m, ThrottleMiddleware)]
        clock = Monotonic()
        throttle.now = clock
        try:
            yield Harness(sqlite_db, api, bot, dp, throttle, clock)
        finally:
            await bot.session.close()
            _detach_routers()


async def test_a_flood_costs_a_burst_of_replies_and_one_notice(h: Harness) -> None:
    mark = await h.say(GUEST, "hello", times=500)
    calls = h.to(GUEST, mark)
    assert len(calls) <= BURST + 3, len(calls)
    assert h.notices(GUEST, mark) == 1
    assert h.throttle.dropped == 500 - BURST
    # Still flooding a second later: one update passes, and no second notice.
    h.time.now += 1 / PER_SECOND
    mark = await h.say(GUEST, "hello", times=50)
    assert len(h.to(GUEST, mark)) == 1 and h.notices(GUEST, mark) == 0
    # Quiet until the bucket is full: served again, and a new flood is told again.
    h.time.now += BURST / PER_SECOND
    mark = await h.say(GUEST, "hello", times=BURST + 5)
    assert h.notices(GUEST, mark) == 1 and len(h.to(GUEST, mark)) == BURST + 1


async def test_the_notice_speaks_the_customers_language(h: Harness) -> None:
    mark = h.api.mark()
    for _ in range(BURST + 3):
        h.api.user_message(GUEST + 1, "你好", language_code="zh-hans")
    await h.feed()
    [notice] = [t for t in h.to(GUEST + 1, mark) if "太快" in t]
    assert notice


async def test_callback_presses_count_too(h: Harness) -> None:
    own = h.api.user_message(GUEST, "hello")
    await h.feed()
    h.time.now += 100  # a fresh bucket
    mark = h.api.mark()
    for _ in range(60):
        h.api.press(GUEST, int(own["message_id"]), "stale:1")
    await h.feed()
    answers = [c for c in h.api.calls[mark:] if c.method == "answerCallbackQuery"]
    assert len(answers) == BURST + 1
    assert sum(NOTICE in str(c.params.get("text", "")) for c in answers) == 1


async def test_agents_are_not_throttled(h: Harness) -> None:
    mark = await h.say(AGENT, "/help", times=60)
    assert len(h.to(AGENT, mark)) == 60 and h.notices(AGENT, mark) == 0
    assert h.throttle.dropped == 0 and AGENT not in h.throttle.buckets


async def test_a_customer_in_a_live_chat_loses_nothing(h: Harness) -> None:
    mark = await h.say(LIVE, "are you there?", times=100)
    assert h.notices(LIVE, mark) == 0 and h.throttle.dropped == 0
    async with h.db.sessions() as s:
        stored = await s.scalar(
            select(func.count()).select_from(Message).where(Message.sender == "customer")
        )
    assert stored == 100  # every message is in the transcript, on its way to the agent


async def test_idle_buckets_are_forgotten(h: Harness) -> None:
    for user in range(5000, 5040):
        h.api.user_message(user, "hi")
    await h.feed()
    assert len(h.throttle.buckets) == 40
    h.time.now += BURST / PER_SECOND + 1
    await h.say(GUEST, "hi")
    assert len(h.throttle.buckets) == 1


@pytest.mark.parametrize(
    ("code", "name"), [(429, "TelegramRetryAfter"), (403, "TelegramForbiddenError")]
)
async def test_a_refused_reply_is_one_log_line_without_a_traceback(
    h: Harness, caplog: pytest.LogCaptureFixture, code: int, name: str
) -> None:
    h.api.fail_next("sendMessage", code, retry_after=7 if code == 429 else None, chat_id=GUEST)
    with caplog.at_level(logging.INFO):
        await h.say(GUEST, "hello")  # the menu reply is refused; feed_update does not raise
    assert all(r.exc_info is None for r in caplog.records)
    [line] = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert "\n" not in line
