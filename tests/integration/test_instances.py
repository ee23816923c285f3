"""Instances on one database (issue "Three instances behave as one"): a heartbeat row per
running bot; set-ups that cannot work are refused at start with one line."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.app import build_app
from bot.config import Settings
from routing.store.cluster import AnotherInstance, Instance, register_instance
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN


async def _other(db: Db, *, has_redis: bool, age: float = 1.0, host: str = "web-2") -> None:
    now = datetime.now(UTC)
    async with db.sessions() as s, s.begin():
        s.add(
            Instance(
                id=f"{host}:4242:abcd",
                host=host,
                pid=4242,
                started_at=datetime(2026, 12, 9, 8, 0, tzinfo=UTC),
                last_seen=now - timedelta(seconds=age),
                has_redis=has_redis,
            )
        )


async def _rows(db: Db) -> int:
    async with db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Instance)) or 0)


async def test_sqlite_serves_one_bot_process(sqlite_db: Db) -> None:
    await _other(sqlite_db, has_redis=True)
    with pytest.raises(AnotherInstance) as exc:
        await register_instance(sqlite_db.sessions, has_redis=True)
    assert str(exc.value) == (
        "another instance is running on this database (web-2:4242 since 2026-12-09 08:00:00 "
        "UTC); a SQLite database serves one bot process: stop it first, or use PostgreSQL"
    )


async def test_a_stale_heartbeat_is_no_instance(db: Db) -> None:
    await _other(db, has_redis=False, age=16)  # SIGKILLed 16 s ago
    beat = await register_instance(db.sessions, has_redis=False)
    assert await _rows(db) == 1  # the stale row is gone, ours is there
    await beat.stop()
    assert await _rows(db) == 0


async def test_a_dead_process_of_this_host_is_no_instance(db: Db) -> None:
    # A bot SIGKILLed and restarted at once: its heartbeat is fresh, its pid is gone.
    dead = os.getpid() + 1
    while True:
        try:
            os.kill(dead, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        dead += 1
    async with db.sessions() as s, s.begin():
        now = datetime.now(UTC)
        host = socket.gethostname()
        s.add(
            Instance(
                id=f"{host}:{dead}:x", host=host, pid=dead, started_at=now, last_seen=now,
                has_redis=False,
            )
        )  # fmt: skip
    beat = await register_instance(db.sessions, has_redis=False)
    await beat.stop()


@pytest.mark.pg
async def test_postgresql_refuses_a_second_instance_without_redis(pg_db: Db) -> None:
    await _other(pg_db, has_redis=True)
    with pytest.raises(AnotherInstance) as exc:
        await register_instance(pg_db.sessions, has_redis=False)
    assert str(exc.value).endswith("several instances need CONTACTBOT_REDIS_URL")
    assert "(web-2:4242 since 2026-12-09 08:00:00 UTC)" in str(exc.value)


@pytest.mark.pg
async def test_postgresql_refuses_to_join_an_instance_without_redis(pg_db: Db) -> None:
    await _other(pg_db, has_redis=False)
    with pytest.raises(AnotherInstance, match="runs without CONTACTBOT_REDIS_URL"):
        await register_instance(pg_db.sessions, has_redis=True)


@pytest.mark.pg
async def test_postgresql_with_redis_everywhere_runs_several(pg_db: Db) -> None:
    await _other(pg_db, has_redis=True)
    await _other(pg_db, has_redis=True, host="web-3")
    beat = await register_instance(pg_db.sessions, has_redis=True)
    assert await _rows(pg_db) == 3
    await beat.stop()


async def test_the_heartbeat_renews_last_seen(db: Db) -> None:
    beat = await register_instance(db.sessions, has_redis=False)
    beat.interval = 0.05
    async with db.sessions() as s:
        first = await s.scalar(select(Instance.last_seen))
    beat.start()
    try:
        for _ in range(100):
            async with db.sessions() as s:
                if await s.scalar(select(Instance.last_seen)) != first:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("last_seen was not renewed")
    finally:
        await beat.stop()


@pytest.mark.pg
async def test_start_up_on_postgresql_without_redis_warns_and_refuses_a_second_one(
    pg_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=pg_db.url, token=DEFAULT_TOKEN, redis_url=None)
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        app = await build_app(settings, DEFAULT_TOKEN)
    warnings = [r for r in caplog.records if r.name == "bot.app"]
    assert len(warnings) == 1 and "no CONTACTBOT_REDIS_URL" in warnings[0].getMessage()
    await app.dp.emit_shutdown(bot=app.bot)  # a clean stop removes the row
    await app.bot.session.close()
    await app.engine.dispose()
    assert await _rows(pg_db) == 0

    await _other(pg_db, has_redis=True)
    with pytest.raises(SystemExit) as exc:
        await build_app(settings, DEFAULT_TOKEN)
    assert str(exc.value).startswith("contactbot: another instance is running on this database")
