"""SQLAlchemy's aiosqlite adapter, with each statement in one trip to the driver's thread.

aiosqlite runs sqlite3 on a worker thread, and every awaited call is a hand-off to that
thread and back. SQLAlchemy's adapter spends four per statement (open a cursor, execute,
fetch all rows, close the cursor). On this kind of machine a hand-off costs 0.1-0.5 ms of
wake-up latency, and since SQLite serialises writers, those waits add up to the bot's
throughput bound (bench/RESULTS.md). Here a statement's cursor work runs as one function on
the worker thread: one hand-off, same results.

Inside :func:`inline` (the bot wraps each update's handling in it) statements and COMMIT
run directly on the event loop's thread instead: no hand-off at all. That is safe there
because every transaction starts with ``BEGIN IMMEDIATE``, which still goes through the
worker thread and is the only step that can wait (for another process's write lock); once
it holds the lock, SQLite in WAL mode never makes a statement wait, and the bot's
per-update statements take tens of microseconds. Long work (rescoring, campaigns, imports)
runs outside ``inline()`` and keeps the thread, so it never stalls the event loop.

The classes extend SQLAlchemy's own adapter (``sqlalchemy<2.2`` is pinned) and are selected
with the public ``module=`` argument of ``create_async_engine``; if the driver's internals
ever differ, :func:`one_trip_dbapi` returns None and the stock adapter is used.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.pool import QueuePool

_INLINE: ContextVar[bool] = ContextVar("contactbot_sqlite_inline", default=False)


@contextmanager
def inline() -> Iterator[None]:
    """Run this task's short SQLite statements on the event loop thread (see above)."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


def is_inline() -> bool:
    """Whether this task runs its statements on the loop thread (inside :func:`inline`)."""
    return _INLINE.get()


def begin_immediate_now(conn: sqlite3.Connection, busy_timeout_ms: int) -> bool:
    """Try ``BEGIN IMMEDIATE`` on this thread without waiting; False if another process holds
    the write lock (then begin on the worker thread, which may wait ``busy_timeout``).

    Inside :func:`inline` this saves the one thread hand-off a transaction still paid: within
    the bot the pool has one connection, so the lock is free unless another process (the
    CLI, another instance on the same file) holds it; the loop never waits on it here."""
    conn.execute("PRAGMA busy_timeout=0")
    try:
        conn.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def checkout_now(engine: Any) -> Any | None:
    """Inside :func:`inline`: the pool's idle connection, taken on this thread with no
    greenlet, or None (none idle, or one to open: take it the usual way, in a greenlet).

    ``engine`` is the sync engine. SQLAlchemy's async pool hands over an idle connection
    without awaiting, and the inline driver's reset on return (a rollback) runs on this
    thread too: only opening a connection or waiting for one needs the loop. A checkout and
    check-in through ``AsyncEngine.raw_connection`` and a greenlet cost 27 microseconds, on
    two to five of them per update (issue 19)."""
    pool = engine.pool
    if not _INLINE.get() or not isinstance(pool, QueuePool) or pool.checkedin() == 0:
        return None
    try:
        return engine.raw_connection()
    except MissingGreenlet:
        # The idle connection had been invalidated and must be opened again: the pool has
        # taken it back (SQLAlchemy's checkout failure path), so the usual way finds it.
        return None


def checkin_now(raw: Any) -> bool:
    """Inside :func:`inline`: hand ``raw`` back to the pool on this thread; False when that
    needs the loop (outside ``inline()``) and the caller must do it in a greenlet."""
    if not _INLINE.get():
        return False
    raw.close()
    return True


class _Done:
    """What the adapter reads from a driver cursor after the statement has run."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def close(self) -> None:
        pass


def _run(
    conn: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[list[Any] | None, Any, int, int | None]:
    # Runs on aiosqlite's worker thread: the whole cursor life cycle in one call.
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(operation, parameters)
        elif parameters is None:
            cur.execute(operation)
        else:
            cur.execute(operation, parameters)
        rows = cur.fetchall() if cur.description else None
        return rows, cur.description, cur.rowcount, cur.lastrowid
    finally:
        cur.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    # Our stand-in cursor closes synchronously (there is nothing left to close).
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Done()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        conn = self._connection
        if _INLINE.get():
            rows, description, rowcount, lastrowid = _run(conn._conn, operation, parameters, many)
        else:
            async with self._adapt_connection._execute_mutex:
                rows, description, rowcount, lastrowid = await conn._execute(
                    _run, conn._conn, operation, parameters, many
                )
        done: _Done = self._cursor  # type: ignore[assignment]
        done.description = description
        done.rowcount = rowcount
        done.lastrowid = lastrowid
        self._rows = collections.deque(rows) if rows else collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        await self._trip(operation, seq_of_parameters, True)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor

    def commit(self) -> None:
        if not _INLINE.get():
            return super().commit()
        try:
            self._connection._conn.commit()
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        if not _INLINE.get():
            return super().rollback()
        try:
            self._connection._conn.rollback()
        except Exception as error:
            self._handle_exception(error)


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        # Same slots as the parent, so the stock connection can take our class.
        adapted.__class__ = OneTripConnection
        return adapted


def one_trip_dbapi() -> OneTripDbapi | None:
    import aiosqlite

    probe = aiosqlite.Connection
    if not (hasattr(probe, "_execute") and hasattr(probe, "_conn")):
        return None
    return OneTripDbapi(aiosqlite, sqlite3)
