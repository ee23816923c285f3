"""Engine and session set-up, SQLite tuning, and schema migrations (alembic)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, delete, event, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.util import await_only

import migrations
from routing.models import Base, UtcDateTime

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///contactbot.db"
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


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
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers queue on the busy timeout instead of failing with "database is locked".
        driver: Any = conn.connection.driver_connection
        if hasattr(driver, "execute_fetchall"):
            # aiosqlite: one trip to its worker thread instead of three (cursor, execute,
            # close). Each trip is a thread hand-off costing ~0.1-0.2 ms, and every unit of
            # work begins this way: it is a measurable share of an update (bench/RESULTS.md).
            await_only(driver.execute_fetchall("BEGIN IMMEDIATE"))
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


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
            from routing.sqlite_driver import one_trip_dbapi

            dbapi = one_trip_dbapi()
            if dbapi is not None:
                kwargs["module"] = dbapi
                # Statements may run on the loop's thread (sqlite_driver.inline), never at
                # the same time as the worker's: access is serialised by the pool.
                kwargs.setdefault("connect_args", {})["check_same_thread"] = False
        engine = create_async_engine(url, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def leader(sessions: async_sessionmaker[AsyncSession], key: int) -> AsyncIterator[bool]:
    """Yields True if this process should run a periodic job now.

    On PostgreSQL several bot instances share the database, and a sweep run by two of them
    at once would act twice (two offers, two reminders, reconciling another's live claims):
    only the instance that holds the advisory lock ``key`` runs it. SQLite means a single
    process, so it always leads.
    """
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        yield True
        return
    async with engine.connect() as conn:
        got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        await conn.commit()  # a session-level lock: it outlives the transaction
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


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


class JobRun(Base):
    """The last period each scheduled job ran for, one row per job. Several instances tick
    the same jobs; the one whose conditional upsert moves ``period_start`` forward runs it."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime())
    instance: Mapped[str] = mapped_column(String(128))


class Instance(Base):
    """A running bot process: written at start, its ``last_seen`` renewed every few seconds,
    deleted on a clean stop. A SIGKILLed process's row goes stale."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    has_redis: Mapped[bool] = mapped_column(Boolean)


class ClusterSetting(Base):
    """Small values the instances share (the registered webhook's fingerprint)."""

    __tablename__ = "cluster_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


def _utcnow() -> datetime:
    return datetime.now(UTC)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(b"contactbot:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Claim:
    won: bool
    previous: datetime | None


def _upsert(engine_or_dialect: str, table: Any) -> Any:
    if engine_or_dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


async def claim_period(
    sessions: async_sessionmaker[AsyncSession],
    job: str,
    period_start: datetime,
    instance: str,
    now: datetime | None = None,
) -> Claim:
    """Record that ``job`` runs for the period starting at ``period_start``.

    Not ``won`` if it already ran for that period (or a later one). ``previous`` is the
    period it ran for before (None the first time), for :func:`release_period` if the run
    fails. One conditional upsert: of two instances claiming the same period at once, the
    second waits for the first's row lock, then sees the new period and claims nothing.
    """
    async with sessions() as s, s.begin():
        bind = s.get_bind()
        previous = await s.scalar(select(JobRun.period_start).where(JobRun.job == job))
        if previous is not None and previous >= period_start:
            return Claim(False, previous)
        table = JobRun.__table__
        stmt = _upsert(bind.dialect.name, table).values(
            job=job, period_start=period_start, ran_at=now or _utcnow(), instance=instance
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.job],
            set_={
                "period_start": stmt.excluded.period_start,
                "ran_at": stmt.excluded.ran_at,
                "instance": stmt.excluded.instance,
            },
            where=table.c.period_start < stmt.excluded.period_start,
        ).returning(table.c.job)
        won = (await s.execute(stmt)).first() is not None
    return Claim(won, previous)


async def release_period(
    sessions: async_sessionmaker[AsyncSession],
    job: str,
    period_start: datetime,
    previous: datetime | None,
) -> None:
    """Undo :func:`claim_period` after a failed run, so the period can be run again."""
    async with sessions() as s, s.begin():
        where = (JobRun.job == job) & (JobRun.period_start == period_start)
        if previous is None:
            await s.execute(delete(JobRun).where(where))
        else:
            await s.execute(update(JobRun).where(where).values(period_start=previous))


async def get_setting(sessions: async_sessionmaker[AsyncSession], key: str) -> str | None:
    async with sessions() as s:
        return await s.scalar(select(ClusterSetting.value).where(ClusterSetting.key == key))


async def put_setting(sessions: async_sessionmaker[AsyncSession], key: str, value: str) -> None:
    async with sessions() as s, s.begin():
        table = ClusterSetting.__table__
        stmt = _upsert(s.get_bind().dialect.name, table).values(
            key=key, value=value, updated_at=_utcnow()
        )
        await s.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
            )
        )


# Seconds between heartbeats, and the age after which an instance counts as gone.
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_STALE_SECONDS = 15.0
# pg_advisory_xact_lock key: two instances starting together check and register in turn.
_REGISTER_LOCK_KEY = advisory_key("instances")


class AnotherInstance(Exception):
    """This process must not run next to an instance already running on the database; the
    message is one line for the user."""


@dataclass
class Heartbeat:
    """This process's row in ``instances``, renewed every ``HEARTBEAT_SECONDS``."""

    sessions: async_sessionmaker[AsyncSession]
    id: str
    has_redis: bool
    interval: float = HEARTBEAT_SECONDS
    _task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                async with self.sessions() as s, s.begin():
                    row = await s.get(Instance, self.id)
                    if row is None:  # deleted by someone who took it for dead: come back
                        s.add(_instance_row(self.id, self.has_redis, _utcnow()))
                    else:
                        row.last_seen = _utcnow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away for a moment: try again next beat
                log.warning("instance heartbeat not written: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._beat(), name="contactbot-heartbeat"
            )

    async def stop(self) -> None:
        """Stop beating and remove the row (a clean stop frees the database at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with self.sessions() as s, s.begin():
                await s.execute(delete(Instance).where(Instance.id == self.id))


def _instance_row(instance_id: str, has_redis: bool, now: datetime) -> Instance:
    host, pid, _ = instance_id.rsplit(":", 2)
    return Instance(
        id=instance_id, host=host, pid=int(pid), started_at=now, last_seen=now, has_redis=has_redis
    )


def new_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _alive(row: Instance, now: datetime, stale: float) -> bool:
    """Whether ``row`` is a running process: a fresh heartbeat, and not a process of this
    host that is gone (a SIGKILLed bot restarted at once) or an earlier life of this pid."""
    if row.last_seen < now - timedelta(seconds=stale):
        return False
    if row.host == socket.gethostname():
        if row.pid == os.getpid():
            return False
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


async def register_instance(
    sessions: async_sessionmaker[AsyncSession],
    *,
    has_redis: bool,
    instance_id: str | None = None,
    stale: float = HEARTBEAT_STALE_SECONDS,
) -> Heartbeat:
    """Check the instances running on this database, then register this one.

    Refused (:class:`AnotherInstance`): a second process on a SQLite file; on PostgreSQL, an
    instance without Redis next to a running one (its FSM state would live in one process),
    or an instance next to a running one that has no Redis. Stale rows are removed.
    """
    instance_id = instance_id or new_instance_id()
    now = _utcnow()
    async with sessions() as s, s.begin():
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            # Two instances starting together check and register one after the other.
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _REGISTER_LOCK_KEY})
        rows = list((await s.scalars(select(Instance).order_by(Instance.started_at))).all())
        running = [r for r in rows if r.id != instance_id and _alive(r, now, stale)]
        gone = [r.id for r in rows if r not in running]
        if gone:
            await s.execute(delete(Instance).where(Instance.id.in_(gone)))
        for other in running:
            problem = _conflict(dialect, has_redis, other)
            if problem:
                since = other.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
                raise AnotherInstance(
                    f"another instance is running on this database ({other.host}:{other.pid} "
                    f"since {since}); {problem}"
                )
        s.add(_instance_row(instance_id, has_redis, now))
    return Heartbeat(sessions, instance_id, has_redis)


def _conflict(dialect: str, has_redis: bool, other: Instance) -> str | None:
    if dialect != "postgresql":
        return "a SQLite database serves one bot process: stop it first, or use PostgreSQL"
    if not has_redis:
        return "several instances need CONTACTBOT_REDIS_URL"
    if not other.has_redis:
        return "it runs without CONTACTBOT_REDIS_URL: restart every instance with the same Redis"
    return None
