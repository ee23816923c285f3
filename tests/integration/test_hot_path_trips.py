"""The hot path makes no thread hand-offs (issue 19): a customer's relayed message and a
self-service text are handled and marked done without aiogram sending a filter to a worker
thread and, on SQLite, without a trip to the driver's thread. Each hand-off cost more than
the work it carried (bench/RESULTS.md); these tests keep them from coming back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event import handler as aiogram_handler
from aiogram.types import Message

from bot.app import make_dispatcher
from bot.intake import Intake
from bot.on_loop import run_sync_filters_on_loop, sync_callables
from routing.policy.root import Policy
from routing.store import inbox
from routing.store.models import INBOX_DONE, InboundUpdate
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers
from tests.integration.test_redelivery import _seed_live_chat

NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


async def test_no_filter_of_the_bot_is_left_to_a_thread(db: Db, policy: Policy) -> None:
    dp = make_dispatcher(db.sessions, policy, Bot(DEFAULT_TOKEN))
    assert sync_callables(dp) == []


def test_the_pass_moves_sync_filters_keeps_their_answers_and_refuses_sync_handlers() -> None:
    router = Router(name="r")

    @router.message(F.text.startswith("/"), lambda message: message.text != "/no")
    async def command(message: Message) -> None:
        pass

    dp = Dispatcher()
    dp.include_router(router)
    assert len(sync_callables(dp)) == 2
    assert run_sync_filters_on_loop(dp) == 2
    assert sync_callables(dp) == []
    assert run_sync_filters_on_loop(dp) == 0  # idempotent: the routers are shared

    def sync_handler(message: Message) -> None:
        pass

    other = Router(name="other")
    other.message.register(sync_handler)
    dp.include_router(other)
    with pytest.raises(TypeError, match="sync_handler"):
        run_sync_filters_on_loop(dp)


async def test_filters_moved_to_the_loop_still_decide(db: Db, policy: Policy) -> None:
    """The pass changes where a filter runs, not what it answers: a command is not relayed
    (``~F.text.startswith("/")`` on the relay), a plain text is."""
    await _seed_live_chat(db, policy)
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        await intake.accept([{"update_id": 1, "message": api.user_message(700, "/nonsense")}])
        await intake.accept([{"update_id": 2, "message": api.user_message(700, "hello")}])
        await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
    assert len(api.calls_of("copyMessage", chat_id=900)) == 1  # "hello" only


async def test_handling_and_marking_done_makes_no_hand_off(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.backend != "sqlite":
        pytest.skip("the driver's thread is SQLite's (aiosqlite); asyncpg has none")
    await _seed_live_chat(db, policy)
    threads: list[str] = []
    trips: list[str] = []

    async def no_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(repr(fn))
        return fn(*args, **kwargs)

    real_execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real_execute(self, fn, *args, **kwargs)

    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        intake = Intake(dp, bot, db.sessions, lambda: NOW)
        raws = [
            {"update_id": 1, "message": api.user_message(700, "hello")},  # relayed to Bob
            {"update_id": 2, "message": api.user_message(701, "where is my order?")},  # guest
        ]
        # Stored first (the batch insert is not the hot path), then handled and marked: the
        # handling starts at the first await after recover() returns, with the counters on.
        rows, _bad = inbox.parse_batch(raws)
        async with db.sessions() as s, s.begin():
            await inbox.store(s, rows, NOW)
        assert await intake.recover() == 2
        monkeypatch.setattr(aiogram_handler.asyncio, "to_thread", no_thread)
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await intake.wait_idle()
        monkeypatch.undo()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
    async with db.sessions() as s:
        for update_id in (1, 2):
            row = await s.get(InboundUpdate, update_id)
            assert row is not None and row.status == INBOX_DONE
    assert len(api.calls_of("copyMessage", chat_id=900)) == 1
    assert api.calls_of("sendMessage", chat_id=701)  # the guest was answered
    assert threads == []
    assert trips == []
