"""Writing orders.csv to the database: ``OrderImporter``, the upsert by ``order_id``.

Orders of customers not imported yet load too (counted in one closing warning); a stored order
changes only where the file changes it, and ``(clear)`` empties its category or status. The
import's rules are described in ``routing.customers.importer``; the run around a batch is
``routing.customers.import_driver.Importer``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.customers.import_driver import (
    CUSTOMERS,
    ORDERS,
    Importer,
    Merged,
    dialect_insert,
    keep_stored,
)
from routing.customers.import_rows import (
    ORDER_COLUMNS,
    ORDER_REQUIRED,
    OrderRow,
    RowError,
    check_date_format,
    parse_order_row,
)
from routing.policy.root import Policy

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
        self.stmt: Any = None
        self._written: tuple[str, ...] | None = None

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> OrderRow | RowError:
        return parse_order_row(
            row, line, policy, date_format=self.date_format, decimal_comma=self.decimal_comma
        )

    @property
    def written(self) -> tuple[str, ...]:
        # Read for every row: computed once, after the header set ``present``.
        if self._written is None:
            optional = tuple(c for c in ("category", "status") if c in self.present)
            self._written = ("external_id", "amount_cents", "ordered_at", *optional)
        return self._written

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = dialect_insert(session, ORDERS)
            excluded = stmt.excluded
            set_: dict[str, ColumnElement[Any]] = {}
            for column in self.written:
                if column in ("category", "status"):
                    set_[column] = keep_stored(column, excluded, ORDERS)
                else:
                    set_[column] = excluded[column]
            self.stmt = stmt.on_conflict_do_update(index_elements=["order_id"], set_=set_)
        return self.stmt

    async def write(self, session: AsyncSession, rows: list[OrderRow]) -> None:
        o, c = ORDERS.c, CUSTOMERS.c
        stored: dict[str, dict[str, Any]] = {}
        if not self.dry_run:
            names = ("order_id", *self.written)
            result = await session.execute(
                select(*(o[n] for n in names)).where(
                    self.among(o.order_id, {r.order_id for r in rows})
                )
            )
            stored = {row[0]: dict(zip(names, row, strict=True)) for row in result}
        owners = {r.external_id for r in rows}
        known = set(
            await session.scalars(select(c.external_id).where(self.among(c.external_id, owners)))
        )
        merged: dict[str, Merged] = {}
        first: set[str] = set()
        for r in rows:
            if self.accept("order_id", r.order_id, r.line):
                first.add(r.order_id)
            if r.external_id in known:
                self.orphans.discard(r.order_id)
            else:
                self.orphans.add(r.order_id)
            values = {column: getattr(r, column) for column in self.written}
            m = merged.get(r.order_id)
            if m is None:
                m = merged[r.order_id] = Merged(r.line, {}, set())
            m.apply(r.line, values, r.cleared & self.present)
        if self.dry_run:
            return
        upserts: list[dict[str, Any]] = []
        clears: dict[str, set[str]] = {}
        for key, m in merged.items():
            old = stored.get(key)
            if old is not None:
                after = m.after(old, self.written)
                changed = any(after[col] != old[col] for col in self.written)
                self.count(key, key in first, True, changed)
                if not changed:
                    continue
                for column in m.cleared:
                    if old[column] is not None:
                        clears.setdefault(column, set()).add(key)
            else:
                self.count(key, key in first, False, True)
            upserts.append(
                {
                    "order_id": key,
                    "external_id": m.values["external_id"],
                    "amount_cents": m.values["amount_cents"],
                    "category": m.values.get("category"),
                    "ordered_at": m.values["ordered_at"],
                    "status": m.values.get("status"),
                }
            )
        if upserts:
            # In the covering index's order: its insertions, the costly part of an import,
            # then walk its pages forward instead of at random (one row per order_id here,
            # so the order of the rows cannot change what is stored).
            upserts.sort(key=_index_order)
            await session.execute(self._upsert(session), upserts)
        for column, keys in clears.items():
            await session.execute(
                update(ORDERS).where(self.among(o.order_id, keys)).values({column: None})
            )

    def closing_warnings(self) -> list[str]:
        n = len(self.orphans)
        if not n:
            return []
        return [f"{n} order{'s' if n != 1 else ''} belong to no imported customer yet"]


def _index_order(row: dict[str, Any]) -> tuple[str, datetime]:
    return row["external_id"], row["ordered_at"]
