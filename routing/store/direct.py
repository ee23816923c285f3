"""Prebuilt statements run on a session's own driver connection, inside its transaction.

A statement executed through ``AsyncSession.execute`` costs 70-150 microseconds of CPU
before and after the SQL itself (a greenlet switch, the cache key of the statement, the
execution context, the parameters' post-compile step for ``IN``, the result's metadata and
row objects), where SQLite runs the statement in ten. On the hot paths that overhead, times
four to ten statements per update, was most of an update's cost (bench/RESULTS.md, issue 19).

:class:`Statement` compiles a Core statement once per dialect, with SQLAlchemy's own bind
and result processors, so values are stored and read exactly as through a session; its
``rows``/``execute`` run it on the connection the session's transaction already holds:

- SQLite inside ``sqlite_driver.inline()`` (the bot's update handling): directly on the
  ``sqlite3`` connection, on the loop thread, as the inline driver runs every statement.
- PostgreSQL (asyncpg): on the asyncpg connection, in the transaction SQLAlchemy opened.
- Anything else (SQLite outside ``inline()``: jobs, the CLI): ``session.execute``, as before.

The session's pending ORM changes are flushed first (what autoflush would do). A direct
write is not seen by ORM objects already loaded in the session: like any Core ``UPDATE``
through a session, callers must not rely on such an object's changed columns afterwards.
"""

from __future__ import annotations

import collections
import functools
import importlib
import keyword
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeVar, cast

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.util import find_tables
from sqlalchemy.util import greenlet_spawn

from routing.store import gather, pg_pool, sqlite_driver
from routing.store.db import BUSY_TIMEOUT_MS

_M = TypeVar("_M")


class Done(NamedTuple):
    """A direct statement's outcome: its rows (if it returns any) and the rows it changed."""

    rows: list[Any]
    rowcount: int


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names in positional order
    binds: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # values the statement carries (literals, ``IN`` lists, LIMIT)
    results: tuple[Callable[[Any], Any] | None, ...] | None  # None: returns no rows
    row: Callable[..., Any] | None  # the row type: attribute and index access
    # The result columns that need converting (dates, booleans ...), by position.
    converted: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
    writes: bool = False  # an INSERT, UPDATE or DELETE
    # The bind values that need processing, by position (most need none).
    bound: tuple[tuple[int, Callable[[Any], Any]], ...] = ()


def _row_type(keys: list[str]) -> Callable[..., Any]:
    usable = [
        k if k.isidentifier() and not keyword.iskeyword(k) and not k.startswith("_") else f"c{i}"
        for i, k in enumerate(keys)
    ]
    return collections.namedtuple("DirectRow", usable, rename=True)


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    c = cast(ClauseElement, statement).compile(dialect=dialect)
    assert isinstance(c, SQLCompiler)
    # Expand ``IN (...)`` lists of literal values once, here, not at every execution.
    placeholders = {n: None for n, b in c.binds.items() if b.required}
    expanded = c._process_parameters_for_postcompile(c.construct_params(placeholders))
    names = tuple(expanded.positiontup or ())
    bind_procs = []
    for name in names:
        # An expanded IN list's "status_1_2" is of the bind "status_1".
        bind = c.binds[name] if name in c.binds else c.binds[name.rsplit("_", 1)[0]]
        bind_procs.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
    fixed = {n: v for n, v in expanded.parameters.items() if n not in placeholders}
    results = row = None
    if c._result_columns:
        results = tuple(_result_processor(e.type, dialect) for e in c._result_columns)
        row = _row_type([e.keyname for e in c._result_columns])
    converted = tuple((i, p) for i, p in enumerate(results or ()) if p is not None)
    writes = bool(c.isinsert or c.isupdate or c.isdelete)
    bound = tuple((i, p) for i, p in enumerate(bind_procs) if p is not None)
    return _Compiled(
        expanded.statement, names, tuple(bind_procs), fixed, results, row, converted, writes, bound
    )


@dataclass(frozen=True)
class Tables:
    """The tables a statement touches: what lane.py needs to know whether writes may run as
    one statement."""

    target: str | None  # a write's table
    named: frozenset[str]  # every table the statement names, its target among them
    inserts_values: bool  # an INSERT of given values (it reads no table)


def _result_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    impl = type_.dialect_impl(dialect)
    try:
        return cast(Callable[[Any], Any] | None, impl.result_processor(dialect, None))
    except (InvalidRequestError, TypeError):
        # asyncpg's numeric types pick a processor by the driver's type code, which only a
        # cursor's description has; the driver returns float for a float column and Decimal
        # for a numeric one, so only a numeric read as float needs converting.
        if isinstance(impl, sqltypes.Float):
            return None
        if isinstance(impl, sqltypes.Numeric) and not impl.asdecimal:
            return lambda v: None if v is None else float(v)
        raise


@dataclass
class Tx:
    """A short transaction of direct statements on a pooled connection, with no session
    (:func:`transaction`): exactly one of ``sqlite``, ``pg`` and ``conn`` is set.

    PostgreSQL: ``BEGIN`` waits for the first write. Reads before it run on their own, which
    under READ COMMITTED (each statement its own snapshot, a plain SELECT taking no row lock)
    is what they would see inside the transaction; a write marked ``last`` with nothing begun
    runs on its own too (one statement is atomic). A claim (reads, then one conditional
    UPDATE) and a self-service step (a read, then one INSERT or UPDATE) are then two round
    trips instead of four, on every relay and most customer messages (issue 19)."""

    dialect: Dialect
    sqlite: sqlite3.Connection | None = None
    pg: Any = None  # an asyncpg connection
    conn: AsyncConnection | None = None  # any other case: SQLAlchemy's own
    pg_tx: Any = None  # asyncpg's transaction, once a write began it
    finished: bool = False  # a ``last`` statement ran: nothing may follow

    async def before(self, c: _Compiled, last: bool, alone: bool = False) -> None:
        """PostgreSQL: begin when the first write needs it (see the class)."""
        if self.finished:
            raise RuntimeError("a statement after the one marked last in this transaction")
        self.finished = last
        if c.writes and self.pg_tx is None and not (last or alone):
            self.pg_tx = self.pg.transaction()
            await self.pg_tx.start()


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Tx]:
    """A write transaction of direct statements, committed when the block ends, rolled back
    if it raises.

    A session's transaction around the same statements cost about 65 microseconds more
    (its transaction objects, the pool's events through a greenlet): for the steps that
    read and write a few rows and need no ORM instance (a self-service step, a relay's
    claim) on every update. SQLite inside ``sqlite_driver.inline()``: ``BEGIN IMMEDIATE``
    on the loop thread when the write lock is free, else on aiosqlite's thread (waiting
    ``busy_timeout`` off the loop), and the statements and COMMIT on the loop thread.
    PostgreSQL: asyncpg's transaction. Otherwise SQLAlchemy's ``engine.begin()``.

    Never inside a session transaction of the same task: on SQLite the pool's one
    connection is that transaction's (as for ``lane.write_all``)."""
    dialect = engine.dialect
    inline_sqlite = dialect.driver == "aiosqlite" and sqlite_driver.is_inline()
    if not (inline_sqlite or dialect.driver == "asyncpg"):
        async with engine.begin() as conn:
            yield Tx(dialect, conn=conn)
        return
    raw = await checkout(engine, inline_sqlite)
    driver: Any = raw.driver_connection
    clean = False
    try:
        if inline_sqlite:
            sq: sqlite3.Connection = driver._conn
            try:
                if not sqlite_driver.begin_immediate_now(sq, BUSY_TIMEOUT_MS):
                    await driver._execute(sq.execute, "BEGIN IMMEDIATE")
            except Exception as error:
                raise_translated(error, "BEGIN IMMEDIATE", (), dialect)
            try:
                yield Tx(dialect, sqlite=sq)
            except BaseException:
                sq.rollback()
                clean = True
                raise
            try:
                sq.commit()
            except Exception as error:
                raise_translated(error, "COMMIT", (), dialect)
        else:
            tx = Tx(dialect, pg=driver)
            try:
                try:
                    yield tx
                except BaseException:
                    if tx.pg_tx is not None:
                        await tx.pg_tx.rollback()
                    raise
                if tx.pg_tx is not None:
                    await tx.pg_tx.commit()
            except Exception as error:
                if not _is_driver_error(error, dialect):
                    # The block's own (a statement's error arrives translated): rolled back,
                    # or nothing was begun; unless the connection itself is gone.
                    clean = not driver.is_closed()
                    raise
                raise_translated(error, "COMMIT", (), dialect, raw.dbapi_connection)
        clean = True
    finally:
        if not clean:
            # The database failed under it (a constraint at COMMIT, a lost connection):
            # whatever state it is in, it is closed rather than handed to the next user.
            raw.invalidate()
        await checkin(engine, raw, inline_sqlite, clean)


async def checkout(engine: AsyncEngine, inline_sqlite: bool) -> Any:
    """A pooled connection: on the loop when one is idle (SQLite inline:
    sqlite_driver.checkout_now; PostgreSQL: pg_pool.checkout_now), else through the pool in
    a greenlet, as SQLAlchemy takes its own."""
    if inline_sqlite:
        raw = sqlite_driver.checkout_now(engine.sync_engine)
        if raw is not None:
            return raw
    elif engine.dialect.driver == "asyncpg":
        raw = pg_pool.checkout_now(engine.sync_engine)
        if raw is not None:
            if not pg_pool.ping_due(raw):
                return raw
            # It sat idle (db._ping_when_idle): pinged here, where waiting is allowed.
            try:
                await greenlet_spawn(pg_pool.ping, engine.dialect, raw.dbapi_connection)
            except DisconnectionError:
                # The server went away: this one is discarded, another taken the usual way.
                await greenlet_spawn(raw.invalidate)
                await greenlet_spawn(raw.close)
            except BaseException:
                await greenlet_spawn(raw.close)
                raise
            else:
                return raw
    return await engine.raw_connection()


async def checkin(engine: AsyncEngine, raw: Any, inline_sqlite: bool, clean: bool) -> None:
    """Back to the pool, whose reset may call the driver: in a greenlet, as SQLAlchemy does
    for its own connections, unless the reset needs nothing of the database (a connection
    whose statements all went well, taken on the loop: sqlite_driver, pg_pool)."""
    if clean:
        if inline_sqlite and sqlite_driver.checkin_now(raw):
            return
        if engine.dialect.driver == "asyncpg" and pg_pool.checkin_now(raw):
            return
    await greenlet_spawn(raw.close)


def _is_driver_error(error: Exception, dialect: Dialect) -> bool:
    if isinstance(error, dialect.loaded_dbapi.Error):
        return True
    return type(error).__module__.startswith("asyncpg")


async def _connection(session: AsyncSession) -> tuple[Dialect, Any]:
    """The dialect and pooled connection of the session's transaction (begun if need be).

    Kept in ``session.info`` for the transaction: asking the session each time cost a
    greenlet switch and more than the statement (a transaction runs several)."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_HELD)
    if held is not None and transaction is not None and held[0] is transaction:
        return held[1], held[2]
    conn = await session.connection()
    fairy = conn.sync_connection.connection  # type: ignore[union-attr]
    session.info[_HELD] = (session.sync_session.get_transaction(), conn.dialect, fairy)
    return conn.dialect, fairy


_HELD = "contactbot.direct.connection"


class Statement:
    """A Core statement with named bind parameters, compiled once per dialect.

    ``per_dialect``: a statement written with a dialect's own constructs (``ON CONFLICT``),
    built from that dialect's module (``sqlalchemy.dialects.sqlite`` or ``postgresql``)."""

    def __init__(
        self,
        statement: Executable | None = None,
        *,
        per_dialect: Callable[[Any], Executable] | None = None,
    ) -> None:
        if (statement is None) == (per_dialect is None):
            raise TypeError("give a statement or per_dialect")
        self._statement = statement
        self._builder = per_dialect
        self._built: dict[str, Executable] = {}
        self._by_dialect: dict[str, _Compiled] = {}
        self._tables: dict[str, Tables] = {}

    def statement_for(self, dialect: Dialect) -> Executable:
        if self._statement is not None:
            return self._statement
        built = self._built.get(dialect.name)
        if built is None:
            assert self._builder is not None
            module = importlib.import_module(f"sqlalchemy.dialects.{dialect.name}")
            built = self._built[dialect.name] = self._builder(module)
        return built

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            statement = self.statement_for(dialect)
            found = self._by_dialect[dialect.name] = _compile(statement, dialect)
        return found

    def tables(self, dialect: Dialect) -> Tables:
        """Asked only when writes may be combined (lane.py, PostgreSQL): walking a statement
        costs more than compiling it, so not for every statement."""
        found = self._tables.get(dialect.name)
        if found is None:
            statement = self.statement_for(dialect)
            writes = self.compiled(dialect).writes
            target = cast(Any, statement).table.name if writes else None
            named = find_tables(cast(ClauseElement, statement), include_crud=True)
            tables = frozenset(t.name for t in named)
            inserts = isinstance(statement, Insert) and tables == {target}
            found = self._tables[dialect.name] = Tables(target, tables, inserts)
        return found

    def values(self, c: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        fixed = c.fixed
        given = [params[n] if n in params else fixed[n] for n in c.names]
        for i, p in c.bound:  # only the values that need it, as for result columns
            given[i] = p(given[i])
        return tuple(given)

    # --- running it ---------------------------------------------------------------------
    async def execute(
        self,
        on: AsyncSession | Tx,
        params: Mapping[str, Any],
        *,
        last: bool = False,
        alone: bool = False,
    ) -> Done:
        """Run in the session's transaction, or in a :func:`transaction` of its own.

        ``last``: the caller runs nothing after it in this :class:`Tx` (on PostgreSQL, a
        write with nothing begun then needs no transaction); a session ignores it.
        ``alone``: a write that is atomic by itself and, when the caller goes on after it,
        changed nothing (a conditional claim that did not claim): on PostgreSQL it runs
        like a read, before anything is begun, when nothing was."""
        if isinstance(on, Tx):
            if on.sqlite is not None:
                return self._on_sqlite(on.dialect, on.sqlite, params)
            if on.pg is not None:
                await on.before(self.compiled(on.dialect), last, alone)
                return await self._on_asyncpg(on.dialect, on.pg, params)
            assert on.conn is not None
            statement = self.statement_for(on.dialect)
            return self._done(on.dialect, await on.conn.execute(statement, dict(params)))
        session = on
        if not session.sync_session._is_clean():
            await session.flush()
        dialect, fairy = await _connection(session)
        if dialect.driver == "aiosqlite" and sqlite_driver.is_inline():
            return self._on_sqlite(dialect, fairy.driver_connection._conn, params)
        if dialect.driver == "asyncpg":
            adapted = fairy.dbapi_connection
            async with adapted._execute_mutex:
                if adapted._transaction is None:
                    try:
                        await adapted._start_transaction()
                    except Exception as error:
                        raise_translated(error, "BEGIN", (), dialect, adapted)
                return await self._on_asyncpg(dialect, adapted._connection, params, adapted)
        result = await session.execute(self.statement_for(dialect), dict(params))
        return self._done(dialect, result)

    def _on_sqlite(
        self, dialect: Dialect, raw: sqlite3.Connection, params: Mapping[str, Any]
    ) -> Done:
        c = self.compiled(dialect)
        values = self.values(c, params)
        try:
            cur = raw.execute(c.sql, values)
            fetched = cur.fetchall() if c.results is not None else []
        except Exception as error:
            raise_translated(error, c.sql, values, dialect)
        return Done(self._rows(c, fetched), cur.rowcount)

    async def _on_asyncpg(
        self, dialect: Dialect, driver: Any, params: Mapping[str, Any], adapted: Any = None
    ) -> Done:
        c = self.compiled(dialect)
        values = self.values(c, params)
        try:
            if c.results is not None:
                fetched = await driver.fetch(c.sql, *values)
                return Done(self._rows(c, fetched), len(fetched))
            status: str = await driver.execute(c.sql, *values)
        except Exception as error:
            raise_translated(error, c.sql, values, dialect, adapted)
        # "UPDATE 1", "INSERT 0 1", "DELETE 3": the count is the last word.
        return Done([], int(status.rsplit(" ", 1)[-1]))

    def _done(self, dialect: Dialect, result: Any) -> Done:
        fetched = list(result.all()) if self.compiled(dialect).results is not None else []
        return Done(fetched, getattr(result, "rowcount", len(fetched)))

    def _rows(self, c: _Compiled, fetched: list[Any]) -> list[Any]:
        assert c.row is not None or not fetched
        make, procs = c.row, c.results
        if make is None or procs is None:
            return []
        converted = c.converted
        if not converted:
            return [make(*r) for r in fetched]
        rows = []
        for r in fetched:
            values = list(r)
            for i, p in converted:  # only the columns that need it (dates, booleans ...)
                values[i] = p(values[i])
            rows.append(make(*values))
        return rows

    async def read(self, engine: AsyncEngine, params: Mapping[str, Any]) -> list[Any]:
        """A read outside any transaction, on a connection of the pool (one statement sees
        one snapshot, so it needs no transaction of its own): the sender's header check."""
        dialect = engine.dialect
        inline_sqlite = dialect.driver == "aiosqlite" and sqlite_driver.is_inline()
        if not (inline_sqlite or dialect.driver == "asyncpg"):
            async with engine.connect() as conn:
                statement = self.statement_for(dialect)
                return list((await conn.execute(statement, dict(params))).all())
        c = self.compiled(dialect)
        values = self.values(c, params)
        raw = await checkout(engine, inline_sqlite)
        driver: Any = raw.driver_connection
        clean = False
        try:
            if inline_sqlite:
                fetched = driver._conn.execute(c.sql, values).fetchall()
            else:
                fetched = await driver.fetch(c.sql, *values)
            clean = True
        except Exception as error:
            adapted = raw.dbapi_connection  # for the translation; invalidating drops it
            raw.invalidate()
            raise_translated(error, c.sql, values, dialect, adapted)
        finally:
            await checkin(engine, raw, inline_sqlite, clean)
        return self._rows(c, fetched)

    async def rows(
        self,
        on: AsyncSession | Tx,
        params: Mapping[str, Any],
        *,
        last: bool = False,
        alone: bool = False,
    ) -> list[Any]:
        return (await self.execute(on, params, last=last, alone=alone)).rows

    async def first(
        self, on: AsyncSession | Tx, params: Mapping[str, Any], *, last: bool = False
    ) -> Any:
        found = (await self.execute(on, params, last=last)).rows
        return found[0] if found else None

    async def scalar(
        self, on: AsyncSession | Tx, params: Mapping[str, Any], *, last: bool = False
    ) -> Any:
        row = await self.first(on, params, last=last)
        return None if row is None else row[0]

    async def rows_now(self, session: AsyncSession, params: Mapping[str, Any]) -> list[Any]:
        """A read in ``session``'s transaction if it has one, else on a pooled connection
        with none (:meth:`read`: one statement reads one snapshot), so that reading begins
        no transaction: on PostgreSQL a session's BEGIN and ROLLBACK are two round trips."""
        if session.in_transaction():
            return await self.rows(session, params)
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        return await self.read(engine, params)

    async def rows_shared(self, session: AsyncSession, params: Mapping[str, Any]) -> list[Any]:
        """:meth:`rows_now`, where on PostgreSQL outside a transaction the callers asking
        with the same parameters at the same time share one execution (gather.py: each
        gets the rows of a statement begun after it asked). For reads every new chat's plan
        makes with no parameter of the chat's: the online agents, the recent handle times
        (issue 19: VIPs opening chats together each read them)."""
        engine = session.bind
        if session.in_transaction() or engine is None or engine.dialect.driver != "asyncpg":
            return await self.rows_now(session, params)
        assert isinstance(engine, AsyncEngine)
        key = tuple(sorted(params.items()))
        shared = _SHARED.get(engine.sync_engine, {}).get(self)
        if shared is None:

            async def run(keys: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
                found: dict[tuple[Any, ...], list[Any]] = {}
                for k in keys:
                    if k not in found:
                        found[k] = await self.read(engine, dict(k))
                return [list(found[k]) for k in keys]  # each caller its own list

            shared = _SHARED.setdefault(engine.sync_engine, {})[self] = gather.Gather(run)
        return await shared.ask(key)

    async def rows_gathered(
        self, session: AsyncSession, params: Mapping[str, Any], many: Statement
    ) -> list[Any]:
        """:meth:`rows_now`, where on PostgreSQL outside a transaction the callers asking at
        the same time are answered by one execution of ``many``: this statement for
        several callers, each bind parameter given as an array of their values, its rows
        led by ``n``, the caller's place in the arrays (from ``unnest ... WITH
        ORDINALITY``), in order within each. The rows are plain tuples without ``n``:
        read them by position. For reads every new chat or agent message makes (issue 19)."""
        engine = session.bind
        if session.in_transaction() or engine is None or engine.dialect.driver != "asyncpg":
            return await self.rows_now(session, params)
        assert isinstance(engine, AsyncEngine)
        names = tuple(sorted(params))
        ways = _SHARED.setdefault(engine.sync_engine, {})
        found = ways.get(many)
        if found is None:

            async def run(asks: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
                if len(asks) == 1:
                    return [list(await self.read(engine, dict(zip(names, asks[0], strict=True))))]
                arrays = {n: [a[i] for a in asks] for i, n in enumerate(names)}
                answers: list[list[Any]] = [[] for _ in asks]
                for row in await many.read(engine, arrays):
                    answers[row[0] - 1].append(tuple(row[1:]))
                return answers

            found = ways[many] = gather.Gather(run)
        return await found.ask(tuple(params[n] for n in names))


# Per engine and statement: the reads of rows_shared and rows_gathered waiting on one
# database.
_SHARED: weakref.WeakKeyDictionary[Any, dict[Statement, gather.Gather[Any, list[Any]]]] = (
    weakref.WeakKeyDictionary()
)


def on_postgresql(session: AsyncSession) -> bool:
    """Whether ``session`` is bound to PostgreSQL (where one statement of data-modifying
    CTEs can do what a transaction of several round trips did)."""
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


def raise_translated(
    error: Exception, sql: str, values: tuple[Any, ...], dialect: Dialect, adapted: Any = None
) -> NoReturn:
    """Raise what SQLAlchemy would raise for ``error`` on this statement (IntegrityError,
    ...): callers catch SQLAlchemy's exceptions whichever way the statement ran (here, or in
    lane.py's transactions). ``adapted``: the adapter connection, whose own mapping turns
    asyncpg's exceptions into DBAPI classes."""
    original, dbapi_error = error, dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error) and adapted is not None:
        try:  # the adapter's own mapping (asyncpg's exceptions to DBAPI classes)
            adapted._handle_exception(error)
        except Exception as mapped:
            error = mapped
    if isinstance(error, dbapi_error):
        raise DBAPIError.instance(sql, values, error, dbapi_error, dialect=dialect) from original
    raise error


def columns(model: type[Any], prefix: str) -> tuple[tuple[str, ...], list[Any]]:
    """A model's mapped column attributes, for a direct select whose rows :func:`attach`
    makes instances of: their keys, and their columns labelled ``{prefix}0, {prefix}1 ...``
    (unique names when several models are joined)."""
    props = list(sa_inspect(model).column_attrs)
    keys = tuple(p.key for p in props)
    return keys, [p.columns[0].label(f"{prefix}{i}") for i, p in enumerate(props)]


@functools.cache
def _shape(model: type[Any], keys: tuple[str, ...]) -> tuple[Any, tuple[int, ...]]:
    """The mapper, and where the primary key is among ``keys``."""
    mapper = sa_inspect(model)
    pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    return mapper, tuple(keys.index(k) for k in pk_keys)


def attach(
    session: AsyncSession, model: type[_M], keys: Sequence[str], values: Sequence[Any]
) -> _M | None:
    """An ORM instance of ``model`` for a row read directly (``keys``: its mapped column
    attributes, in the order of ``values``), in ``session`` as if the ORM had loaded it:
    persistent, unmodified, every column loaded. None when the primary key is NULL (an outer
    join found no row). An instance the session holds already is returned as it is, as the
    ORM's own loading would (without populate_existing).

    SQLAlchemy's loading builds the same instance at several times the cost, per execution
    (the result's metadata, row processors, the identity map's bookkeeping)."""
    mapper, pk_at = _shape(cast(Any, model), tuple(keys))
    pk = tuple(values[i] for i in pk_at)
    if any(v is None for v in pk):
        return None
    loaded = dict(zip(keys, values, strict=True))
    key = mapper.identity_key_from_primary_key(pk)
    sync = session.sync_session
    held = sync.identity_map.get(key)
    if held is not None:
        return cast(_M, held)
    # What SQLAlchemy's loading does for a new row (orm/loading.py, ``_instance``): the
    # instance joins the identity map as loaded, without Session.add (which would begin the
    # session's transaction and walk the relationship cascades).
    instance = mapper.class_manager.new_instance()
    state = instance_state(instance)
    state.dict.update(loaded)
    state.key = key
    state.identity_token = key[2]
    state.session_id = sync.hash_key
    sync.identity_map._add_unpresent(state, key)
    state._commit_all(state.dict, sync.identity_map)  # loaded: no history, nothing dirty
    return cast(_M, instance)
