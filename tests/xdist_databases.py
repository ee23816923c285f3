"""Parallel test runs (pytest-xdist): each worker gets a PostgreSQL database and a Redis
database of its own, so tests that reset the schema or flush Redis never meet.

Called from the top of tests/conftest.py, before anything reads ``CONTACTBOT_TEST_PG_URL``
/ ``CONTACTBOT_TEST_REDIS_URL`` (a ``pytest_configure`` hook would run too late: initial
conftests are imported before it): worker ``gwN`` uses ``<database>_gwN`` (created on first
use) and Redis database ``(base - N) mod 16``. Without xdist nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import os

from sqlalchemy.engine import make_url


async def _create_database(url: str, name: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    base = make_url(url).set(drivername="postgresql")
    conn = await asyncpg.connect(base.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another worker or run may create it meanwhile.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def use_worker_databases() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    n = int(worker.removeprefix("gw"))
    pg = os.environ.get("CONTACTBOT_TEST_PG_URL")
    if pg:
        url = make_url(pg)
        name = f"{url.database}_{worker}"
        asyncio.run(_create_database(pg, name))
        os.environ["CONTACTBOT_TEST_PG_URL"] = url.set(database=name).render_as_string(
            hide_password=False
        )
    redis = os.environ.get("CONTACTBOT_TEST_REDIS_URL")
    if redis:
        head, _, db = redis.rstrip("/").rpartition("/")
        base = int(db) if db.isdigit() else 0
        os.environ["CONTACTBOT_TEST_REDIS_URL"] = f"{head}/{(base - n) % 16}"
