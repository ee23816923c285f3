"""Inside ``sqlite_driver.inline()`` a transaction takes SQLite's write lock on the loop
thread when it is free (no hand-off to the driver's thread), and when another process holds
it, waits on the driver's thread: the event loop never waits for the lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from routing.store import sqlite_driver
from routing.store.db import BUSY_TIMEOUT_MS, make_engine
from tests.conftest import loop_ticks


def test_begin_immediate_now_takes_a_free_lock_and_gives_way_to_a_held_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock.db"
    mine = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)
    mine.execute("PRAGMA busy_timeout=30000")
    assert sqlite_driver.begin_immediate_now(mine, 30000)
    mine.execute("ROLLBACK")
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert not sqlite_driver.begin_immediate_now(mine, 30000)
    assert time.monotonic() - started < 1.0  # did not wait the busy timeout
    assert mine.execute("PRAGMA busy_timeout").fetchone()[0] == 30000  # restored
    other.execute("ROLLBACK")
    mine.close()
    other.close()


async def test_a_held_lock_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        # Another process's writer holds the lock for 0.5 s.
        other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        async with loop_ticks() as ticks:
            with sqlite_driver.inline():
                started = time.monotonic()
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t VALUES (1)"))
                waited = time.monotonic() - started
        assert waited >= 0.4  # it waited for the lock (busy timeout, not an error)
        assert ticks.count >= 10  # and the loop kept running meanwhile
        # Free again: taken on the loop thread, and the busy timeout is as configured.
        with sqlite_driver.inline():
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))
                busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
        assert busy == BUSY_TIMEOUT_MS
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        other.close()
    finally:
        await engine.dispose()
