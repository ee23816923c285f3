"""Rows of a CRM export: the columns of customers.csv and orders.csv, and how one row is validated.

``parse_customer_row`` and ``parse_order_row`` turn one row (column name -> cell) into a
``CustomerRow`` / ``OrderRow``, or into a ``RowError`` naming every problem of the row. What a
cell may hold is decided here and only here: keys, phones (a national number without
``default_region`` is skipped, not an error), emails, telegram ids, languages, tiers, time
zones, amounts (``decimal_comma``), dates (``date_format``, checked by ``check_date_format``)
and the ``(clear)`` token (``CLEAR``). Pure: no file and no database, so the rules for a cell
can be read and tested without either. The import's rules as a whole are described in
``routing.customers.importer``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from routing.customers.phones import normalize_phone
from routing.policy.root import Policy

__all__ = [
    "CLEAR",
    "CUSTOMER_COLUMNS",
    "CUSTOMER_REQUIRED",
    "ORDER_COLUMNS",
    "ORDER_REQUIRED",
    "CustomerRow",
    "ImportOptionError",
    "OrderRow",
    "Row",
    "RowError",
    "check_date_format",
    "order_fast_path",
    "parse_customer_row",
    "parse_order_row",
    "show_cell",
]

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


_NO_DATE = datetime.min.replace(tzinfo=UTC)

# The cell that clears a stored value (an empty cell keeps it). Case does not matter.
CLEAR = "(clear)"


class ImportOptionError(ValueError):
    """An import option (``date_format``) is unusable; the message is one line naming it."""


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


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


def show_cell(value: str) -> str:
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
                problems.append(f"bad phone {show_cell(raw_phone)}")

    email = _text(row, "email", 254, problems)
    if email is not None and not _email_ok(email):
        problems.append(f"bad email {show_cell(email)}")

    telegram_id: int | None = None
    raw_tg = row.get("telegram_id", "").strip()
    if raw_tg:
        if _INT_RE.fullmatch(raw_tg) and 0 < int(raw_tg) <= _BIGINT_MAX:
            telegram_id = int(raw_tg)
        else:
            problems.append(f"bad telegram_id {show_cell(raw_tg)} (expected a positive integer)")

    language: str | None = None
    raw_lang = row.get("language", "").strip()
    if raw_lang:
        language = raw_lang.replace("_", "-").lower()
        if len(language) > 16 or not _LANGUAGE_RE.fullmatch(language):
            problems.append(
                f"bad language {show_cell(raw_lang)} (expected e.g. en, zh-CN, zh-hans)"
            )

    account_manager = _text(row, "account_manager", 200, problems)

    tier_override: str | None = None
    raw_tier = row.get("tier_override", "").strip()
    if raw_tier:
        by_lower = {name.lower(): name for name in policy.tier_names}
        tier_override = by_lower.get(raw_tier.lower())
        if tier_override is None:
            valid = ", ".join(policy.tier_names)
            problems.append(
                f"unknown tier {show_cell(raw_tier)} "
                f"(valid tiers: {valid}; {CLEAR} releases the pin)"
            )

    timezone = _text(row, "timezone", 64, problems)
    if timezone is not None and not _zone_ok(timezone):
        problems.append(
            f"bad timezone {show_cell(timezone)} (expected an IANA name, e.g. Asia/Shanghai)"
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
                f"bad amount {show_cell(raw)} (expected e.g. 1.234,50 or 1234,50: "
                "',' for decimals, as --decimal-comma says)"
            )
            return 0
        text = raw.replace(".", "").replace(",", ".")
    elif "," in raw or "_" in raw:
        problems.append(
            f"amount {show_cell(raw)} has a ',' or '_' separator; write plain digits with '.' "
            "for decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50"
        )
        return 0
    elif not _AMOUNT_RE.fullmatch(raw):
        problems.append(f"bad amount {show_cell(raw)} (expected e.g. 1234.50)")
        return 0
    else:
        text = raw
    cents = Decimal(text) * _HUNDRED
    whole = cents.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != cents:
        # Money is never silently rounded: 10.005 is a mistake in the export, not 10.00.
        problems.append(f"amount {show_cell(raw)} has more than 2 decimal places")
        return 0
    if abs(whole) > _BIGINT_MAX:
        problems.append(f"amount {show_cell(raw)} is out of range")
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
        problems.append(f"ordered_at {show_cell(raw)} is not a date (expected {expected})")
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


# The fast path's amounts: plain digits, at most 2 decimals, at most 16 digits before the point
# (so the cents cannot leave BIGINT): a subset of what ``_parse_amount`` accepts unchanged.
_FAST_AMOUNT = re.compile(r"-?[0-9]{1,16}(?:\.[0-9]{1,2})?").fullmatch
_EMPTY: frozenset[str] = frozenset()


def order_fast_path(columns: Mapping[str, int]) -> Callable[[list[str], int], OrderRow | None]:
    """A parser for the common orders.csv row: every cell plainly valid, no ``(clear)``, ISO
    dates, amounts with '.' decimals. ``columns``: the header's column -> cell position.

    It returns the ``OrderRow`` that ``parse_order_row`` would return for the same cells, or
    None whenever it is not sure (any problem, anything unusual): then the caller parses the
    row the general way, which names the problems. So it can only be faster, never differ
    (tests/integration/test_import_fast_path.py compares both on random rows). Not used with
    ``date_format`` or ``decimal_comma``. Why: at a million rows the general parser (a dict
    per row, every rule tried on every cell, ``Decimal`` money, a frozen dataclass built by
    keyword) was the import's largest single cost (12 s of CPU; bench/RESULTS.md).
    """
    pe, po, pa, pw = (columns[c] for c in ("external_id", "order_id", "amount", "ordered_at"))
    pc, ps = columns.get("category", -1), columns.get("status", -1)
    amount_ok = _FAST_AMOUNT
    fromiso = datetime.fromisoformat

    def parse(cells: list[str], line: int) -> OrderRow | None:
        ext, oid = cells[pe].strip(), cells[po].strip()
        amount, when = cells[pa].strip(), cells[pw].strip()
        cat = cells[pc].strip() if pc >= 0 else ""
        st = cells[ps].strip() if ps >= 0 else ""
        if not (0 < len(ext) <= 64 and 0 < len(oid) <= 64 and len(cat) <= 100 and len(st) <= 32):
            return None
        # '(': perhaps the clear token (a row error in a key, a clear elsewhere).
        if "(" in ext[:1] + oid[:1] + cat[:1] + st[:1]:
            return None
        if "\x00" in ext + oid + amount + when + cat + st or "/" in when:
            return None  # NUL: a row error; '/': the year-first slashed dates
        if amount_ok(amount) is None:
            return None
        point = amount.find(".")
        if point < 0:
            cents = int(amount) * 100
        elif len(amount) - point == 3:
            cents = int(amount[:point] + amount[point + 1 :])  # sign and leading zeros kept
        else:
            cents = int(amount[:point] + amount[point + 1 :]) * 10
        try:
            at = fromiso(when)
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            elif at.tzinfo is not UTC:
                at = at.astimezone(UTC)
        except (ValueError, OverflowError):
            return None
        return OrderRow(line, ext, oid, cents, at, cat or None, st or None, _EMPTY)

    return parse


Row = TypeVar("Row", bound=CustomerRow | OrderRow)
