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
thread, which waits the busy timeout. PostgreSQL: asyncpg's own transaction, or for a single
statement none (autocommit: the statement is atomic by itself). Any other driver: an
ordinary ``engine.begin()``.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from routing.store import direct, gather, sqlite_driver
from routing.store.db import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

# A statement with named bind parameters, compiled once per dialect with SQLAlchemy's bind
# processors (so the values are stored exactly as SQLAlchemy would store them): the same
# prebuilt statement the hot path runs inside a session's transaction (direct.py).
Prepared = direct.Statement


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
            return [
                int((await c.execute(p.statement_for(dialect), dict(v))).rowcount) for p, v in steps
            ]
    batch = [(p.compiled(dialect).sql, p.values(p.compiled(dialect), v)) for p, v in steps]
    together = None
    if dialect.driver == "asyncpg" and len(steps) > 1:
        together = one_statement(steps, dialect)
        if together is not None:
            batch = [(together, tuple(v for _, values in batch for v in values))]
    inline_sqlite = dialect.driver == "aiosqlite" and sqlite_driver.is_inline()
    raw = await direct.checkout(engine, inline_sqlite)
    clean = False
    try:
        if together is not None:
            # The parts' counts, in one round trip (one_statement).
            row = await raw.driver_connection.fetchrow(together, *batch[0][1])
            counts = [int(n) for n in row]
        else:
            counts = await _run(raw.driver_connection, dialect.driver, batch)
        clean = True
        return counts
    except BaseException as error:
        adapted = raw.dbapi_connection  # for the translation; invalidating drops it
        # Rare (the database is away, a constraint): whatever state the connection is in,
        # it is closed rather than handed to the next user.
        raw.invalidate()
        if isinstance(error, Exception):
            sql, values = batch[0] if len(batch) == 1 else ("; ".join(b[0] for b in batch), ())
            direct.raise_translated(error, sql, values, dialect, adapted)
        raise
    finally:
        await direct.checkin(engine, raw, inline_sqlite, clean)


class Together:
    """Writes of concurrent callers made together: those that come while one is in flight
    go in one transaction, on PostgreSQL one statement (their steps :func:`gathered`, then
    :func:`one_statement`). Each caller returns once its own steps are committed.

    For writes that do not depend on one another (:func:`together` is the engine's one):
    a send's mark with its links after every relayed message (bot/delivery.py), a page's
    links, a new chat's plan; made at about the same time for different chats. On
    PostgreSQL each was a round trip of its own (issue 19). A batch the database refuses is
    written again caller by caller, so a refused write fails only its own caller."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._gather: gather.Gather[tuple[Step, ...], None] = gather.Gather(self._write)

    async def write(self, steps: Sequence[Step]) -> None:
        await self._gather.ask(tuple(steps))

    async def _write(self, batches: Sequence[tuple[Step, ...]]) -> list[gather.Failed | None]:
        if len(batches) == 1:
            return await self._each(batches)
        if self.engine.dialect.name != "postgresql":
            return await self._group(batches, [s for b in batches for s in b])
        answers: list[gather.Failed | None] = []
        for group in _apart(batches):
            steps = gathered([s for b in group for s in b], one_row_too=True)
            answers += await self._group(group, _canonical(steps, self.engine.dialect))
        return answers

    async def _group(
        self, batches: Sequence[tuple[Step, ...]], steps: Sequence[Step]
    ) -> list[gather.Failed | None]:
        try:
            await write_all(self.engine, steps)
        except Exception as error:
            # One caller's write refused, or the database away: each caller's own outcome.
            log.debug("%d writes failed together, each alone now: %s", len(batches), error)
            return await self._each(batches)
        return [None] * len(batches)

    async def _each(self, batches: Sequence[tuple[Step, ...]]) -> list[gather.Failed | None]:
        answers: list[gather.Failed | None] = []
        for batch in batches:
            try:
                await write_all(self.engine, batch)
                answers.append(None)
            except Exception as error:
                answers.append(gather.Failed(error))
        return answers


def _apart(batches: Sequence[tuple[Step, ...]]) -> list[list[tuple[Step, ...]]]:
    """The callers' steps in groups, in order, none changing a keyed row another of its
    group changes: each group's steps gather into one statement (PostgreSQL), where one row
    twice would make a transaction of a statement per step (five round trips for two sends
    to one agent, where alone they were two)."""
    groups: list[list[tuple[Step, ...]]] = [[]]
    seen: set[tuple[Prepared, Any]] = set()
    for batch in batches:
        keys = {
            (prepared, values[many.key])
            for prepared, values in batch
            if (many := _MANY.get(prepared)) is not None and many.key is not None
        }
        if keys & seen:
            groups.append([])
            seen = set()
        groups[-1].append(batch)
        seen |= keys
    return groups


def _canonical(steps: list[Step], dialect: Dialect) -> list[Step]:
    """One statement's parts in the order their statements were declared (batch_as), so
    that batches of the same statements are one SQL text, prepared once per connection;
    as they were when they are not one statement (their order may then matter)."""
    ordered = sorted(steps, key=lambda step: _ORDER.get(step[0], len(_ORDER)))
    if ordered != steps and one_statement(ordered, dialect) is not None:
        return ordered
    return steps


_TOGETHER: weakref.WeakKeyDictionary[Any, Together] = weakref.WeakKeyDictionary()


def together(engine: AsyncEngine) -> Together:
    """The engine's :class:`Together`: every such write waiting on one database."""
    found = _TOGETHER.get(engine.sync_engine)
    if found is None:
        found = _TOGETHER[engine.sync_engine] = Together(engine)
    return found


# --- PostgreSQL: several writes as one statement -------------------------------------------

_PLACEHOLDER = re.compile(r"\$(\d+)")


def one_statement(steps: Sequence[Step], dialect: Dialect) -> str | None:
    """PostgreSQL: the writes as one statement of data-modifying CTEs, or None when they
    must run one after the other in a transaction.

    One statement is one round trip and atomic by itself, where a transaction of three
    writes is five (BEGIN, the writes, COMMIT): a send's mark with the relay's links and the
    agent's last chat ran after every relayed message (issue 19). Every part of such a
    statement sees the database as it was before it, so they are combined only when none can
    see another's effect: no part writes a table another part names, except inserts of
    given values into the same table (each adds its own row); none returns rows (only the
    counts are asked); and every ``$n`` in the SQL is a parameter (renumbered below)."""
    compiled = [p.compiled(dialect) for p, _ in steps]
    if any(not c.writes or c.results is not None for c in compiled):
        return None
    tables = [p.tables(dialect) for p, _ in steps]
    keyed = [p in _KEYED for p, _ in steps]
    rows = [_rows_named(p, values) for p, values in steps]
    for i, t in enumerate(tables):
        for j, other in enumerate(tables):
            shared = i != j and t.target in other.named
            # An insert of values and an update of rows named by key (rows that existed
            # before): neither can change what the other does, in either order; nor can
            # two updates of one table's rows named by different keys.
            ri, rj = rows[i], rows[j]
            apart = (
                (t.inserts_values and (other.inserts_values or keyed[j]))
                or (keyed[i] and other.inserts_values)
                or (ri is not None and rj is not None and t.target == other.target and not ri & rj)
            )
            if shared and not apart:
                return None
    return _combined(tuple(c.sql for c in compiled), tuple(len(c.names) for c in compiled))


@functools.lru_cache(maxsize=256)
def _combined(sqls: tuple[str, ...], counts: tuple[int, ...]) -> str | None:
    parts: list[str] = []
    offset = 0
    for sql, n in zip(sqls, counts, strict=True):
        found = [int(m) for m in _PLACEHOLDER.findall(sql)]
        if sql.count("$") != len(found) or set(found) != set(range(1, n + 1)):
            return None  # a "$" that is not a parameter (a literal): not rewritten
        shifted = _PLACEHOLDER.sub(functools.partial(_shift, offset), sql)
        parts.append(f"w{len(parts)} AS ({shifted} RETURNING 1)")
        offset += n
    counted = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(parts)))
    return f"WITH {', '.join(parts)} SELECT {counted}"


def _shift(offset: int, m: re.Match[str]) -> str:
    return f"${int(m.group(1)) + offset}"


# --- PostgreSQL: several rows' writes of one statement as one ------------------------------


@dataclass(frozen=True)
class _Many:
    many: Prepared
    key: str | None


_MANY: dict[Prepared, _Many] = {}
# Updates that change only the rows their key parameters name (one_statement).
_KEYED: dict[Prepared, str] = {}
# The many forms in the order they were declared (Together's canonical order).
_ORDER: dict[Prepared, int] = {}


def _rows_named(prepared: Prepared, values: Mapping[str, Any]) -> frozenset[Any] | None:
    """The keys of the rows a keyed update changes, or None (any other statement, or keys
    not given)."""
    key = _KEYED.get(prepared)
    if key is None or key not in values:
        return None
    named = values[key]
    return frozenset(named) if isinstance(named, list | tuple) else frozenset((named,))


def batch_as(one: Prepared, many: Prepared, *, key: str | None = None) -> None:
    """Declare ``many`` the form of ``one`` that makes several rows' writes in one statement:
    the same bind parameters, each given as an array of the rows' values (PostgreSQL
    ``unnest``). ``key``: for an update, the parameter naming the one row, existing before
    the write, that each step changes (steps are gathered only while their keys differ: one
    statement must not change a row twice); None for an insert of values."""
    _MANY[one] = _Many(many, key)
    _ORDER.setdefault(many, len(_ORDER))
    if key is not None:
        _KEYED.update({one: key, many: key})


def gathered(steps: Sequence[Step], *, one_row_too: bool = False) -> list[Step]:
    """The steps, with those of each statement declared by :func:`batch_as` made one step of
    its many form, in the place of the first of them.

    Only for steps that do not depend on one another, whose order among themselves does not
    matter: the writes that updates of different chats left to their done marks
    (routing/store/inbox.py). On PostgreSQL the marks' batch is then one statement (a
    customer's self-service step is most updates' only write; issue 19).

    ``one_row_too``: a statement's one row in its many form as well, so that a batch's
    statement is one of few shapes (each shape is prepared once per connection)."""
    groups: dict[Prepared, list[Mapping[str, Any]]] = {}
    for prepared, values in steps:
        if prepared in _MANY:
            groups.setdefault(prepared, []).append(values)
    together: dict[Prepared, Step | None] = {}
    for prepared, rows in groups.items():
        many = _MANY[prepared]
        names = set(rows[0])
        if (len(rows) < 2 and not one_row_too) or any(set(r) != names for r in rows):
            continue
        if many.key is not None and len({r[many.key] for r in rows}) < len(rows):
            continue  # one row twice: written one after the other
        together[prepared] = (many.many, {n: [r[n] for r in rows] for n in names})
    if not together:
        return list(steps)
    out: list[Step] = []
    for prepared, values in steps:
        if prepared not in together:
            out.append((prepared, values))
        elif (step := together[prepared]) is not None:
            out.append(step)
            together[prepared] = None  # its other rows are in it
    return out


def _count(status: str) -> int:
    """Rows changed, from asyncpg's status: "UPDATE 1", "INSERT 0 1", "DELETE 3" (the count
    is the last word)."""
    return int(status.rsplit(" ", 1)[-1])


async def _run(driver: Any, name: str, batch: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
    if name == "asyncpg":
        if len(batch) == 1:
            # One statement is atomic on its own: run it in autocommit, one round trip
            # instead of three (BEGIN, the statement, COMMIT). Most of the lane's writes are
            # one statement (a done mark, a send's mark, a notice's link): on PostgreSQL the
            # BEGIN and COMMIT were two of every update's round trips (issue 19).
            sql, values = batch[0]
            return [_count(await driver.execute(sql, *values))]
        counts: list[int] = []
        async with driver.transaction():
            for sql, values in batch:
                counts.append(_count(await driver.execute(sql, *values)))
        return counts
    conn: sqlite3.Connection = driver._conn
    if sqlite_driver.is_inline() and sqlite_driver.begin_immediate_now(conn, BUSY_TIMEOUT_MS):
        return _sqlite_statements(conn, batch)
    counts = await driver._execute(_sqlite_write, conn, batch)
    return list(counts)
