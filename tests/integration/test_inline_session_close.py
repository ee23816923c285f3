"""SQLite, inside ``sqlite_driver.inline()`` (the bot's update handling): a session whose
transactions have ended closes in place, with no greenlet (issue 19: every update's session
paid one to forget its instances); one still in a transaction hands its connection back."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import session as async_session_module
from sqlalchemy.util import greenlet_spawn

from routing.store import sqlite_driver
from routing.store.models import Agent
from tests.conftest import Db

T = datetime(2026, 12, 3, tzinfo=UTC)


async def test_a_session_without_a_transaction_closes_without_a_greenlet(db: Db) -> None:
    if db.backend != "sqlite":
        pytest.skip("the inline close is SQLite's")
    async with db.sessions() as s, s.begin():
        s.add(Agent(telegram_id=1, name="Ann", role="agent", created_at=T))
    spawn = mock.Mock(wraps=async_session_module.greenlet_spawn)
    with sqlite_driver.inline(), mock.patch.object(async_session_module, "greenlet_spawn", spawn):
        async with db.sessions() as s:
            async with s.begin():
                agent = (await s.execute(select(Agent))).scalar_one()
            used = spawn.call_count
        assert spawn.call_count == used  # the close itself spawned none
        assert agent not in s  # and the session let go of its instances
    pool = db.engine.sync_engine.pool
    assert pool.checkedout() == 0


async def test_a_session_left_in_a_transaction_hands_its_connection_back(db: Db) -> None:
    if db.backend != "sqlite":
        pytest.skip("the inline close is SQLite's")
    with sqlite_driver.inline():
        async with db.sessions() as s:
            await s.execute(select(Agent))  # autobegun, never committed
            assert s.in_transaction()
    assert db.engine.sync_engine.pool.checkedout() == 0
    async with db.sessions() as s, s.begin():  # the pool's one connection is free again
        s.add(Agent(telegram_id=2, name="Bob", role="agent", created_at=T))


async def test_an_idle_connection_is_taken_and_returned_inline(db: Db) -> None:
    """The direct statements' checkout (routing/store/direct.py): an idle connection without a
    greenlet; none when not inline, none idle, or the idle one must be opened again."""
    if db.backend != "sqlite":
        pytest.skip("the inline driver is SQLite's")
    sync_engine = db.engine.sync_engine
    pool = sync_engine.pool
    async with db.engine.connect():
        pass  # the pool's connection is open and idle
    assert sqlite_driver.checkout_now(sync_engine) is None  # not inline
    with sqlite_driver.inline():
        raw = sqlite_driver.checkout_now(sync_engine)
        assert raw is not None and pool.checkedout() == 1
        assert sqlite_driver.checkout_now(sync_engine) is None  # the only one is taken
        raw.driver_connection._conn.execute("SELECT 1")
        assert sqlite_driver.checkin_now(raw)
        assert pool.checkedout() == 0
        # An invalidated connection is opened again the usual way, in a greenlet.
        raw = sqlite_driver.checkout_now(sync_engine)
        assert raw is not None
        raw.invalidate()
        await greenlet_spawn(raw.close)
        assert sqlite_driver.checkout_now(sync_engine) is None
        assert pool.checkedout() == 0
        async with db.sessions() as s, s.begin():
            s.add(Agent(telegram_id=3, name="Cy", role="agent", created_at=T))
        raw = sqlite_driver.checkout_now(sync_engine)
        assert raw is not None
        assert sqlite_driver.checkin_now(raw)
