"""Identification through the real dispatcher and aiogram against the fake Bot API,
in-process: what a stranger guessing customer codes, an invitation's holder and the
previous owner of a relinked account are actually sent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import func, select

from bot import texts
from bot.app import make_dispatcher
from bot.handlers import get_routers
from bot.throttle import ThrottleMiddleware
from routing.customers import identity as customers
from routing.customers import invitations
from routing.policy.root import Policy, parse_policy
from routing.queue.agents import add_agent
from routing.store.models import CodeAttempt, Customer
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

T0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
STRANGER, OWNER, NEWPHONE = 666, 701, 702
MIA = 901  # the VIP's account manager
VIP_CODE = "V-1001"
CODE_FAILED = texts.customer.code_failed()
INVITE_FAILED = texts.customer.invite_failed()
RELINKED_AWAY = texts.customer.relinked_away()


@dataclass
class Harness:
    db: Db
    api: FakeBotAPI
    bot: Bot
    dp: Dispatcher
    policy: Policy
    now: datetime
    # The throttle's monotonic clock, moved with ``now``: a patient guesser, not a flood.
    mono: float = field(default_factory=time.monotonic)

    def clock(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    async def say(self, user: int, text: str | None = None, **kw: object) -> int:
        mark = self.api.mark()
        self.api.user_message(user, text, **kw)  # type: ignore[arg-type]
        while self.api._pending:
            raw = self.api._pending.popleft()
            await self.dp.feed_update(
                self.bot, Update.model_validate(raw, context={"bot": self.bot})
            )
        return mark

    def texts(self, chat: int, since: int = 0) -> list[str]:
        return [
            c.text or ""
            for c in self.api.calls[since:]
            if c.ok and c.chat_id == chat and c.method == "sendMessage"
        ]

    def calls_to(self, chat: int, since: int = 0) -> int:
        return sum(1 for c in self.api.calls[since:] if c.chat_id == chat)

    async def customer(self, external_id: str) -> Customer:
        async with self.db.sessions() as s:
            c = (
                await s.execute(select(Customer).where(Customer.external_id == external_id))
            ).scalar_one()
        return c

    async def invite(self, external_id: str, ttl: timedelta = timedelta(days=7)) -> str:
        async with self.db.sessions() as s, s.begin():
            made = await invitations.create_for_customer(s, external_id, now=self.now, ttl=ttl)
        assert made is not None
        return made.token


def _detach_routers() -> None:
    """The handler routers are module singletons: free them for the next test's dispatcher."""
    for router in get_routers():
        router._parent_router = None


async def _harness(db: Db, policy: Policy) -> AsyncIterator[Harness]:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        h = Harness(db, api, bot, None, policy, T0)  # type: ignore[arg-type]
        _detach_routers()
        h.dp = make_dispatcher(db.sessions, policy, bot, clock=h.clock)
        for mw in h.dp.update.outer_middleware:
            if isinstance(mw, ThrottleMiddleware):
                mw.now = lambda: h.mono
        async with db.sessions() as s, s.begin():
            await add_agent(s, MIA, "Mia", role="agent", max_chats=3, now=T0)
            # An imported VIP who has never written to the bot, with an account manager.
            s.add(Customer(external_id=VIP_CODE, name="Victoria", tier="VIP",
                           phone="+12025550143", account_manager="Mia",
                           created_at=T0, updated_at=T0))  # fmt: skip
            s.add(Customer(external_id="B-1", name="Bea", tier="B", phone="+12025550144",
                           account_manager="Mia", telegram_id=801,
                           created_at=T0, updated_at=T0))  # fmt: skip
        try:
            yield h
        finally:
            await bot.session.close()
            _detach_routers()


CODES_ON = {"identification": {"allow_code": True}}


@pytest.fixture
async def h(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, Policy()):
        yield x


@pytest.fixture
async def h_codes(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, parse_policy(CODES_ON)):
        yield x


async def test_300_wrong_codes_get_one_reply_and_only_5_lookups(
    h_codes: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = h_codes
    lookups = 0
    real = customers.link_by_code

    async def counted(*args: object, **kw: object) -> customers.LinkResult:
        nonlocal lookups
        lookups += 1
        return await real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(customers, "link_by_code", counted)
    await h.say(STRANGER, "/start")
    mark = h.api.mark()
    started = time.perf_counter()
    for i in range(300):
        h.advance(2)  # one guess every 2 s: under the flood throttle, so every one is handled
        await h.say(STRANGER, f"V-{i:04d}")
    elapsed = time.perf_counter() - started
    replies = h.texts(STRANGER, mark)
    # Every guess is answered, all with the very same words: nothing to tell codes apart.
    assert len(replies) == 300 and h.calls_to(STRANGER, mark) == 300
    assert set(replies) == {CODE_FAILED}
    # Only the first 5 were looked up; the rest were refused by the per-user limit.
    assert lookups == 5
    async with h.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(CodeAttempt)) == 5
    # The right code, within the hour, fails the same way and links nothing.
    mark = h.api.mark()
    await h.say(STRANGER, VIP_CODE)
    assert h.texts(STRANGER, mark) == [CODE_FAILED] and lookups == 5
    assert (await h.customer(VIP_CODE)).telegram_id is None
    print(f"\n300 guesses handled in {elapsed:.2f} s; {lookups} lookups")


async def test_not_found_and_already_linked_get_the_same_reply(h_codes: Harness) -> None:
    h = h_codes
    await h.say(STRANGER, "/start")
    mark = h.api.mark()
    await h.say(STRANGER, "NO-SUCH-CODE")
    h.advance(2)
    await h.say(STRANGER, "B-1")  # linked to Telegram user 801: never taken over by a code
    assert h.texts(STRANGER, mark) == [CODE_FAILED, CODE_FAILED]
    assert (await h.customer("B-1")).telegram_id == 801
    # A code that is free still links (the opt-in), within the limits.
    h.advance(2)
    mark = h.api.mark()
    await h.say(STRANGER, VIP_CODE)
    assert "Thank you, Victoria" in h.texts(STRANGER, mark)[0]


async def test_overall_limit_refuses_everyone_past_it(sqlite_db: Db) -> None:
    policy = parse_policy(
        {
            "identification": {
                "allow_code": True,
                "code_attempts_overall": 3,
                "code_overall_window_seconds": 60,
            }
        }
    )
    async for h in _harness(sqlite_db, policy):
        for user in (1001, 1002, 1003):
            await h.say(user, "/start")
            await h.say(user, "WRONG")
        await h.say(1004, "/start")
        mark = h.api.mark()
        await h.say(1004, VIP_CODE)  # the right code, but over the overall limit
        assert h.texts(1004, mark) == [CODE_FAILED]
        assert (await h.customer(VIP_CODE)).telegram_id is None
        h.advance(61)
        mark = h.api.mark()
        await h.say(1004, VIP_CODE)
        assert "Thank you, Victoria" in h.texts(1004, mark)[0]


async def test_default_policy_a_stranger_cannot_link_a_vip_by_code(h: Harness) -> None:
    mark = await h.say(STRANGER, "/start")
    ask = h.texts(STRANGER, mark)
    assert ask == [texts.customer.ask_identify_no_code()] and "customer code" not in ask[0]
    await h.say(STRANGER, VIP_CODE)
    await h.say(STRANGER, "/menu")
    assert (await h.customer(VIP_CODE)).telegram_id is None
    async with h.db.sessions() as s:
        me = await customers.by_telegram_id(s, STRANGER)
        assert me is not None and me.is_guest and me.tier == "C"
        assert await s.scalar(select(func.count()).select_from(CodeAttempt)) == 0


async def test_invitation_links_once_and_every_failure_reads_the_same(h: Harness) -> None:
    token = await h.invite(VIP_CODE)
    mark = await h.say(OWNER, f"/start {token}")
    assert "Thank you, Victoria" in h.texts(OWNER, mark)[0]
    assert (await h.customer(VIP_CODE)).telegram_id == OWNER
    # The holder opening it again is simply still recognised.
    mark = await h.say(OWNER, f"/start {token}")
    assert "Thank you, Victoria" in h.texts(OWNER, mark)[0]
    # Anyone else: used, expired and unknown tokens all get the same reply.
    used = h.texts(STRANGER, await h.say(STRANGER, f"/start {token}"))
    short = await h.invite("B-1", ttl=timedelta(hours=1))
    h.advance(2 * 3600)
    expired = h.texts(STRANGER, await h.say(STRANGER, f"/start {short}"))
    unknown = h.texts(STRANGER, await h.say(STRANGER, "/start " + "x" * 32))
    assert used == expired == unknown == [INVITE_FAILED]
    assert (await h.customer(VIP_CODE)).telegram_id == OWNER
    assert (await h.customer("B-1")).telegram_id == 801


async def test_relink_by_invitation_tells_the_previous_user_and_the_manager(h: Harness) -> None:
    await h.say(OWNER, f"/start {await h.invite(VIP_CODE)}")
    mark = await h.say(NEWPHONE, f"/start {await h.invite(VIP_CODE)}")
    assert (await h.customer(VIP_CODE)).telegram_id == NEWPHONE
    assert h.texts(OWNER, mark) == [RELINKED_AWAY]
    note = h.texts(MIA, mark)
    assert len(note) == 1 and "\n" not in note[0]
    assert VIP_CODE in note[0] and "invitation" in note[0]
    # The previous user is a guest now: no longer spoken to as the VIP.
    async with h.db.sessions() as s:
        assert await customers.by_telegram_id(s, OWNER) is None


async def test_relink_by_own_contact_tells_the_previous_user_not_a_low_tier_manager(
    h: Harness,
) -> None:
    mark = await h.say(NEWPHONE, contact={"phone_number": "12025550144", "user_id": NEWPHONE})
    assert "Thank you, Bea" in h.texts(NEWPHONE, mark)[0]
    assert (await h.customer("B-1")).telegram_id == NEWPHONE
    assert h.texts(801, mark) == [RELINKED_AWAY]
    assert h.texts(MIA, mark) == []  # B is not a human-first tier


async def test_a_foreign_contact_links_nothing(h: Harness) -> None:
    mark = await h.say(
        STRANGER, contact={"phone_number": "12025550143", "user_id": OWNER, "first_name": "V"}
    )
    assert h.texts(STRANGER, mark) == [texts.customer.foreign_contact()]
    assert (await h.customer(VIP_CODE)).telegram_id is None
