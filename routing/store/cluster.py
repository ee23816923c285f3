"""What several instances share through the database: the leader lock, job periods run once,
cluster settings, and the instance heartbeat that refuses an unsafe mix.
"""

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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, delete, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import Mapped, mapped_column

from routing.clock import utcnow
from routing.store.base import Base, UtcDateTime

log = logging.getLogger(__name__)


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
            job=job, period_start=period_start, ran_at=now or utcnow(), instance=instance
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
            key=key, value=value, updated_at=utcnow()
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
                        s.add(_instance_row(self.id, self.has_redis, utcnow()))
                    else:
                        row.last_seen = utcnow()
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
    now = utcnow()
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
