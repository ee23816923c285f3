"""Bulk import of CRM exports: ``customers.csv`` and ``orders.csv``.

The file is streamed: rows are read, validated and written in batches of ``BATCH_SIZE``, each
batch in its own transaction, so a 10-million-row export neither sits in memory nor holds one
giant transaction (on SQLite the bot's own writers get their turn between batches). Bad rows
are reported as ``line N: reason`` and skipped; good rows load. Writing is an idempotent upsert
(customers by ``external_id``, orders by ``order_id``): importing the same file twice leaves the
same data.

Before anything is written the whole file is scanned once for file-level problems (not UTF-8,
malformed CSV, missing header columns), which raise ``ImportFileError``: a file that cannot be
read to the end writes nothing.

Counting: ``inserted`` and ``updated`` are exact counts of distinct keys (``external_id`` /
``order_id``) that did not exist, respectively already existed, before the import, established
by a look-up in the same transaction as each batch's write (a concurrent writer between
look-up and write on PostgreSQL could make one count off, never the data). A key repeated in the
file counts once. Both are 0 for a dry run. ``ok`` counts every accepted row, including rows
later superseded by a repeat of their key.

Memory: rows are not kept, but the keys already seen (for the "later row wins" warnings and
the counts) are: roughly 150 bytes per distinct key.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import json
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Generic, Literal, TextIO, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Table,
    any_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.models import Customer, Order
from routing.phones import normalize_phone
from routing.policy import Policy

__all__ = [
    "BATCH_SIZE",
    "CUSTOMER_COLUMNS",
    "MAX_LISTED",
    "ORDER_COLUMNS",
    "CustomerRow",
    "ImportFileError",
    "ImportReport",
    "OrderRow",
    "RowError",
    "import_customers",
    "import_orders",
    "parse_customer_row",
    "parse_order_row",
]

BATCH_SIZE = 5000
# At most this many row errors, and this many duplicate-key warnings, are listed in a report;
# the rest are counted in one closing warning (a broken 10M-row file must not fill memory).
MAX_LISTED = 10_000

CUSTOMER_COLUMNS = (
    "external_id",
    "name",
    "phone",
    "email",
    "telegram_id",
    "language",
    "account_manager",
    "tier_override",
    # Optional beyond the original contract: the customer's own zone, so survey quiet hours
    # follow their night rather than the business's.
    "timezone",
)
CUSTOMER_REQUIRED = ("external_id",)
ORDER_COLUMNS = ("external_id", "order_id", "amount", "category", "ordered_at", "status")
ORDER_REQUIRED = ("external_id", "order_id", "amount", "ordered_at")

_CUSTOMERS = cast(Table, Customer.__table__)
_ORDERS = cast(Table, Order.__table__)

_BIGINT_MAX = 2**63 - 1
_AMOUNT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_INT_RE = re.compile(r"[0-9]+")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")
_HUNDRED = Decimal(100)
_ONE = Decimal(1)


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message is one line naming the file."""


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    kind: Literal["customers", "orders"]
    rows: int = 0  # non-blank data rows in the file
    ok: int = 0  # rows accepted (valid and without conflict)
    inserted: int = 0  # distinct new keys written (exact; 0 for a dry run)
    updated: int = 0  # distinct existing keys overwritten (exact; 0 for a dry run)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for a CLI: what happened, in numbers."""
        mode = " (dry run: nothing written)" if self.dry_run else ""
        return (
            f"{self.kind}: {self.rows} rows, {self.ok} ok, {self.rows - self.ok} rejected, "
            f"{self.inserted} inserted, {self.updated} updated in {self.seconds:.2f}s{mode}"
        )


@dataclass(frozen=True, slots=True)
class CustomerRow:
    line: int
    external_id: str
    name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    telegram_id: int | None = None
    language: str | None = None  # lowercase, '-' separated
    account_manager: str | None = None
    tier_override: str | None = None  # in the policy's spelling
    timezone: str | None = None  # an IANA name


@dataclass(frozen=True, slots=True)
class OrderRow:
    line: int
    external_id: str
    order_id: str
    amount_cents: int
    ordered_at: datetime  # aware, UTC
    category: str | None = None
    status: str | None = None


# --- validation (pure) -----------------------------------------------------------------------


def _show(value: str) -> str:
    """A cell quoted for a message, shortened so that a garbage cell cannot flood the report."""
    return f"'{value}'" if len(value) <= 40 else f"'{value[:37]}...'"


def _text(row: dict[str, str], key: str, limit: int, problems: list[str]) -> str | None:
    value = row.get(key, "").strip()
    if not value:
        return None
    if len(value) > limit:
        problems.append(f"{key} longer than {limit} characters")
    return value


def _key(row: dict[str, str], key: str, problems: list[str]) -> str:
    value = row.get(key, "").strip()
    if not value:
        problems.append(f"missing {key}")
    elif len(value) > 64:
        problems.append(f"{key} longer than 64 characters")
    return value


def _email_ok(value: str) -> bool:
    if value.count("@") != 1 or any(ch.isspace() for ch in value):
        return False
    local, domain = value.split("@")
    return (
        bool(local)
        and "." in domain
        and not domain.startswith(".")
        and not domain.endswith(".")
        and ".." not in domain
    )


def parse_customer_row(row: dict[str, str], line: int, policy: Policy) -> CustomerRow | RowError:
    """Validate one customers.csv row (column name -> cell); every problem is reported."""
    problems: list[str] = []
    external_id = _key(row, "external_id", problems)
    name = _text(row, "name", 200, problems)

    phone: str | None = None
    raw_phone = row.get("phone", "").strip()
    if raw_phone:
        phone = normalize_phone(raw_phone, policy.identification.default_region)
        if phone is None:
            problems.append(f"bad phone {_show(raw_phone)}")

    email = _text(row, "email", 254, problems)
    if email is not None and not _email_ok(email):
        problems.append(f"bad email {_show(email)}")

    telegram_id: int | None = None
    raw_tg = row.get("telegram_id", "").strip()
    if raw_tg:
        if _INT_RE.fullmatch(raw_tg) and 0 < int(raw_tg) <= _BIGINT_MAX:
            telegram_id = int(raw_tg)
        else:
            problems.append(f"bad telegram_id {_show(raw_tg)} (expected a positive integer)")

    language: str | None = None
    raw_lang = row.get("language", "").strip()
    if raw_lang:
        language = raw_lang.replace("_", "-").lower()
        if len(language) > 16 or not _LANGUAGE_RE.fullmatch(language):
            problems.append(f"bad language {_show(raw_lang)} (expected e.g. en, zh-CN, zh-hans)")

    account_manager = _text(row, "account_manager", 200, problems)

    tier_override: str | None = None
    raw_tier = row.get("tier_override", "").strip()
    if raw_tier:
        by_lower = {name.lower(): name for name in policy.tier_names}
        tier_override = by_lower.get(raw_tier.lower())
        if tier_override is None:
            valid = ", ".join(policy.tier_names)
            problems.append(f"unknown tier {_show(raw_tier)} (valid tiers: {valid})")

    timezone = _text(row, "timezone", 64, problems)
    if timezone is not None and not _zone_ok(timezone):
        problems.append(
            f"bad timezone {_show(timezone)} (expected an IANA name, e.g. Asia/Shanghai)"
        )

    if problems:
        return RowError(line, "; ".join(problems))
    return CustomerRow(
        line=line,
        external_id=external_id,
        name=name,
        phone=phone,
        email=email,
        telegram_id=telegram_id,
        language=language,
        account_manager=account_manager,
        tier_override=tier_override,
        timezone=timezone,
    )


@functools.lru_cache(maxsize=4096)  # a huge file of junk zones must not grow it forever
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):  # ValueError: e.g. a path, not a key
        return False
    return True


def _parse_amount(raw: str, problems: list[str]) -> int:
    if not raw:
        problems.append("missing amount")
        return 0
    if "," in raw or "_" in raw:
        problems.append(
            f"amount {_show(raw)} has a ',' or '_' separator; write plain digits with '.' "
            "for decimals (e.g. 1234.50)"
        )
        return 0
    if not _AMOUNT_RE.fullmatch(raw):
        problems.append(f"bad amount {_show(raw)}")
        return 0
    cents = Decimal(raw) * _HUNDRED
    whole = cents.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != cents:
        # Money is never silently rounded: 10.005 is a mistake in the export, not 10.00.
        problems.append(f"amount {_show(raw)} has more than 2 decimal places")
        return 0
    if abs(whole) > _BIGINT_MAX:
        problems.append(f"amount {_show(raw)} is out of range")
        return 0
    return int(whole)


def _parse_when(raw: str, problems: list[str]) -> datetime:
    if not raw:
        problems.append("missing ordered_at")
        return datetime.min.replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(raw)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        problems.append(f"unparseable date {_show(raw)}")
        return datetime.min.replace(tzinfo=UTC)


def parse_order_row(row: dict[str, str], line: int, policy: Policy) -> OrderRow | RowError:
    """Validate one orders.csv row (column name -> cell); every problem is reported.

    ``amount`` is a plain decimal ('.' separator, optional leading '-' for refunds, at most
    2 decimal places) stored as integer cents; ``ordered_at`` is an ISO 8601 date or datetime,
    naive values being UTC.
    """
    problems: list[str] = []
    external_id = _key(row, "external_id", problems)
    order_id = _key(row, "order_id", problems)
    amount_cents = _parse_amount(row.get("amount", "").strip(), problems)
    ordered_at = _parse_when(row.get("ordered_at", "").strip(), problems)
    category = _text(row, "category", 100, problems)
    status = _text(row, "status", 32, problems)
    if problems:
        return RowError(line, "; ".join(problems))
    return OrderRow(
        line=line,
        external_id=external_id,
        order_id=order_id,
        amount_cents=amount_cents,
        ordered_at=ordered_at,
        category=category,
        status=status,
    )


# --- reading ---------------------------------------------------------------------------------

_Row = TypeVar("_Row", bound=CustomerRow | OrderRow)


def _open(path: Path) -> TextIO:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _records(f: TextIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line of the record's first line, cells) for every CSV record."""
    reader = csv.reader(f)
    last = 0
    try:
        for cells in reader:
            # line_num counts physical lines consumed, so a quoted multi-line field does not
            # shift the numbers of later records.
            yield last + 1, cells
            last = reader.line_num
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path}: not UTF-8 text (line {_first_non_utf8_line(path)}); save it as 'CSV UTF-8'"
        ) from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: malformed CSV near line {last + 1}: {exc}") from None


def _first_non_utf8_line(path: Path) -> int:
    """The physical line holding the first byte that is not UTF-8 (text mode decodes in
    chunks, so its error does not say). A newline byte never occurs inside a UTF-8 sequence,
    so lines can be decoded one by one."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1  # pragma: no cover - only called after a decoding error


def _blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


@dataclass
class _Header:
    columns: list[tuple[int, str]]  # (position, name) of the known columns
    width: int
    present: frozenset[str]
    unknown: list[str]


def _header(
    cells: list[str], path: Path, known: tuple[str, ...], required: tuple[str, ...]
) -> _Header:
    names = [cell.strip().lower() for cell in cells]
    columns: list[tuple[int, str]] = []
    unknown: list[str] = []
    for position, name in enumerate(names):
        if name in known:
            if any(name == seen for _, seen in columns):
                raise ImportFileError(f"{path}: column '{name}' appears twice in the header")
            columns.append((position, name))
        else:
            unknown.append(name or f"(unnamed column {position + 1})")
    present = frozenset(name for _, name in columns)
    missing = [name for name in required if name not in present]
    if missing:
        hint = ""
        if len(cells) == 1 and ";" in cells[0]:
            hint = " (the file looks semicolon-separated; export it comma-separated)"
        raise ImportFileError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the header has: {', '.join(n for n in names if n) or 'nothing'}"
            f"{hint}"
        )
    return _Header(columns, len(names), present, unknown)


def _scan(path: Path, known: tuple[str, ...], required: tuple[str, ...]) -> _Header:
    """Read the whole file once, before writing anything, for file-level problems."""
    with _open(path) as f:
        records = _records(f, path)
        header: _Header | None = None
        for _, cells in records:
            if not _blank(cells):
                header = _header(cells, path, known, required)
                break
        if header is None:
            raise ImportFileError(f"{path}: the file is empty (no header row)")
        for _ in records:
            pass
    return header


class _Batches(Generic[_Row]):
    """Parses the data rows of an open file, a batch at a time (called from a worker thread)."""

    def __init__(
        self,
        f: TextIO,
        path: Path,
        header: _Header,
        parse: Callable[[dict[str, str], int, Policy], _Row | RowError],
        policy: Policy,
    ) -> None:
        self._records = _records(f, path)
        self._header = header
        self._parse = parse
        self._policy = policy
        self.done = False
        for _, cells in self._records:  # skip to just past the header
            if not _blank(cells):
                break

    def next(self, size: int) -> tuple[int, list[_Row | RowError]]:
        """Up to ``size`` non-blank rows: (how many, parsed rows or errors)."""
        out: list[_Row | RowError] = []
        columns, width = self._header.columns, self._header.width
        for line, cells in self._records:
            if _blank(cells):
                continue
            if len(cells) > width and not _blank(cells[width:]):
                out.append(RowError(line, f"{len(cells)} fields but the header has {width}"))
            else:
                n = len(cells)
                row = {name: cells[pos].strip() if pos < n else "" for pos, name in columns}
                out.append(self._parse(row, line, self._policy))
            if len(out) >= size:
                return len(out), out
        self.done = True
        return len(out), out


# --- writing ---------------------------------------------------------------------------------


def _dialect_insert(session: AsyncSession, table: Table) -> Any:
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


class _Importer(Generic[_Row]):
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
        self.present: frozenset[str] = frozenset()
        self.dialect = ""

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> _Row | RowError:
        raise NotImplementedError

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

    async def write(self, session: AsyncSession, rows: list[_Row]) -> None:
        raise NotImplementedError

    def closing_warnings(self) -> list[str]:
        return []

    def accept(self, key_name: str, key: str, line: int, existing: set[str]) -> None:
        """Bookkeeping for an accepted row: repeat warning, counts."""
        self.report.ok += 1
        previous = self.seen.get(key)
        if previous is not None:
            self.listed.duplicate(
                f"line {line}: {key_name} {key} also on line {previous}; the later row wins"
            )
        elif not self.dry_run:
            if key in existing:
                self.report.updated += 1
            else:
                self.report.inserted += 1
        self.seen[key] = line

    async def run(
        self, sessions: async_sessionmaker[AsyncSession], path: Path, batch_size: int
    ) -> ImportReport:
        started = time.perf_counter()
        path = Path(path)
        header = await asyncio.to_thread(_scan, path, self.known, self.required)
        self.present = header.present
        if header.unknown:
            self.report.warnings.append(f"ignored unknown columns: {', '.join(header.unknown)}")
        f = _open(path)
        pending: asyncio.Future[tuple[int, list[_Row | RowError]]] | None = None
        try:
            batches = _Batches(f, path, header, self.parse, self.policy)
            async with sessions() as session:
                self.dialect = session.get_bind().dialect.name
                pending = asyncio.ensure_future(asyncio.to_thread(batches.next, batch_size))
                while pending is not None:
                    count, parsed = await pending
                    # Parse the next batch in a worker thread while this one is written.
                    pending = None
                    if not batches.done:
                        pending = asyncio.ensure_future(asyncio.to_thread(batches.next, batch_size))
                    self.report.rows += count
                    good: list[_Row] = []
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


class _CustomerImporter(_Importer[CustomerRow]):
    kind = "customers"
    known = CUSTOMER_COLUMNS
    required = CUSTOMER_REQUIRED

    def __init__(self, policy: Policy, dry_run: bool, now: datetime | None) -> None:
        super().__init__(policy, dry_run, now)
        # telegram_id -> external_id of the row in this file that took it.
        self.claims: dict[int, str] = {}
        self.stmt: Any = None

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> CustomerRow | RowError:
        return parse_customer_row(row, line, policy)

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = _dialect_insert(session, _CUSTOMERS)
            excluded = stmt.excluded
            set_: dict[str, ColumnElement[Any]] = {}
            for column in CUSTOMER_COLUMNS[1:]:
                if column not in self.present:
                    continue
                if column == "telegram_id":
                    # CRMs rarely know Telegram ids: an empty cell keeps the bot's link.
                    set_[column] = func.coalesce(excluded[column], _CUSTOMERS.c.telegram_id)
                else:
                    set_[column] = excluded[column]
            # tier and spend_12m are the rescoring's: an update never touches them.
            set_["is_guest"] = excluded["is_guest"]
            set_["updated_at"] = excluded["updated_at"]
            self.stmt = stmt.on_conflict_do_update(index_elements=["external_id"], set_=set_)
        return self.stmt

    async def write(self, session: AsyncSession, rows: list[CustomerRow]) -> None:
        c = _CUSTOMERS.c
        existing: set[str] = set()
        if not self.dry_run:
            keys = {r.external_id for r in rows}
            existing = set(
                await session.scalars(select(c.external_id).where(self.among(c.external_id, keys)))
            )
        owners: dict[int, tuple[str | None, bool, int]] = {}
        wanted = {r.telegram_id for r in rows if r.telegram_id is not None}
        if wanted:
            result = await session.execute(
                select(c.telegram_id, c.external_id, c.is_guest, c.id).where(
                    self.among(c.telegram_id, wanted)
                )
            )
            owners = {tg: (ext, guest, id_) for tg, ext, guest, id_ in result}

        detach: set[int] = set()
        values: dict[str, dict[str, Any]] = {}
        for r in rows:
            tg = r.telegram_id
            if tg is not None:
                holder = self.claims.get(tg)
                if holder is None and tg in owners:
                    ext, guest, id_ = owners[tg]
                    if ext != r.external_id:
                        if guest:
                            detach.add(tg)
                        else:
                            holder = ext if ext is not None else f"#{id_}"
                if holder is not None and holder != r.external_id:
                    self.listed.error(
                        RowError(r.line, f"telegram_id {tg} already belongs to customer {holder}")
                    )
                    continue
                self.claims[tg] = r.external_id
            self.accept("external_id", r.external_id, r.line, existing)
            values.pop(r.external_id, None)
            values[r.external_id] = {
                "external_id": r.external_id,
                "name": r.name,
                "phone": r.phone,
                "email": r.email,
                "telegram_id": tg,
                "language": r.language,
                "account_manager": r.account_manager,
                "tier_override": r.tier_override,
                "timezone": r.timezone,
                "tier": r.tier_override or self.policy.lowest_tier,
                "spend_12m": 0.0,
                "is_guest": False,
                "created_at": self.now,
                "updated_at": self.now,
            }
        if self.dry_run or not values:
            return
        if detach:
            # A guest who chatted before their record was imported: the record takes the id.
            await session.execute(
                update(_CUSTOMERS)
                .where(self.among(c.telegram_id, detach), c.is_guest.is_(True))
                .values(telegram_id=None, updated_at=self.now)
            )
        await session.execute(self._upsert(session), list(values.values()))


class _OrderImporter(_Importer[OrderRow]):
    kind = "orders"
    known = ORDER_COLUMNS
    required = ORDER_REQUIRED

    def __init__(self, policy: Policy, dry_run: bool, now: datetime | None) -> None:
        super().__init__(policy, dry_run, now)
        self.orphans: set[str] = set()  # order_ids whose external_id matches no customer
        self.stmt: Any = None

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> OrderRow | RowError:
        return parse_order_row(row, line, policy)

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = _dialect_insert(session, _ORDERS)
            excluded = stmt.excluded
            columns = ["external_id", "amount_cents", "ordered_at"]
            columns += [c for c in ("category", "status") if c in self.present]
            self.stmt = stmt.on_conflict_do_update(
                index_elements=["order_id"], set_={c: excluded[c] for c in columns}
            )
        return self.stmt

    async def write(self, session: AsyncSession, rows: list[OrderRow]) -> None:
        o, c = _ORDERS.c, _CUSTOMERS.c
        existing: set[str] = set()
        if not self.dry_run:
            keys = {r.order_id for r in rows}
            existing = set(
                await session.scalars(select(o.order_id).where(self.among(o.order_id, keys)))
            )
        owners = {r.external_id for r in rows}
        known = set(
            await session.scalars(select(c.external_id).where(self.among(c.external_id, owners)))
        )
        values: dict[str, dict[str, Any]] = {}
        for r in rows:
            self.accept("order_id", r.order_id, r.line, existing)
            if r.external_id in known:
                self.orphans.discard(r.order_id)
            else:
                self.orphans.add(r.order_id)
            values.pop(r.order_id, None)
            values[r.order_id] = {
                "order_id": r.order_id,
                "external_id": r.external_id,
                "amount_cents": r.amount_cents,
                "category": r.category,
                "ordered_at": r.ordered_at,
                "status": r.status,
            }
        if not self.dry_run and values:
            await session.execute(self._upsert(session), list(values.values()))

    def closing_warnings(self) -> list[str]:
        n = len(self.orphans)
        if not n:
            return []
        return [f"{n} order{'s' if n != 1 else ''} belong to no imported customer yet"]


# --- public entry points ---------------------------------------------------------------------


async def import_customers(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Upsert customers.csv by ``external_id``; see the module docstring for the rules.

    New customers get ``tier`` = their override or the lowest tier (rescoring follows an
    import); an update never touches ``tier`` or ``spend_12m``. Columns present in the file
    overwrite (an empty cell sets NULL) except ``telegram_id``, where an empty cell keeps the
    existing link. A telegram_id held by a guest moves to the imported customer (the guest row
    and its conversations stay as they are); one held by another imported customer, or taken
    by an earlier row of the same file, is a row error.
    """
    return await _CustomerImporter(policy, dry_run, now).run(sessions, path, batch_size)


async def import_orders(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Upsert orders.csv by ``order_id``; orders of not-yet-imported customers load too."""
    return await _OrderImporter(policy, dry_run, now).run(sessions, path, batch_size)
