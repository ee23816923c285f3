"""Connection settings for bulk jobs (a full rescore, a large import) on SQLite.

The bot's connection is tuned for many short transactions, with SQLite's default page cache
(2 MiB). A job that walks a million customers and a covering index of ten million orders,
and rewrites a million customer rows, wants a larger cache (fewer dirty pages spilled to the
WAL mid-transaction). ``bulk_settings`` sets it on the session's connection for the length
of the job and puts the previous value back afterwards: on SQLite a process has one pooled
connection (``routing.store.db.make_engine``), shared with the bot's handlers.

On other backends it does nothing (PostgreSQL's buffers are the server's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

# 64 MiB of page cache (negative: KiB). Not temp_store=MEMORY: SQLite refuses to change it
# inside a transaction once temporary storage exists, and the job runs in the caller's.
# Not mmap: mapped pages count as the bot's resident memory (a 1M-customer rescore showed
# 905 MiB peak RSS) and gave no measurable speed on the rescore benchmark (bench/RESULTS.md).
BULK_PRAGMAS: tuple[tuple[str, int], ...] = (("cache_size", -65_536),)
# A job of many transactions (an import) also checkpoints the WAL less often. By default a
# commit that leaves more than 1,000 pages in the WAL copies them all into the database file,
# and every 20,000-order batch of an import rewrites most of the covering index's pages, so
# each page was copied once per batch. With 50,000 pages (at most about 200 MiB of WAL, on
# disk while the job runs) a page is copied once for several batches: 1,000,000 orders
# 49.4 / 47.7 -> 40.1 / 41.8 s wall, CPU the same (alternating runs at load 3-4,
# bench/RESULTS.md). After the job a passive checkpoint (it neither waits for nor blocks
# the bot's writers) copies what is left, so that no later commit of the bot's pays for it.
MANY_TRANSACTIONS_PRAGMAS: tuple[tuple[str, int], ...] = (("wal_autocheckpoint", 50_000),)


@asynccontextmanager
async def bulk_settings(
    session: AsyncSession, *, own_transactions: bool = False
) -> AsyncIterator[None]:
    """The bulk PRAGMAs on the session's connection, the previous values restored after.

    By default inside the caller's transaction (a rescore). ``own_transactions``: the session
    is between transactions and the job runs many (an import, a transaction per batch); the
    settings, with ``MANY_TRANSACTIONS_PRAGMAS``, are applied and restored in short
    transactions of their own, and the WAL is checkpointed passively after. PRAGMAs belong to
    the connection, so they hold across the job's transactions on it.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    if own_transactions:
        async with session.begin():
            before = await _apply(session, BULK_PRAGMAS + MANY_TRANSACTIONS_PRAGMAS)
        try:
            yield
        finally:
            async with session.begin():
                await _apply(session, before)
            await _checkpoint(session)
        return
    before = await _apply(session, BULK_PRAGMAS)
    try:
        yield
    finally:
        await _apply(session, before)


async def _apply(
    session: AsyncSession, pragmas: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, int], ...]:
    """Set ``pragmas``; returns their previous values."""
    conn = await session.connection()
    before: list[tuple[str, int]] = []
    for name, value in pragmas:
        old = (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
        before.append((name, int(old or 0)))
        await conn.exec_driver_sql(f"PRAGMA {name} = {int(value)}")
    return tuple(before)


async def _checkpoint(session: AsyncSession) -> None:
    """``PRAGMA wal_checkpoint(PASSIVE)``: SQLite refuses it inside a transaction, and every
    transaction of ours begins with BEGIN IMMEDIATE (``routing.store.db``), so it runs on the
    driver's connection, checked out (the session holds none between transactions) but with
    no transaction begun. PASSIVE: it copies what it can without waiting for anyone."""
    engine: Any = session.bind
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
