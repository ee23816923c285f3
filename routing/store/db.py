"""Engine and session set-up, SQLite tuning, and schema migrations (alembic)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

import migrations
from routing.store import pg_pool, sqlite_driver

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///contactbot.db"
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# Writers from other processes (the CLI) queue this long for SQLite's write lock.
BUSY_TIMEOUT_MS = 30000


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event (below) issue BEGIN itself: the driver's implicit
        # deferred BEGIN would let two writers both read and then fail to upgrade their locks.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers queue on the busy timeout instead of failing with "database is locked".
        driver: Any = conn.connection.driver_connection
        raw = getattr(driver, "_conn", None)
        if (
            isinstance(raw, sqlite3.Connection)
            and sqlite_driver.is_inline()
            and sqlite_driver.begin_immediate_now(raw, BUSY_TIMEOUT_MS)
        ):
            return  # the lock was free: taken on the loop thread, no hand-off
        if hasattr(driver, "execute_fetchall"):
            # aiosqlite: one trip to its worker thread instead of three (cursor, execute,
            # close). Each trip is a thread hand-off costing ~0.1-0.2 ms, and every unit of
            # work begins this way: it is a measurable share of an update (bench/RESULTS.md).
            await_only(driver.execute_fetchall("BEGIN IMMEDIATE"))
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# Connections an instance holds at most on a server database (docs/deploy.md budgets them).
PG_POOL_SIZE = 15


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        if ":memory:" not in url and "mode=memory" not in url:
            # Every transaction takes SQLite's write lock (BEGIN IMMEDIATE), so a process
            # never runs two at once anyway. With one pooled connection, waiting writers
            # queue in the pool (FIFO, woken the moment it is free) instead of in SQLite's
            # busy handler, which sleeps 1, 2, 5 ... 100 ms between retries and wastes the
            # lock's idle time. Other processes (the CLI) still queue on busy_timeout.
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
            kwargs.setdefault("pool_timeout", 60)
        if make_url(url).get_driver_name() == "aiosqlite" and "module" not in kwargs:
            dbapi = sqlite_driver.one_trip_dbapi()
            if dbapi is not None:
                kwargs["module"] = dbapi
                # Statements may run on the loop's thread (sqlite_driver.inline), never at
                # the same time as the worker's: access is serialised by the pool.
                kwargs.setdefault("connect_args", {})["check_same_thread"] = False
        engine = create_async_engine(url, **kwargs)
        _tune_sqlite(engine)
        return engine
    # Up to PG_POOL_SIZE connections, each kept once opened. SQLAlchemy's default (5 kept,
    # 10 more opened for a burst and closed again when returned) opened and closed a
    # connection every few updates under load, each a TCP and TLS negotiation on our side,
    # a new backend process on the server's and its prepared statements lost: 2% of the
    # bot's CPU in the pipeline benchmark, more of the server's (issue 19). Same ceiling.
    kwargs.setdefault("pool_size", PG_POOL_SIZE)
    kwargs.setdefault("max_overflow", 0)
    # The connection handed back last is taken first: the few a steady load needs stay in
    # use, each with its prepared statements (asyncpg prepares a statement once per
    # connection; the hot path has a few dozen shapes) and its server process warm, where
    # taking them in turn prepared every shape on all fifteen (issue 19).
    kwargs.setdefault("pool_use_lifo", True)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled PostgreSQL connection is pinged before use only when it sat idle this long.
# ``pool_pre_ping`` pinged at every checkout, that is every transaction: a round trip costing
# about 0.3 ms of CPU and 1 ms of wall time each, on a hot path of four to six transactions
# per update (bench/RESULTS.md, issue 19). A connection in steady use has just worked; one
# that breaks anyway (the server restarted within the last seconds) fails its transaction,
# SQLAlchemy invalidates the pool, and the work is retried like any transient error (the
# inbox retries an update, the delivery queue a send).
PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # new, or in steady use
        if pg_pool.taking_now():
            # Taken on the loop, where nothing may wait: the taker pings (direct.checkout).
            record.info[pg_pool.PING_DUE] = True
            return
        pg_pool.ping(dialect, dbapi_conn)


class _InlineClosingSession(AsyncSession):
    """SQLite: inside ``sqlite_driver.inline()`` a session closes in place.

    SQLAlchemy closes an ``async with`` session in a task of its own and shields it, so that a
    cancellation cannot cut the close short. Inline, nothing in a close suspends (the
    rollback and the pool's reset run on the loop thread), so there is nothing to cut short,
    and the task cost a loop iteration per transaction, during which the pool's one
    connection stayed checked out while other updates waited for it (issue 19)."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if sqlite_driver.is_inline():
            if self.sync_session.get_transaction() is None:
                # No transaction, so no connection to hand back: nothing to do but forget
                # the instances, and no greenlet to do it in (most updates' sessions: the
                # handlers' own transactions have ended, self-service used none).
                self.sync_session.close()
                return
            await self.close()
        else:
            await super().__aexit__(type_, value, traceback)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    if is_sqlite(str(engine.url)):
        return async_sessionmaker(engine, expire_on_commit=False, class_=_InlineClosingSession)
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run on every start."""
    await _run_alembic(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run_alembic(engine, "downgrade", revision)


# pg_advisory_lock key held while migrating: "migrate" in ASCII.
MIGRATION_LOCK_KEY = 0x6D696772617465


async def _run_alembic(engine: AsyncEngine, verb: str, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(conn: Connection) -> None:
        # env.py uses this connection instead of opening its own (we are inside a loop).
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, revision)

    async with migration_lock(engine), engine.begin() as conn:
        # Under the lock, alembic reads alembic_version only once the previous holder has
        # committed: the second of two instances started together finds the schema at head
        # and does nothing, instead of failing on the alembic_version row.
        await conn.run_sync(run)


@asynccontextmanager
async def migration_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """One migration at a time across processes.

    PostgreSQL: a session-level advisory lock on a connection of its own, held around the
    whole upgrade (the migration runs in one transaction on another connection); a process
    killed while holding it loses its connection, and with it the lock. SQLite: the migration
    transaction begins with BEGIN IMMEDIATE (see ``_tune_sqlite``), SQLite's write lock, so
    a second process waits on the busy timeout and then reads the migrated version.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        args = {"k": MIGRATION_LOCK_KEY}
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), args):
            log.info("database migration: waiting for another instance's migration to finish")
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), args)
        await conn.commit()
        try:
            yield
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), args)
                await conn.commit()
            except Exception:  # never hand a connection that may hold the lock to the pool
                await conn.invalidate()


# --- scale-out: once-per-period jobs, the instances' heartbeats, shared settings -----------
