"""Writing orders.csv to the database: ``OrderImporter``, the upsert by ``order_id``.

Orders of customers not imported yet load too (counted in one closing warning); a stored order
changes only where the file changes it, and ``(clear)`` empties its category or status. The
import's rules are described in ``routing.customers.importer``; the run around a batch is
``routing.customers.import_driver.Importer``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, cast

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from routing.customers.import_driver import ORDERS, Importer
from routing.customers.import_files import Header
from routing.customers.import_rows import (
    ORDER_COLUMNS,
    ORDER_REQUIRED,
    OrderRow,
    RowError,
    check_date_format,
    order_fast_path,
    parse_order_row,
)
from routing.policy.root import Policy
from routing.store.base import sqlite_text

__all__ = [
    "OrderImporter",
]


class OrderImporter(Importer[OrderRow]):
    kind = "orders"
    known = ORDER_COLUMNS
    required = ORDER_REQUIRED

    def __init__(
        self,
        policy: Policy,
        dry_run: bool,
        now: datetime | None,
        date_format: str | None = None,
        decimal_comma: bool = False,
    ) -> None:
        super().__init__(policy, dry_run, now)
        if date_format is not None:
            check_date_format(date_format)
        self.date_format = date_format
        self.decimal_comma = decimal_comma
        self.orphans: set[str] = set()  # order_ids whose external_id matches no customer
        self._sql: _Statements | None = None  # the look-up and the upsert, once
        self._read_time: Callable[[Any], Any] | None = None

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> OrderRow | RowError:
        return parse_order_row(
            row, line, policy, date_format=self.date_format, decimal_comma=self.decimal_comma
        )

    def fast_parser(self, header: Header) -> Callable[[list[str], int], OrderRow | None] | None:
        if self.date_format is not None or self.decimal_comma:
            return None  # the fast path reads ISO dates and '.' decimals only
        return order_fast_path({name: position for position, name in header.columns})

    def _statements(self, conn: AsyncConnection) -> _Statements:
        """The look-ups and the upsert of a batch, as driver-level SQL (built once).

        Straight to the driver: at a million rows SQLAlchemy's per-row work (bind processing
        of every value, a dict per row, result processing of every stored row) cost more CPU
        than the database's own (bench/RESULTS.md; the rescore's writes do the same). The
        upsert is the one ``dialect_insert(...).on_conflict_do_update`` rendered before: the
        required columns take the file's value, category and status keep the stored one where
        the cell was empty (``keep_stored``), and only if the file has the column.

        On SQLite each statement takes and returns a whole batch as one JSON value: one
        ``sqlite3_step`` per statement instead of one per row. Python's sqlite3 releases the
        GIL around every step and takes it back after, and with the parse thread running
        (the next batch is parsed while this one is written) each take-back waits for that
        thread's switch interval: executemany of 20,000 rows ran several times slower than
        alone. PostgreSQL (asyncpg, on the event loop) keeps executemany and arrays.
        """
        if self._sql is None:
            names = ", ".join(_COLUMNS)
            set_ = [f"{c} = excluded.{c}" for c in ("external_id", "amount_cents", "ordered_at")]
            set_ += [
                f"{c} = coalesce(excluded.{c}, orders.{c})"
                for c in ("category", "status")
                if c in self.present
            ]
            conflict = f"ON CONFLICT (order_id) DO UPDATE SET {', '.join(set_)}"
            if self.dialect == "sqlite":
                fields = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS)))
                self._sql = _Statements(
                    stored=f"SELECT json_group_array(json_array({names})) FROM orders"
                    " WHERE order_id IN (SELECT value FROM json_each(?))",
                    known="SELECT json_group_array(external_id) FROM customers"
                    " WHERE external_id IN (SELECT value FROM json_each(?))",
                    # WHERE true: without it SQLite would read ON CONFLICT as a join's ON.
                    upsert=f"INSERT INTO orders ({names}) SELECT {fields} FROM json_each(?)"
                    f" WHERE true {conflict}",
                )
            else:
                marks = _marks(conn.dialect.paramstyle, len(_COLUMNS))
                self._sql = _Statements(
                    stored=f"SELECT {names} FROM orders"
                    f" WHERE order_id = ANY({marks[0]}::varchar[])",
                    known="SELECT external_id FROM customers"
                    f" WHERE external_id = ANY({marks[0]}::varchar[])",
                    upsert=f"INSERT INTO orders ({names}) VALUES ({', '.join(marks)}) {conflict}",
                )
            # A stored ordered_at as ``UtcDateTime`` reads it, for SQLite text that is not in
            # the form ``sqlite_text`` writes (a row stored by other means): "unchanged"
            # still means the same instant, as when the look-up went through SQLAlchemy.
            self._read_time = (
                _result_processor(conn.dialect) or _same if self.dialect == "sqlite" else _same
            )
        return self._sql

    async def _look_up(self, conn: AsyncConnection, sql: str, keys: list[str]) -> list[Any]:
        """The rows (SQLite: JSON arrays; PostgreSQL: rows) a look-up finds for ``keys``."""
        if self.dialect == "sqlite":
            found = (await conn.exec_driver_sql(sql, (json.dumps(keys),))).scalar()
            return cast(list[Any], json.loads(found)) if found else []
        return list(await conn.exec_driver_sql(sql, (keys,)))

    async def write(self, session: AsyncSession, rows: list[OrderRow]) -> None:
        conn = await session.connection()
        sql = self._statements(conn)
        sqlite = self.dialect == "sqlite"
        # key -> (order_id, external_id, amount_cents, ordered_at, category, status) as stored:
        # ordered_at is the driver's value (SQLite: text, see ``sqlite_text``).
        stored: dict[str, Any] = {}
        if not self.dry_run:
            found = await self._look_up(conn, sql.stored, list({r.order_id for r in rows}))
            stored = {row[0]: row for row in found}
        owners = list({r.external_id for r in rows})
        known = {row if sqlite else row[0] for row in await self._look_up(conn, sql.known, owners)}
        # A key's rows of this batch folded into one row, in file order ("the later row wins").
        merged: dict[str, OrderRow] = {}
        first: set[str] = set()
        seen, orphans = self.seen, self.orphans
        new = 0
        for r in rows:
            key = r.order_id
            if key in seen:
                self.accept("order_id", key, r.line)  # a repeat: its warning
            else:
                # ``accept`` for the common first row, inline: it runs for every row.
                seen[key] = r.line
                first.add(key)
                new += 1
            if r.external_id in known:
                orphans.discard(key)
            else:
                orphans.add(key)
            before = merged.get(key)
            merged[key] = r if before is None else _fold(before, r)
        self.report.ok += new
        if self.dry_run:
            return
        db_time = sqlite_text if sqlite else _same
        read_time = self._read_time
        assert read_time is not None  # set with the statements
        upserts: list[tuple[Any, ...]] = []
        clears: dict[str, set[str]] = {}
        for key, r in merged.items():
            at = db_time(r.ordered_at)
            old = stored.get(key)
            if old is not None:
                # The stored row as it will be after this write: what decides "changed".
                category, status, cleared = r.category, r.status, r.cleared
                if category is None:
                    category = None if "category" in cleared else old[4]
                if status is None:
                    status = None if "status" in cleared else old[5]
                changed = (
                    old[1] != r.external_id
                    or old[2] != r.amount_cents
                    or (old[3] != at and read_time(old[3]) != r.ordered_at)
                    or old[4] != category
                    or old[5] != status
                )
                self.count(key, key in first, True, changed)
                if not changed:
                    continue
                for column in cleared:
                    if old[_COLUMNS.index(column)] is not None:
                        clears.setdefault(column, set()).add(key)
            else:
                self.count(key, key in first, False, True)
            upserts.append((key, r.external_id, r.amount_cents, at, r.category, r.status))
        if upserts:
            # In the covering index's order (by external_id, its first column; a batch holds
            # few orders of one customer): its insertions, the costly part of an import, then
            # walk its pages forward instead of at random (one row per order_id here, so the
            # order of the rows cannot change what is stored).
            upserts.sort(key=_INDEX_ORDER)
            if sqlite:
                # ensure_ascii off: the text reaches SQLite as it is, not as escapes.
                await conn.exec_driver_sql(sql.upsert, (json.dumps(upserts, ensure_ascii=False),))
            else:
                await conn.exec_driver_sql(sql.upsert, upserts)
        for column, keys_ in clears.items():
            await session.execute(
                update(ORDERS).where(self.among(ORDERS.c.order_id, keys_)).values({column: None})
            )

    def closing_warnings(self) -> list[str]:
        n = len(self.orphans)
        if not n:
            return []
        return [f"{n} order{'s' if n != 1 else ''} belong to no imported customer yet"]


# The upsert's columns, in the order of its tuples and of the stored look-up's rows.
_COLUMNS = ("order_id", "external_id", "amount_cents", "ordered_at", "category", "status")
_INDEX_ORDER = itemgetter(1)  # external_id of an upsert tuple


class _Statements(NamedTuple):
    stored: str  # a batch's stored orders by order_id
    known: str  # which of a batch's external_ids are customers
    upsert: str


def _fold(before: OrderRow, r: OrderRow) -> OrderRow:
    """Two rows of one key in file order as one: the later row's values, its empty optional
    cells keeping the earlier row's value or clear (``Merged.apply``, for orders)."""
    category, status, cleared = r.category, r.status, set(r.cleared)
    if category is None and "category" not in cleared:
        category = before.category
        cleared |= before.cleared & {"category"}
    if status is None and "status" not in cleared:
        status = before.status
        cleared |= before.cleared & {"status"}
    return replace(r, category=category, status=status, cleared=frozenset(cleared))


def _same(value: Any) -> Any:
    return value  # PostgreSQL: asyncpg binds and returns aware datetimes themselves


def _marks(paramstyle: str, n: int) -> list[str]:
    if paramstyle == "qmark":
        return ["?"] * n
    if paramstyle == "numeric_dollar":
        return [f"${i}" for i in range(1, n + 1)]
    if paramstyle == "format":
        return ["%s"] * n
    raise NotImplementedError(f"import does not support the {paramstyle} parameter style")


def _result_processor(dialect: Any) -> Callable[[Any], Any] | None:
    # The dialect's own implementation of the column type (SQLite's DATETIME parses text).
    column_type = ORDERS.c.ordered_at.type
    processor: Callable[[Any], Any] | None = column_type.dialect_impl(dialect).result_processor(
        dialect, None
    )
    return processor
