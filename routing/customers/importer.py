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

Empty cells keep what is stored: a CRM export that leaves a column blank for some rows must not
wipe the values (or release the tier pins) the bot and its people set. Clearing a stored value
takes the explicit token ``(clear)`` (``CLEAR``) in the cell. Releasing a tier override that
way is written to the tier history with who ("import FILE") and why, and the customer is
regraded at once, as ``customers override ID --clear`` does.

Counting: ``inserted``, ``updated`` and ``unchanged`` are exact counts of distinct keys
(``external_id`` / ``order_id``): keys that did not exist before the import, keys that existed
and whose stored values the import changed, and keys that existed with exactly the values of
the file (nothing is written for them). They are established by a look-up in the same
transaction as each batch's write (a concurrent writer between look-up and write on
PostgreSQL could make one count off, never the data). A key repeated in the file counts once.
All three are 0 for a dry run. ``ok`` counts every accepted row, including rows later
superseded by a repeat of their key.

Real CRM exports: the delimiter (``,`` ``;`` tab ``|``) is detected from the header line;
``date_format`` (a strptime format) and ``decimal_comma`` (``1.234,56``) read what regional
settings produce. A national phone number that cannot be read without
``[identification] default_region`` loads the customer without the phone, counted in one
warning. A cell holding a NUL character is a row error (PostgreSQL cannot store one).

Memory: rows are not kept, but the keys already seen (for the "later row wins" warnings and
the counts) are: roughly 150 bytes per distinct key.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.customers.phones import normalize_phone
from routing.policy.root import Policy
from routing.scoring import rescoring
from routing.store.models import Customer, Order, TierChange

__all__ = [
    "BATCH_SIZE",
    "CLEAR",
    "CUSTOMER_COLUMNS",
    "DELIMITERS",
    "MAX_LISTED",
    "ORDER_COLUMNS",
    "CustomerRow",
    "ImportFileError",
    "ImportOptionError",
    "ImportReport",
    "OrderRow",
    "RowError",
    "check_date_format",
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
# --decimal-comma: ',' before the decimals, optional '.' between groups of three digits.
_AMOUNT_COMMA_RE = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,[0-9]+)?")
# Year first with slashes (2025/8/9, 2025/08/09 13:45): unambiguous, read without a flag.
_SLASH_DATE_RE = re.compile(
    r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?"
)
_INT_RE = re.compile(r"[0-9]+")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")
# A phone as people write one nationally: digits and the usual punctuation only.
_NATIONAL_PHONE_RE = re.compile(r"[0-9 ()./-]+")
_HUNDRED = Decimal(100)
_ONE = Decimal(1)
_NO_DATE = datetime.min.replace(tzinfo=UTC)

# The cell that clears a stored value (an empty cell keeps it). Case does not matter.
CLEAR = "(clear)"

DELIMITERS = (",", ";", "\t", "|")


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message is one line naming the file."""


class ImportOptionError(ValueError):
    """An import option (``date_format``) is unusable; the message is one line naming it."""


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


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """A valid row. ``None`` is an empty cell (keep the stored value); a column in ``cleared``
    held ``(clear)`` (set NULL)."""

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
    cleared: frozenset[str] = frozenset()
    # A national number that needs [identification] default_region: not loaded.
    phone_skipped: bool = False


@dataclass(frozen=True, slots=True)
class OrderRow:
    line: int
    external_id: str
    order_id: str
    amount_cents: int
    ordered_at: datetime  # aware, UTC
    category: str | None = None
    status: str | None = None
    cleared: frozenset[str] = frozenset()


# --- validation (pure) -----------------------------------------------------------------------


def _show(value: str) -> str:
    """A cell quoted for a message, shortened so that a garbage cell cannot flood the report."""
    value = value.replace("\x00", "\\0")
    return f"'{value}'" if len(value) <= 40 else f"'{value[:37]}...'"


def _is_clear(value: str) -> bool:
    return value.strip().lower() == CLEAR


def _take_clears(row: dict[str, str], columns: Collection[str]) -> frozenset[str]:
    """The optional columns whose cell is the clear token; their cells are emptied in ``row``."""
    cleared = frozenset(c for c in columns if _is_clear(row.get(c, "")))
    for column in cleared:
        row[column] = ""
    return cleared


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
    elif _is_clear(value):
        problems.append(f"{key} cannot be {CLEAR}")
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


def _looks_national(raw: str) -> bool:
    """A number written without its country code (no '+', no '00'): readable only with the
    business's ``default_region``. Too short or with letters, it is simply a bad phone."""
    if raw.startswith(("+", "00")) or not _NATIONAL_PHONE_RE.fullmatch(raw):
        return False
    digits = sum(ch.isdigit() for ch in raw)
    return 6 <= digits <= 15


def parse_customer_row(row: dict[str, str], line: int, policy: Policy) -> CustomerRow | RowError:
    """Validate one customers.csv row (column name -> cell); every problem is reported.

    An empty cell is ``None`` (keep the stored value); a ``(clear)`` cell is named in
    ``cleared``. A national phone number while the policy has no ``default_region`` is not an
    error: the row loads without it (``phone_skipped``).
    """
    row = dict(row)
    cleared = _take_clears(row, CUSTOMER_COLUMNS[1:])
    problems: list[str] = []
    external_id = _key(row, "external_id", problems)
    name = _text(row, "name", 200, problems)

    phone: str | None = None
    phone_skipped = False
    raw_phone = row.get("phone", "").strip()
    if raw_phone:
        region = policy.identification.default_region
        phone = normalize_phone(raw_phone, region)
        if phone is None:
            if region is None and _looks_national(raw_phone):
                phone_skipped = True
            else:
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
            problems.append(
                f"unknown tier {_show(raw_tier)} (valid tiers: {valid}; {CLEAR} releases the pin)"
            )

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
        cleared=cleared,
        phone_skipped=phone_skipped,
    )


@functools.lru_cache(maxsize=4096)  # a huge file of junk zones must not grow it forever
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):  # ValueError: e.g. a path, not a key
        return False
    return True


def _parse_amount(raw: str, problems: list[str], decimal_comma: bool = False) -> int:
    if not raw:
        problems.append("missing amount")
        return 0
    if decimal_comma:
        if not _AMOUNT_COMMA_RE.fullmatch(raw):
            problems.append(
                f"bad amount {_show(raw)} (expected e.g. 1.234,50 or 1234,50: "
                "',' for decimals, as --decimal-comma says)"
            )
            return 0
        text = raw.replace(".", "").replace(",", ".")
    elif "," in raw or "_" in raw:
        problems.append(
            f"amount {_show(raw)} has a ',' or '_' separator; write plain digits with '.' "
            "for decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50"
        )
        return 0
    elif not _AMOUNT_RE.fullmatch(raw):
        problems.append(f"bad amount {_show(raw)} (expected e.g. 1234.50)")
        return 0
    else:
        text = raw
    cents = Decimal(text) * _HUNDRED
    whole = cents.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != cents:
        # Money is never silently rounded: 10.005 is a mistake in the export, not 10.00.
        problems.append(f"amount {_show(raw)} has more than 2 decimal places")
        return 0
    if abs(whole) > _BIGINT_MAX:
        problems.append(f"amount {_show(raw)} is out of range")
        return 0
    return int(whole)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _parse_when(raw: str, problems: list[str], date_format: str | None = None) -> datetime:
    if not raw:
        problems.append("missing ordered_at")
        return _NO_DATE
    try:
        if date_format is not None:
            with contextlib.suppress(ValueError):
                return _utc(datetime.strptime(raw, date_format))
        slashed = _SLASH_DATE_RE.fullmatch(raw)
        if slashed:
            y, mo, d, h, mi, sec = (int(part or 0) for part in slashed.groups())
            return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
        return _utc(datetime.fromisoformat(raw))
    except (ValueError, OverflowError):
        expected = (
            f"{date_format} as --date-format says, or YYYY-MM-DD"
            if date_format is not None
            else "YYYY-MM-DD or --date-format"
        )
        problems.append(f"ordered_at {_show(raw)} is not a date (expected {expected})")
        return _NO_DATE


def check_date_format(date_format: str) -> None:
    """Raise ``ImportOptionError`` unless ``date_format`` is a strptime format that reads a
    full date (day, month and year) back from what it writes."""
    sample = datetime(2025, 8, 9, 13, 14, 15)
    hint = "expected a strptime format such as %d.%m.%Y or %m/%d/%Y %H:%M"
    if "%" not in date_format:
        raise ImportOptionError(f"--date-format {date_format!r} has no % directive ({hint})")
    try:
        back = datetime.strptime(sample.strftime(date_format), date_format)
    except (ValueError, TypeError) as exc:
        raise ImportOptionError(f"--date-format {date_format!r}: {exc} ({hint})") from None
    if back.date() != sample.date():
        raise ImportOptionError(
            f"--date-format {date_format!r} does not give a full date: it needs the day, "
            f"the month and the year ({hint})"
        )


def parse_order_row(
    row: dict[str, str],
    line: int,
    policy: Policy,
    *,
    date_format: str | None = None,
    decimal_comma: bool = False,
) -> OrderRow | RowError:
    """Validate one orders.csv row (column name -> cell); every problem is reported.

    ``amount`` is a plain decimal ('.' separator, optional leading '-' for refunds, at most
    2 decimal places) stored as integer cents; with ``decimal_comma`` it is written 1.234,56.
    ``ordered_at`` is an ISO 8601 date or datetime, or year-first with slashes (2025/8/9), or
    in ``date_format`` (strptime) when given; naive values are UTC.
    """
    row = dict(row)
    cleared = _take_clears(row, ("category", "status"))
    problems: list[str] = []
    external_id = _key(row, "external_id", problems)
    order_id = _key(row, "order_id", problems)
    amount_cents = _parse_amount(row.get("amount", "").strip(), problems, decimal_comma)
    ordered_at = _parse_when(row.get("ordered_at", "").strip(), problems, date_format)
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
        cleared=cleared,
    )


# --- reading ---------------------------------------------------------------------------------

_Row = TypeVar("_Row", bound=CustomerRow | OrderRow)


def _open(path: Path) -> TextIO:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _records(f: TextIO, path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(physical line of the record's first line, cells) for every CSV record."""
    reader = csv.reader(f, delimiter=delimiter)
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


def _delimiter(path: Path, known: tuple[str, ...]) -> str:
    """The delimiter of the file: of ``DELIMITERS``, the one that splits the header line into
    the most known column names (then into the most cells); ',' when nothing tells."""
    line = ""
    with _open(path) as f:
        try:
            for raw in f:
                if raw.strip("".join(DELIMITERS) + " \r\n"):
                    line = raw
                    break
        except UnicodeDecodeError:
            return ","  # the scan reports it, with its line
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        cells = next(csv.reader([line], delimiter=delimiter), [])
        score = (sum(cell.strip().lower() in known for cell in cells), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


@dataclass
class _Header:
    columns: list[tuple[int, str]]  # (position, name) of the known columns
    width: int
    present: frozenset[str]
    unknown: list[str]
    delimiter: str = ","


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
        shown = ", ".join(_show(n)[1:-1] for n in names if n) or "nothing"
        raise ImportFileError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the header has: {shown}"
        )
    return _Header(columns, len(names), present, unknown)


def _scan(path: Path, known: tuple[str, ...], required: tuple[str, ...]) -> _Header:
    """Read the whole file once, before writing anything, for file-level problems."""
    delimiter = _delimiter(path, known)
    with _open(path) as f:
        records = _records(f, path, delimiter)
        header: _Header | None = None
        for _, cells in records:
            if not _blank(cells):
                header = _header(cells, path, known, required)
                break
        if header is None:
            raise ImportFileError(f"{path}: the file is empty (no header row)")
        for _ in records:
            pass
    header.delimiter = delimiter
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
        self._records = _records(f, path, header.delimiter)
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
                nul = [name for name, value in row.items() if "\x00" in value]
                if nul:
                    # PostgreSQL cannot store one, and would fail the whole batch.
                    out.append(RowError(line, f"NUL character in {', '.join(nul)}"))
                else:
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
        self.unchanged: set[str] = set()  # keys counted unchanged (a later row may change them)
        self.present: frozenset[str] = frozenset()
        self.dialect = ""
        self.path = Path()

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
        header = await asyncio.to_thread(_scan, path, self.known, self.required)
        self.present = header.present
        if header.unknown:
            shown = ", ".join(_show(name)[1:-1] for name in header.unknown)
            self.report.warnings.append(f"ignored unknown columns: {shown}")
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


def _keep(column: str, excluded: Any, table: Table) -> ColumnElement[Any]:
    """In an upsert's SET: the file's value, or the stored one where the cell was empty."""
    return func.coalesce(excluded[column], table.c[column])


@dataclass(slots=True)
class _Merged:
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


# Customer columns read back to tell changed rows from unchanged ones, and to log releases.
_STORED_EXTRA = ("id", "tier", "score", "spend_12m", "tier_override_by", "tier_override_reason")


class _CustomerImporter(_Importer[CustomerRow]):
    kind = "customers"
    known = CUSTOMER_COLUMNS
    required = CUSTOMER_REQUIRED

    def __init__(self, policy: Policy, dry_run: bool, now: datetime | None) -> None:
        super().__init__(policy, dry_run, now)
        # telegram_id -> external_id of the row in this file that took it.
        self.claims: dict[int, str] = {}
        self.stmt: Any = None
        self.first_skipped_phone = 0  # line

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> CustomerRow | RowError:
        return parse_customer_row(row, line, policy)

    @property
    def written(self) -> tuple[str, ...]:
        """The file's optional columns, in table order."""
        return tuple(c for c in CUSTOMER_COLUMNS[1:] if c in self.present)

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = _dialect_insert(session, _CUSTOMERS)
            excluded = stmt.excluded
            set_: dict[str, ColumnElement[Any]] = {}
            for column in self.written:
                # An empty cell keeps the stored value ((clear) is a separate UPDATE).
                set_[column] = _keep(column, excluded, _CUSTOMERS)
            if "tier_override" in self.present:
                # Who pinned it: kept unless this file sets a different tier.
                for column in ("tier_override_by", "tier_override_reason", "tier_override_at"):
                    set_[column] = case(
                        (excluded.tier_override.is_(None), _CUSTOMERS.c[column]),
                        else_=excluded[column],
                    )
            # tier and spend_12m are the rescoring's: an update never touches them.
            set_["is_guest"] = excluded["is_guest"]
            set_["updated_at"] = excluded["updated_at"]
            self.stmt = stmt.on_conflict_do_update(index_elements=["external_id"], set_=set_)
        return self.stmt

    async def _stored(self, session: AsyncSession, keys: set[str]) -> dict[str, dict[str, Any]]:
        c = _CUSTOMERS.c
        names = ("external_id", *self.written, *_STORED_EXTRA)
        result = await session.execute(
            select(*(c[n] for n in names)).where(self.among(c.external_id, keys))
        )
        return {row[0]: dict(zip(names, row, strict=True)) for row in result}

    async def write(self, session: AsyncSession, rows: list[CustomerRow]) -> None:
        c = _CUSTOMERS.c
        stored: dict[str, dict[str, Any]] = {}
        if not self.dry_run:
            stored = await self._stored(session, {r.external_id for r in rows})
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
        merged: dict[str, _Merged] = {}
        first: set[str] = set()
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
            if self.accept("external_id", r.external_id, r.line):
                first.add(r.external_id)
            if r.phone_skipped:
                self.report.phones_skipped += 1
                self.first_skipped_phone = self.first_skipped_phone or r.line
            values = {column: getattr(r, column) for column in self.written}
            m = merged.get(r.external_id)
            if m is None:
                m = merged[r.external_id] = _Merged(r.line, {}, set())
            m.apply(r.line, values, r.cleared & self.present)
            if r.tier_override is not None or "tier_override" in r.cleared:
                m.override_line = r.line
        if self.dry_run or not merged:
            return

        upserts: list[dict[str, Any]] = []
        clears: dict[str, set[str]] = {}
        released: list[tuple[str, dict[str, Any], _Merged]] = []
        for key, m in merged.items():
            old = stored.get(key)
            if old is None:
                self.count(key, key in first, False, True)
                upserts.append(self._insert_values(key, m))
                continue
            after = m.after(old, self.written)
            changed = any(after[col] != old[col] for col in self.written)
            self.count(key, key in first, True, changed)
            if not changed:
                continue  # nothing to write: updated_at stays too
            values = dict(m.values)
            if "tier_override" in values and values["tier_override"] == old["tier_override"]:
                values["tier_override"] = None  # the same pin: keep who set it and why
            upserts.append(
                self._insert_values(key, _Merged(m.line, values, set(), m.override_line))
            )
            for column in m.cleared:
                if old[column] is not None:
                    clears.setdefault(column, set()).add(key)
            if "tier_override" in m.cleared and old["tier_override"] is not None:
                released.append((key, old, m))

        if detach:
            # A guest who chatted before their record was imported: the record takes the id.
            await session.execute(
                update(_CUSTOMERS)
                .where(self.among(c.telegram_id, detach), c.is_guest.is_(True))
                .values(telegram_id=None, updated_at=self.now)
            )
        if upserts:
            await session.execute(self._upsert(session), upserts)
        for column, keys in clears.items():
            extra: dict[str, Any] = {}
            if column == "tier_override":
                # As ``customers override --clear``: the next grading starts afresh.
                extra = {
                    "tier_override_by": None,
                    "tier_override_reason": None,
                    "tier_override_at": None,
                    "scored_at": None,
                    "below_count": 0,
                    "below_since": None,
                }
            await session.execute(
                update(_CUSTOMERS)
                .where(self.among(c.external_id, keys))
                .values({column: None, "updated_at": self.now, **extra})
            )
        if released:
            await self._log_releases(session, released)

    def _insert_values(self, key: str, m: _Merged) -> dict[str, Any]:
        v = m.values
        override = v.get("tier_override")
        return {
            "external_id": key,
            "name": v.get("name"),
            "phone": v.get("phone"),
            "email": v.get("email"),
            "telegram_id": v.get("telegram_id"),
            "language": v.get("language"),
            "account_manager": v.get("account_manager"),
            "tier_override": override,
            "tier_override_by": f"import {self.path.name}"[:100] if override else None,
            "tier_override_reason": (
                f"tier_override on line {m.override_line}" if override else None
            ),
            "tier_override_at": self.now if override else None,
            "timezone": v.get("timezone"),
            "tier": override or self.policy.lowest_tier,
            "spend_12m": 0.0,
            "is_guest": False,
            "created_at": self.now,
            "updated_at": self.now,
        }

    async def _log_releases(
        self, session: AsyncSession, released: list[tuple[str, dict[str, Any], _Merged]]
    ) -> None:
        """Tier history: who released each pin and why; then regrade those customers now."""
        log = []
        for _key, old, m in released:
            pinned = ""
            if old["tier_override_by"]:
                pinned = f" (pinned by {old['tier_override_by']}"
                if old["tier_override_reason"]:
                    pinned += f": {old['tier_override_reason']}"
                pinned += ")"
            reason = (
                f"override {old['tier_override']} released by import {self.path.name}, "
                f"line {m.override_line}: tier_override {CLEAR}{pinned}"
            )
            log.append(
                {
                    "customer_id": old["id"],
                    "from_tier": old["tier"],
                    "to_tier": old["tier"],
                    "spend_12m": old["spend_12m"],
                    "reason": reason if len(reason) <= 200 else reason[:197] + "...",
                    "changed_at": self.now,
                    "kind": "override",
                    "score": old["score"],
                    "notice": "none",  # the regrade below tells the customer, if anyone
                }
            )
        await session.execute(insert(TierChange), log)
        self.report.overrides_released += len(released)
        await rescoring.rescore(
            session,
            self.policy,
            self.now,
            customer_ids=[old["id"] for _, old, _ in released],
            released=True,
        )

    def closing_warnings(self) -> list[str]:
        n = self.report.phones_skipped
        if not n:
            return []
        return [
            f"{n} phone number{'s' if n != 1 else ''} without a country code not loaded "
            f"(first on line {self.first_skipped_phone}; those customers loaded without "
            'it): set [identification] default_region in the policy file, e.g. "DE", '
            "and import again"
        ]


class _OrderImporter(_Importer[OrderRow]):
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

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> OrderRow | RowError:
        return parse_order_row(
            row, line, policy, date_format=self.date_format, decimal_comma=self.decimal_comma
        )

    @property
    def written(self) -> tuple[str, ...]:
        optional = tuple(c for c in ("category", "status") if c in self.present)
        return ("external_id", "amount_cents", "ordered_at", *optional)

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = _dialect_insert(session, _ORDERS)
            excluded = stmt.excluded
            set_: dict[str, ColumnElement[Any]] = {}
            for column in self.written:
                if column in ("category", "status"):
                    set_[column] = _keep(column, excluded, _ORDERS)
                else:
                    set_[column] = excluded[column]
            self.stmt = stmt.on_conflict_do_update(index_elements=["order_id"], set_=set_)
        return self.stmt

    async def write(self, session: AsyncSession, rows: list[OrderRow]) -> None:
        o, c = _ORDERS.c, _CUSTOMERS.c
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
        merged: dict[str, _Merged] = {}
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
                m = merged[r.order_id] = _Merged(r.line, {}, set())
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
            await session.execute(self._upsert(session), upserts)
        for column, keys in clears.items():
            await session.execute(
                update(_ORDERS).where(self.among(o.order_id, keys)).values({column: None})
            )

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
    import); an update never touches ``tier`` or ``spend_12m``. An empty cell keeps the stored
    value; ``(clear)`` sets NULL. A ``tier_override`` the file changes records "import FILE"
    as who pinned it; a ``(clear)`` releases the pin, logs who and why in the tier history and
    regrades the customer at once. A telegram_id held by a guest moves to the imported
    customer (the guest row and its conversations stay as they are); one held by another
    imported customer, or taken by an earlier row of the same file, is a row error.
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
    date_format: str | None = None,
    decimal_comma: bool = False,
) -> ImportReport:
    """Upsert orders.csv by ``order_id``; orders of not-yet-imported customers load too.

    ``date_format``: a strptime format for ``ordered_at`` (ISO 8601 is read as well);
    ``ImportOptionError`` if it cannot read a full date. ``decimal_comma``: amounts are
    written 1.234,56.
    """
    importer = _OrderImporter(policy, dry_run, now, date_format, decimal_comma)
    return await importer.run(sessions, path, batch_size)
