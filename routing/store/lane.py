"""A short write transaction of prebuilt statements, on the driver's connection.

Some writes happen once per handled update or send and need nothing from the ORM: the
inbox's done mark, the sender's mark after a send (with the relay's links), a notice's link.
Through an ``AsyncSession`` such a transaction cost about 0.5 ms of CPU
(the session, its transaction object, the connection checkout events, four greenlet
switches, the statement's execution context), where the SQL itself takes tens of
microseconds; on the pooled driver connection directly it costs about 0.08 ms on SQLite
(bench/RESULTS.md, issue 19). This module runs such statements, each compiled once per dialect
with its bind processors (so the values are stored exactly as SQLAlchemy would store them),
in a transaction of its own on a connection checked out from the engine's pool.

SQLite: inside ``sqlite_driver.inline()`` the transaction runs on the loop thread when the
write lock is free (as every inline transaction does), else in one trip to aiosqlite's
thread, which waits the busy timeout. PostgreSQL: asyncpg's own transaction. Any other
driver: an ordinary ``engine.begin()``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.util import greenlet_spawn

from routing.store import sqlite_driver
from routing.store.db import BUSY_TIMEOUT_MS


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind names in positional order
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # values the statement carries (``.values(status="done")``)


class Prepared:
    """A DML statement with named bind parameters, compiled once per dialect."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            c = self.statement.compile(dialect=dialect)
            names = tuple(c.positiontup or ())
            processors = tuple(
                c.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
            )
            fixed = {n: b.value for n, b in c.binds.items() if not b.required}
            found = self._by_dialect[dialect.name] = _Compiled(c.string, names, processors, fixed)
        return found

    def values(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[Any, ...]:
        c = self.compiled(dialect)
        given = [params[n] if n in params else c.fixed[n] for n in c.names]
        return tuple(p(v) if p is not None else v for v, p in zip(given, c.processors, strict=True))


def _sqlite_statements(
    conn: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...]]]
) -> list[int]:
    # The write lock is held (BEGIN IMMEDIATE): the statements, then COMMIT.
    try:
        counts = [conn.execute(sql, values).rowcount for sql, values in batch]
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return counts


def _sqlite_write(conn: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
    # On aiosqlite's thread when the lock was busy: BEGIN IMMEDIATE waits busy_timeout there.
    conn.execute("BEGIN IMMEDIATE")
    return _sqlite_statements(conn, batch)


Step = tuple[Prepared, Mapping[str, Any]]


async def write(engine: AsyncEngine, prepared: Prepared, params: Mapping[str, Any]) -> int:
    """Run ``prepared`` with ``params`` in a transaction of its own; the rows it changed."""
    return (await write_all(engine, [(prepared, params)]))[0]


async def write_all(engine: AsyncEngine, steps: Sequence[Step]) -> list[int]:
    """Run the statements in order in one transaction of their own; the rows each changed.

    Errors are SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...: a ``DBAPIError``),
    as through a session; nothing of a failed transaction stays, and the connection that saw
    the error is not reused."""
    dialect = engine.dialect
    if dialect.driver not in ("aiosqlite", "asyncpg"):  # a driver we do not ship
        async with engine.begin() as c:
            return [int((await c.execute(p.statement, dict(v))).rowcount) for p, v in steps]
    batch = [(p.compiled(dialect).sql, p.values(dialect, v)) for p, v in steps]
    raw = await engine.raw_connection()
    try:
        return await _run(raw.driver_connection, dialect.driver, batch)
    except BaseException as error:
        sql, values = batch[0] if len(batch) == 1 else ("; ".join(b[0] for b in batch), ())
        translated = (
            _translated(raw, error, sql, values, dialect) if isinstance(error, Exception) else None
        )
        # Rare (the database is away, a constraint): whatever state the connection is in,
        # it is closed rather than handed to the next user.
        raw.invalidate()
        if translated is not None and translated is not error:
            raise translated from error
        raise
    finally:
        # Back to the pool, whose reset may call the driver (so in a greenlet, as SQLAlchemy
        # does for its own connections).
        await greenlet_spawn(raw.close)


async def _run(driver: Any, name: str, batch: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
    if name == "asyncpg":
        counts: list[int] = []
        async with driver.transaction():
            for sql, values in batch:
                status: str = await driver.execute(sql, *values)
                # "UPDATE 1", "INSERT 0 1", "DELETE 3": the count is the last word.
                counts.append(int(status.rsplit(" ", 1)[-1]))
        return counts
    conn: sqlite3.Connection = driver._conn
    if sqlite_driver.is_inline() and sqlite_driver.begin_immediate_now(conn, BUSY_TIMEOUT_MS):
        return _sqlite_statements(conn, batch)
    counts = await driver._execute(_sqlite_write, conn, batch)
    return list(counts)


def _translated(
    raw: Any, error: Exception, sql: str, values: tuple[Any, ...], dialect: Dialect
) -> Exception:
    """The exception SQLAlchemy would raise for ``error`` on this statement."""
    dbapi_error: Any = dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error):
        try:  # the adapter's own mapping (asyncpg's exceptions to DBAPI classes)
            raw.dbapi_connection._handle_exception(error)
        except Exception as mapped:
            error = mapped
    if isinstance(error, dbapi_error):
        wrapped: Exception = DBAPIError.instance(sql, values, error, dbapi_error, dialect=dialect)
        return wrapped
    return error
