"""An update Telegram delivers twice is acted on once: stored in the inbox once, and its
relay guarded by the transcript row, even when a crash struck between the relay and the
inbox's "done" mark."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select, update

from bot.app import make_dispatcher
from bot.intake import Intake
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import inbox
from routing.store.models import (
    INBOX_DONE,
    INBOX_PENDING,
    INBOX_QUARANTINED,
    Agent,
    Conversation,
    Customer,
    InboundUpdate,
    Message,
)
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers

NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    """The routers are module-level: each test's dispatcher takes them over."""
    _detach_routers()
    yield
    _detach_routers()


async def _seed_live_chat(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
        cust = Customer(
            external_id="B1", name="Beth", tier="B", telegram_id=700, created_at=NOW, updated_at=NOW
        )
        s.add(cust)
        await s.flush()
        await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        assert await claim_next(s, agent, NOW) is not None


async def _status(db: Db, update_id: int) -> str | None:
    async with db.sessions() as s:
        row = await s.get(InboundUpdate, update_id)
        return row.status if row else None


async def test_redelivered_update_is_not_relayed_twice(db: Db, policy: Policy) -> None:
    await _seed_live_chat(db, policy)
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        raw = {"update_id": 1, "message": api.user_message(700, "hello again")}
        assert await intake.accept([raw]) == 1
        assert await intake.accept([raw]) == 0  # while it is being handled
        await intake.wait_idle()
        assert await _status(db, 1) == INBOX_DONE
        assert await intake.accept([raw]) == 0  # after it was handled
        await intake.wait_idle()

        # A crash after the relay but before the "done" mark: the next start handles the
        # stored update again, and the transcript row stops a second relay.
        async with db.sessions() as s, s.begin():
            await s.execute(update(InboundUpdate).values(status=INBOX_PENDING))
        restarted = Intake(dp, bot, db.sessions, lambda: NOW)
        assert await restarted.recover() == 1
        await restarted.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert len(api.calls_of("copyMessage", chat_id=900)) == 1

    # Done, not quarantined: the redelivery found its transcript row and stopped cleanly.
    assert await _status(db, 1) == INBOX_DONE
    async with db.sessions() as s:
        stored = await s.scalar(select(func.count()).select_from(Message))
    assert stored == 1


async def test_an_agents_message_redelivered_after_a_crash_is_done_not_retried(
    db: Db, policy: Policy
) -> None:
    """The agent's side of the same crash. The transcript row's guard rolls back its
    savepoint, which expires what the session holds; nothing may then load lazily outside
    the driver's context (on PostgreSQL that failed every attempt, MissingGreenlet, and the
    update was quarantined after five: seen in the three-instance kill test)."""
    await _seed_live_chat(db, policy)
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        raw = {"update_id": 1, "message": api.user_message(900, "we refund you today")}
        assert await intake.accept([raw]) == 1
        await intake.wait_idle()
        async with db.sessions() as s, s.begin():
            await s.execute(update(InboundUpdate).values(status=INBOX_PENDING))
        restarted = Intake(dp, bot, db.sessions, lambda: NOW)
        assert await restarted.recover() == 1
        await restarted.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert len(api.calls_of("copyMessage", chat_id=700)) == 1
    assert await _status(db, 1) == INBOX_DONE


async def test_an_update_aiogram_cannot_parse_is_quarantined_not_retried(
    db: Db, policy: Policy
) -> None:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        bad = api.unparseable_update(4242)
        good = {"update_id": bad["update_id"] + 1, "message": api.user_message(4343, "/help")}
        # One batch, as getUpdates returns it: the bad one must not sink the good one.
        assert await intake.accept([bad, good]) == 2
        await intake.wait_idle()
        await api.wait_for("sendMessage", chat_id=4343)
        await bot.session.close()
    async with db.sessions() as s:
        row = await s.get(InboundUpdate, bad["update_id"])
        assert row is not None and row.status == INBOX_QUARANTINED
        assert json.loads(row.payload) == bad  # kept as received, for a person to look at
        assert row.error and "ValidationError" in row.error
        assert await inbox.is_done(s, good["update_id"])


async def test_a_handler_that_keeps_failing_is_quarantined_after_its_attempts(
    db: Db, policy: Policy
) -> None:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        calls = 0

        @dp.update.outer_middleware()  # type: ignore[arg-type]
        async def explode(handler: object, event: object, data: object) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("a bug")

        intake = Intake(dp, bot, db.sessions, lambda: NOW, max_attempts=3, retry_first=0.01)
        raw = {"update_id": 9, "message": api.user_message(4343, "/help")}
        await intake.accept([raw])
        await intake.wait_idle()
        await bot.session.close()
    assert calls == 3
    assert await _status(db, 9) == INBOX_QUARANTINED


async def test_a_vip_chat_opened_before_a_crash_is_paged_and_answered_on_redelivery(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VIP's first message opens the chat and commits; the handling dies before the agents
    are paged and the customer answered (a SIGKILL there leaves the update stored; here the
    page raises once and the intake retries it). Handled again, the update finds its message
    already in the transcript; before, it stopped there and the chat waited with nobody told
    and the customer unanswered. It must finish the opening."""
    from bot.desk import Desk

    async with db.sessions() as s, s.begin():
        await add_agent(s, 900, "Bob", now=NOW)
        await s.execute(update(Agent).values(online=True))
        s.add(
            Customer(
                external_id="V1", name="Vera", tier="VIP", telegram_id=701,
                account_manager="Bob", created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    real_page = Desk.page
    crashes = [1]

    async def dies_once(self: Desk, *args: object, **kwargs: object) -> int:
        if crashes:
            crashes.pop()
            raise RuntimeError("killed between the commit and the page")
        return await real_page(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Desk, "page", dies_once)
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        raw = {"update_id": 1, "message": api.user_message(701, "my order is wrong")}
        assert await intake.accept([raw]) == 1
        # The failed attempt is retried, as the stored update is after a restart.
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert api.sent_to(900), "the manager was never paged"
        assert api.sent_to(701), "the customer was never answered"
    async with db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Message)) == 1
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 1
