"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when configured)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from routing.policy.root import Policy
from routing.store.db import make_engine, make_sessionmaker, upgrade
from tests.template_databases import migrated_pg, migrated_sqlite
from tests.xdist_databases import use_worker_databases

use_worker_databases()
PG_URL = os.environ.get("CONTACTBOT_TEST_PG_URL")
REDIS_URL = os.environ.get("CONTACTBOT_TEST_REDIS_URL")


@dataclass
class Db:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name


@dataclass
class LoopTicks:
    """How often the event loop got to run a 20 ms ticker: proof that a wait happened off
    the loop (a SQLite lock waited for on the driver's thread, not on the loop's)."""

    count: int = 0


@contextlib.asynccontextmanager
async def loop_ticks() -> AsyncIterator[LoopTicks]:
    ticks = LoopTicks()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.02)
            ticks.count += 1

    beat = asyncio.create_task(ticker())
    try:
        yield ticks
    finally:
        beat.cancel()


async def reset_pg(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def _make_db(url: str) -> Db:
    """The database at ``url``, a copy of this process's migrated template
    (tests/template_databases.py), upgraded (a no-op at head) as the bot does at start."""
    engine = make_engine(url)
    await upgrade(engine)
    return Db(url, engine, make_sessionmaker(engine))


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Db]:
    db = await _make_db(await migrated_sqlite(tmp_path / "test.db"))
    yield db
    await db.engine.dispose()


@pytest.fixture
async def pg_db() -> AsyncIterator[Db]:
    if not PG_URL:
        pytest.skip(
            "PostgreSQL tests need CONTACTBOT_TEST_PG_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
        )
    await migrated_pg(PG_URL)
    db = await _make_db(PG_URL)
    yield db
    await db.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    """The same test on every supported backend."""
    if request.param == "sqlite":
        url = await migrated_sqlite(tmp_path / "test.db")
    else:
        if not PG_URL:
            pytest.skip(
                "PostgreSQL tests need CONTACTBOT_TEST_PG_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
            )
        await migrated_pg(PG_URL)
        url = PG_URL
    database = await _make_db(url)
    yield database
    await database.engine.dispose()


@pytest.fixture
def policy() -> Policy:
    return Policy()


TESTS = Path(__file__).resolve().parent
# Every test in these folders runs real bot processes against the fake Bot API.
E2E_DIRS = {"e2e", "multi"}
# The benchmark smoke tests: each runs a benchmark at its tiny size (bots, databases).
# tests/unit/test_knowledge_bench_smoke.py is left out: it takes milliseconds.
SLOW_DIRS = {"integration", "multi"}
SLOW_FILES = "test_*_smoke.py"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by place: ``e2e`` for tests/e2e/ and tests/multi/, ``slow`` for the bench smoke
    tests. Deselect with ``pytest -m "not slow"`` (or ``"not e2e"``)."""
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(TESTS):
            continue
        room = path.relative_to(TESTS).parts[0]
        if room in E2E_DIRS and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
        if room in SLOW_DIRS and path.match(SLOW_FILES) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
