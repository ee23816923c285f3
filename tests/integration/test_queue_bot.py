"""The queue through the real dispatcher and aiogram against the fake Bot API, in-process:
what agents, supervisors and customers are actually sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import select

from bot.app import make_dispatcher
from bot.desk import Desk
from bot.handlers import get_routers
from routing.policy.root import Policy, parse_policy
from routing.queue.agents import add_agent
from routing.store.models import QUEUED, Agent, Conversation, Customer
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, Call, FakeBotAPI

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ANN, BOB, SUE = 901, 902, 909
VIPC, BC = 501, 502


@dataclass
class Harness:
    db: Db
    api: FakeBotAPI
    bot: Bot
    dp: Dispatcher
    policy: Policy
    now: datetime

    def clock(self) -> datetime:
        return self.now

    async def feed(self) -> None:
        """Hand every queued update to the dispatcher, as polling would, one at a time."""
        while self.api._pending:
            raw = self.api._pending.popleft()
            await self.dp.feed_update(
                self.bot, Update.model_validate(raw, context={"bot": self.bot})
            )

    async def say(self, user: int, text: str) -> int:
        mark = self.api.mark()
        self.api.user_message(user, text)
        await self.feed()
        return mark

    async def press(self, user: int, call: Call, label: str) -> int:
        mark = self.api.mark()
        data = next(
            b["callback_data"]
            for row in call.params["reply_markup"]["inline_keyboard"]
            for b in row
            if label in b["text"]
        )
        self.api.press(user, int(call.result["message_id"]), data)
        await self.feed()
        return mark

    async def sweep_mark(self) -> int:
        """One pass of the scheduler's queue sweep; returns the call mark before it."""
        mark = self.api.mark()
        desk: Desk = self.dp["desk"]
        async with self.db.sessions() as s:
            await desk.queue.sweep(s)
        return mark

    def texts(self, chat: int, since: int = 0) -> list[str]:
        return [c.text or "" for c in self.api.calls[since:] if c.ok and c.chat_id == chat]

    def last(self, chat: int, contains: str) -> Call:
        return [c for c in self.api.calls if c.chat_id == chat and contains in (c.text or "")][-1]

    async def conv(self, customer_tg: int) -> Conversation:
        async with self.db.sessions() as s:
            conv = (
                await s.execute(
                    select(Conversation)
                    .join(Customer, Customer.id == Conversation.customer_id)
                    .where(Customer.telegram_id == customer_tg)
                    .order_by(Conversation.id.desc())
                )
            ).scalars().first()  # fmt: skip
        assert conv is not None
        return conv


async def _harness(db: Db, policy: Policy) -> AsyncIterator[Harness]:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        h = Harness(db, api, bot, None, policy, T0)  # type: ignore[arg-type]
        _detach_routers()
        h.dp = make_dispatcher(db.sessions, policy, bot, clock=h.clock)
        async with db.sessions() as s, s.begin():
            for tg, name, role, cap in ((ANN, "Ann", "agent", 1), (BOB, "Bob", "agent", 3),
                                         (SUE, "Sue", "supervisor", 3)):  # fmt: skip
                a, _ = await add_agent(s, tg, name, role=role, max_chats=cap, now=T0)
                a.online = role == "agent"
            for tg, tier in ((VIPC, "VIP"), (BC, "B")):
                s.add(Customer(external_id=f"E{tg}", name=f"Cust{tg}", tier=tier, telegram_id=tg,
                               created_at=T0, updated_at=T0))  # fmt: skip
        try:
            yield h
        finally:
            await bot.session.close()
            _detach_routers()


def _detach_routers() -> None:
    """The handler routers are module singletons: free them for the next test's dispatcher."""
    for router in get_routers():
        router._parent_router = None


@pytest.fixture
async def h(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, Policy()):
        yield x


@pytest.fixture
async def h_offer(sqlite_db: Db) -> AsyncIterator[Harness]:
    policy = parse_policy({"queue": {"routing_mode": "offer", "offer_timeout_seconds": 30}})
    async for x in _harness(sqlite_db, policy):
        yield x


async def test_capacity_refusal_on_next_and_claim(h: Harness) -> None:
    await h.say(BC, "/human")
    await h.say(VIPC, "I need help")
    await h.say(ANN, "/next")  # the VIP chat
    mark = await h.say(ANN, "/next")
    assert any("1 open chats, your maximum" in t for t in h.texts(ANN, mark))
    # The Claim button on the B chat's page is refused the same way, with an alert.
    page = next(c for c in h.api.calls_of("sendMessage", ANN) if "Cust502" in (c.text or ""))
    mark = await h.press(ANN, page, "Claim")
    answers = [c for c in h.api.calls[mark:] if c.method == "answerCallbackQuery"]
    assert "your maximum" in answers[-1].params["text"]
    assert (await h.conv(BC)).status == QUEUED


async def test_transfer_with_note_shows_note_and_transcript(h: Harness) -> None:
    await h.say(VIPC, "My order is late")
    await h.say(BOB, "/next")
    await h.say(BOB, "Let me check")
    mark = await h.say(BOB, "/transfer ann refund please")
    conv = await h.conv(VIPC)
    async with h.db.sessions() as s:
        ann = (await s.execute(select(Agent).where(Agent.telegram_id == ANN))).scalar_one()
    assert conv.agent_id == ann.id and conv.transfer_note == "refund please"
    ann_texts = h.texts(ANN, mark)
    assert any("Transferred by Bob. Note: refund please" in t for t in ann_texts)
    # The transcript so far, both sides, labelled (who said what, when).
    assert "Customer 12:00: My order is late\nAgent Bob 12:00: Let me check" in ann_texts
    assert not [c for c in h.api.calls[mark:] if c.method == "copyMessage" and c.chat_id == ANN]
    assert any("transferred to Ann" in t for t in h.texts(VIPC, mark))
    # /transfer alone: back to the queue, keeping its arrival time.
    await h.say(ANN, "/transfer")
    back = await h.conv(VIPC)
    assert back.status == QUEUED and back.queued_at == conv.queued_at
    assert back.queue_key == conv.queue_key


async def test_offline_requeues_and_pages(h: Harness) -> None:
    await h.say(BC, "/human")
    await h.say(BOB, "/next")
    mark = await h.say(BOB, "/offline")
    assert any("went back to the front of the queue" in t for t in h.texts(BOB, mark))
    assert any("back in the queue" in t for t in h.texts(BC, mark))
    assert (await h.conv(BC)).status == QUEUED
    assert any("New chat" in t for t in h.texts(ANN, mark))


async def test_sla_warning_and_breach_page_supervisors_and_reannounce(h: Harness) -> None:
    await h.say(VIPC, "Hello?")
    h.now = T0 + timedelta(seconds=50)
    mark = await h.sweep_mark()
    sue = h.texts(SUE, mark)
    assert any("SLA warning (first response)" in t for t in sue)
    assert any("nears its response target" in t for t in h.texts(ANN, mark))
    h.now = T0 + timedelta(seconds=61)
    mark = await h.sweep_mark()
    assert any("SLA breach (first response)" in t for t in h.texts(SUE, mark))
    reannounced = h.last(BOB, "response target is missed")
    assert "Claim" in str(reannounced.params["reply_markup"])
    h.now = T0 + timedelta(seconds=70)
    mark = await h.sweep_mark()
    assert not any("SLA" in t for t in h.texts(SUE, mark))  # once


async def test_customer_position_message(h: Harness) -> None:
    # Ann (one chat at most) is busy with a VIP, Bob is offline: Beth will wait.
    await h.say(BOB, "/offline")
    await h.say(VIPC, "hello")
    await h.say(ANN, "/next")
    await h.say(BC, "/human")
    # The sweep leaves a chat to its opener for a few seconds (estimate.OPENING_GRACE).
    h.now += timedelta(seconds=11)
    mark = await h.sweep_mark()
    # One slot, 300 s default handle time: about 5 minutes.
    [msg] = [t for t in h.texts(BC, mark) if "in the queue" in t]
    assert "number 1" in msg and "about 5 min" in msg
    mark = await h.sweep_mark()
    assert h.texts(BC, mark) == []  # unchanged: not told again
    await h.say(BOB, "/online")
    mark = await h.sweep_mark()
    [msg] = [t for t in h.texts(BC, mark) if "in the queue" in t]
    assert "less than a minute" in msg


async def test_nobody_online_is_said_once(h: Harness) -> None:
    await h.say(BOB, "/offline")
    await h.say(ANN, "/offline")
    mark = await h.say(BC, "/human")
    assert sum("No agent is online" in t for t in h.texts(BC, mark)) == 1
    mark = await h.sweep_mark()
    assert h.texts(BC, mark) == []


async def test_offer_mode_timeout_passes_to_next_agent_who_accepts(h_offer: Harness) -> None:
    h = h_offer
    mark = await h.say(BC, "/human")
    # Ann and Bob both idle: the longest idle with the lowest id (Ann) is offered it.
    offer = h.last(ANN, "Chat offered to you")
    assert not any("offered" in t for t in h.texts(BOB, mark))
    h.now = T0 + timedelta(seconds=31)
    mark = await h.sweep_mark()
    assert any("timed out" in t for t in h.texts(ANN, mark) + [
        c.params.get("text", "") for c in h.api.calls[mark:] if c.method == "editMessageText"
    ])  # fmt: skip
    to_bob = h.last(BOB, "Chat offered to you")
    # Ann's stale Accept no longer works; Bob's does.
    mark = await h.press(ANN, offer, "Accept")
    answers = [c for c in h.api.calls[mark:] if c.method == "answerCallbackQuery"]
    assert "no longer open" in answers[-1].params["text"]
    await h.press(BOB, to_bob, "Accept")
    conv = await h.conv(BC)
    async with h.db.sessions() as s:
        bob = (await s.execute(select(Agent).where(Agent.telegram_id == BOB))).scalar_one()
    assert conv.agent_id == bob.id


async def test_a_page_that_meets_a_429_waits_it_out_and_arrives_once(h: Harness) -> None:
    """Telegram answers 429 to a burst into one chat. A VIP's page into a busy agent's chat
    was lost to it (logged, the VIP announced to nobody); now it waits ``retry_after`` and
    goes, and the chat is paced for everyone sending into it."""
    h.api.fail_next("sendMessage", 429, retry_after=1, chat_id=ANN)
    mark = await h.say(VIPC, "I need help")
    pages = [t for t in h.texts(ANN, mark) if "New chat" in t and f"Cust{VIPC}" in t]
    assert len(pages) == 1
    assert h.api.count_429 == 1
    # Bob's page was not held up behind Ann's 429 for longer than it lasted.
    assert [t for t in h.texts(BOB, mark) if "New chat" in t]


async def test_an_offer_that_meets_a_429_waits_it_out_and_arrives(h_offer: Harness) -> None:
    h = h_offer
    for agent in (ANN, BOB):
        h.api.fail_next("sendMessage", 429, retry_after=1, chat_id=agent)
    mark = await h.say(VIPC, "I need help")
    offers = [t for a in (ANN, BOB) for t in h.texts(a, mark) if f"Cust{VIPC}" in t]
    assert len(offers) == 1 and h.api.count_429 == 1
