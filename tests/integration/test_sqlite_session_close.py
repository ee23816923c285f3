"""SQLite, inside ``sqlite_driver.inline()``: a session closes in place, without the task
SQLAlchemy spawns per close (a loop iteration per transaction, with the pool's one
connection held through it), and a cancelled task still leaves its connection returned."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import base as sa_async_base

from routing.store import sqlite_driver
from routing.store.db import make_engine, make_sessionmaker


async def test_inline_close_spawns_no_task_and_survives_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    sessions = make_sessionmaker(engine)
    spawned: list[Any] = []
    real = sa_async_base.asyncio.create_task

    def counting(coro: Any, **kw: Any) -> Any:
        spawned.append(coro)
        return real(coro, **kw)

    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        monkeypatch.setattr(sa_async_base.asyncio, "create_task", counting)
        with sqlite_driver.inline():
            for i in range(5):
                async with sessions() as s, s.begin():
                    await s.execute(text("INSERT INTO t VALUES (:x)"), {"x": i})
        assert spawned == []
        # Outside inline() the stock close (a shielded task) is kept.
        async with sessions() as s, s.begin():
            await s.execute(text("INSERT INTO t VALUES (5)"))
        assert len(spawned) == 1

        # A task cancelled while inside a session: the session is closed, its connection is
        # back in the pool, and the next transaction gets it.
        entered = asyncio.Event()

        async def held() -> None:
            with sqlite_driver.inline():
                async with sessions() as s, s.begin():
                    await s.execute(text("INSERT INTO t VALUES (6)"))
                    entered.set()
                    await asyncio.sleep(10)

        task = asyncio.create_task(held())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.sync_engine.pool.checkedout() == 0
        with sqlite_driver.inline():
            async with sessions() as s, s.begin():
                count = (await s.execute(text("SELECT count(*) FROM t"))).scalar()
        assert count == 6  # the cancelled transaction's row was rolled back
    finally:
        await engine.dispose()
