"""The run both imports share: batches, transactions, counting, and the ``ImportReport``.

``Importer`` scans the file (``routing.customers.import_files``), parses the next batch in a
worker thread while the current one is written, writes each batch in its own transaction, and
keeps the bookkeeping of the report: accepted rows, repeated keys ("the later row wins"), the
exact inserted / updated / unchanged counts, and row errors listed up to ``MAX_LISTED`` then
counted. How a batch is written is each kind's own (``routing.customers.customer_importer``,
``routing.customers.order_importer``); the pieces of SQL both use are here: the tables, the
dialect's INSERT, the "an empty cell keeps the stored value" SET (``keep_stored``), and
``Merged``, a key's rows of one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, cast

from sqlalchemy import BigInteger, ColumnElement, String, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.customers.import_files import Batches, Header, open_csv, scan
from routing.customers.import_rows import Row, RowError, show_cell
from routing.policy.root import Policy
from routing.store.bulk import bulk_settings
from routing.store.models import Customer, Order

__all__ = [
    "CUSTOMERS",
    "MAX_LISTED",
    "ORDERS",
    "ImportReport",
    "Importer",
    "Merged",
    "dialect_insert",
    "fewer_collections",
    "keep_stored",
]

# At most this many row errors, and this many duplicate-key warnings, are listed in a report;
# the rest are counted in one closing warning (a broken 10M-row file must not fill memory).
MAX_LISTED = 10_000


CUSTOMERS = cast(Table, Customer.__table__)
ORDERS = cast(Table, Order.__table__)


@dataclass
class ImportReport:
    kind: Literal["customers", "orders"]
    rows: int = 0  # non-blank data rows in the file
    ok: int = 0  # rows accepted (valid and without conflict)
    inserted: int = 0  # distinct new keys written (exact; 0 for a dry run)
    updated: int = 0  # distinct existing keys whose values changed (exact; 0 for a dry run)
    unchanged: int = 0  # distinct existing keys already holding the file's values (ditto)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    phones_skipped: int = 0  # national phone numbers not loaded (no default_region)
    overrides_released: int = 0  # tier pins released by a (clear) cell

    def summary(self) -> str:
        """One line for a CLI: what happened, in numbers."""
        mode = " (dry run: nothing written)" if self.dry_run else ""
        return (
            f"{self.kind}: {self.rows} rows, {self.ok} ok, {self.rows - self.ok} rejected, "
            f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged "
            f"in {self.seconds:.2f}s{mode}"
        )


def dialect_insert(session: AsyncSession, table: Table) -> Any:
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"import is not supported on {name}")


class _Listed:
    """Errors and duplicate warnings, listed up to MAX_LISTED each and counted beyond."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.duplicates: list[str] = []
        self.unlisted_errors = 0
        self.unlisted_duplicates = 0

    def error(self, error: RowError) -> None:
        if len(self.report.errors) < MAX_LISTED:
            self.report.errors.append(error)
        else:
            self.unlisted_errors += 1

    def duplicate(self, warning: str) -> None:
        if len(self.duplicates) < MAX_LISTED:
            self.duplicates.append(warning)
        else:
            self.unlisted_duplicates += 1

    def finish(self, extra: list[str]) -> None:
        self.report.errors.sort(key=lambda e: e.line)
        self.report.warnings.extend(self.duplicates)
        if self.unlisted_duplicates:
            self.report.warnings.append(f"{self.unlisted_duplicates} more repeated keys not listed")
        self.report.warnings.extend(extra)
        if self.unlisted_errors:
            self.report.warnings.append(
                f"{self.unlisted_errors} more row errors not listed "
                f"(only the first {MAX_LISTED} are)"
            )


class Importer(Generic[Row]):
    """Shared driver: scan, then parse in a worker thread and write batch by batch."""

    kind: Literal["customers", "orders"]
    known: tuple[str, ...]
    required: tuple[str, ...]

    def __init__(self, policy: Policy, dry_run: bool, now: datetime | None) -> None:
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.policy = policy
        self.dry_run = dry_run
        self.now = now or datetime.now(UTC)
        self.report = ImportReport(kind=self.kind, dry_run=dry_run)
        self.listed = _Listed(self.report)
        self.seen: dict[str, int] = {}  # key -> line of its latest accepted row
        self.unchanged: set[str] = set()  # keys counted unchanged (a later row may change them)
        self.present: frozenset[str] = frozenset()
        self.dialect = ""
        self.path = Path()

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> Row | RowError:
        raise NotImplementedError

    def fast_parser(self, header: Header) -> Callable[[list[str], int], Row | None] | None:
        """A parser for the common valid record, tried before ``parse`` (see ``Batches``);
        None: every record is parsed the general way."""
        return None

    def among(self, column: ColumnElement[Any], values: Collection[str | int]) -> Any:
        """``column IN values`` with one bound parameter, not one per value.

        An expanding IN of 5,000 parameters costs more to render than the query does to run.
        """
        items = list(values)
        if self.dialect == "sqlite":
            each = func.json_each(json.dumps(items)).table_valued("value")
            return column.in_(select(each.c.value))
        if self.dialect == "postgresql":
            element = BigInteger() if items and isinstance(items[0], int) else String()
            return column == any_(bindparam(None, items, type_=postgresql.ARRAY(element)))
        return column.in_(items)

    async def write(self, session: AsyncSession, rows: list[Row]) -> None:
        raise NotImplementedError

    def closing_warnings(self) -> list[str]:
        return []

    def accept(self, key_name: str, key: str, line: int) -> bool:
        """Bookkeeping for an accepted row: repeat warning; True for the key's first row."""
        self.report.ok += 1
        previous = self.seen.get(key)
        self.seen[key] = line
        if previous is not None:
            self.listed.duplicate(
                f"line {line}: {key_name} {key} also on line {previous}; the later row wins"
            )
            return False
        return True

    def count(self, key: str, first: bool, existed: bool, changed: bool) -> None:
        """Count a key once the batch's rows of it are merged: ``first`` when the import had
        not seen it before this batch, ``existed`` when it was stored before this batch."""
        if self.dry_run:
            return
        r = self.report
        if first:
            if not existed:
                r.inserted += 1
            elif changed:
                r.updated += 1
            else:
                r.unchanged += 1
                self.unchanged.add(key)
        elif changed and key in self.unchanged:
            # Unchanged by its earlier rows, changed by a later one.
            self.unchanged.discard(key)
            r.unchanged -= 1
            r.updated += 1

    async def run(
        self, sessions: async_sessionmaker[AsyncSession], path: Path, batch_size: int
    ) -> ImportReport:
        started = time.perf_counter()
        path = self.path = Path(path)
        header = await asyncio.to_thread(scan, path, self.known, self.required)
        self.present = header.present
        if header.unknown:
            shown = ", ".join(show_cell(name)[1:-1] for name in header.unknown)
            self.report.warnings.append(f"ignored unknown columns: {shown}")
        f = open_csv(path)
        pending: asyncio.Future[tuple[int, list[Row | RowError]]] | None = None
        try:
            batches = Batches(f, path, header, self.parse, self.policy, self.fast_parser(header))
            async with sessions() as session, bulk_settings(session, own_transactions=True):
                self.dialect = session.get_bind().dialect.name
                with fewer_collections():
                    pending = asyncio.ensure_future(asyncio.to_thread(batches.next, batch_size))
                    while pending is not None:
                        count, parsed = await pending
                        # Parse the next batch in a worker thread while this one is written.
                        pending = None
                        if not batches.done:
                            pending = asyncio.ensure_future(
                                asyncio.to_thread(batches.next, batch_size)
                            )
                        self.report.rows += count
                        good: list[Row] = []
                        for item in parsed:
                            if isinstance(item, RowError):
                                self.listed.error(item)
                            else:
                                good.append(item)
                        if good:
                            async with session.begin():
                                await self.write(session, good)
        finally:
            if pending is not None:
                # The worker thread reads the file: let it finish before the file closes.
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()  # retrieved: an error here is secondary
            f.close()
        self.listed.finish(self.closing_warnings())
        self.report.seconds = time.perf_counter() - started
        return self.report


@contextlib.contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """CPython's cyclic garbage collector run less often for the length of an import.

    An import allocates millions of objects (cells, rows, tuples) that live for one batch:
    with the default threshold (a young collection every 700 allocations, and a full one over
    every object of the process whenever the survivors pile up) a 1,000,000-order import took
    44.5 s of CPU, with this threshold 27.2 s, with the collector off 27.9 s (one run each on
    the 2-core box, bench/RESULTS.md). It still runs, about 70 times less often, and the
    previous thresholds are restored after. The import makes no reference cycles of its own,
    so nothing it frees waits for the collector.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def keep_stored(column: str, excluded: Any, table: Table) -> ColumnElement[Any]:
    """In an upsert's SET: the file's value, or the stored one where the cell was empty."""
    return func.coalesce(excluded[column], table.c[column])


@dataclass(slots=True)
class Merged:
    """A key's rows of one batch, applied in file order: ``values`` holds the columns the
    file sets (``None``: keep), ``cleared`` the columns set NULL by ``(clear)``."""

    line: int
    values: dict[str, Any]
    cleared: set[str]
    override_line: int = 0  # the row that set tier_override

    def apply(self, line: int, values: dict[str, Any], cleared: frozenset[str]) -> None:
        self.line = line
        for column, value in values.items():
            if value is not None:
                self.values[column] = value
                self.cleared.discard(column)
        for column in cleared:
            self.values[column] = None
            self.cleared.add(column)

    def after(self, stored: dict[str, Any], columns: Collection[str]) -> dict[str, Any]:
        """The stored values as they will be after this key's write."""
        out = {c: stored[c] for c in columns}
        for c in columns:
            if c in self.cleared:
                out[c] = None
            elif self.values.get(c) is not None:
                out[c] = self.values[c]
        return out
