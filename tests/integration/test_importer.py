"""CSV import of customers and orders: validation, line numbers, upsert semantics, dry runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench import import_orders as bench
from routing.customers.import_rows import (
    CustomerRow,
    OrderRow,
    RowError,
    parse_customer_row,
    parse_order_row,
)
from routing.customers.importer import (
    ImportFileError,
    ImportReport,
    import_customers,
    import_orders,
)
from routing.policy.root import Policy
from routing.store.models import Customer, Order
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
CUSTOMERS_HEADER = "external_id,name,phone,email,telegram_id,language,account_manager,tier_override"
ORDERS_HEADER = "external_id,order_id,amount,category,ordered_at,status"


def csv_file(tmp_path: Path, text: str, name: str = "data.csv", *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def lines(*rows: str, newline: str = "\n") -> str:
    return newline.join(rows) + newline


def errors(report: ImportReport) -> list[str]:
    return [str(e) for e in report.errors]


async def customers(db: Db) -> dict[str, tuple[Any, ...]]:
    """Imported customers by external_id: every column the importer writes."""
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(
                    Customer.external_id,
                    Customer.name,
                    Customer.phone,
                    Customer.email,
                    Customer.telegram_id,
                    Customer.language,
                    Customer.account_manager,
                    Customer.tier_override,
                    Customer.tier,
                    Customer.is_guest,
                ).where(Customer.external_id.is_not(None))
            )
        ).all()
    return {str(r[0]): tuple(r[1:]) for r in rows}


async def snapshot(db: Db) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Everything in both tables, ids and timestamps included."""
    async with db.sessions() as s:
        cust = (
            await s.execute(
                select(
                    Customer.id,
                    Customer.external_id,
                    Customer.name,
                    Customer.phone,
                    Customer.email,
                    Customer.telegram_id,
                    Customer.language,
                    Customer.account_manager,
                    Customer.tier_override,
                    Customer.tier,
                    Customer.spend_12m,
                    Customer.is_guest,
                    Customer.created_at,
                    Customer.updated_at,
                ).order_by(Customer.id)
            )
        ).all()
        orders_ = (
            await s.execute(
                select(
                    Order.id,
                    Order.order_id,
                    Order.external_id,
                    Order.amount_cents,
                    Order.category,
                    Order.ordered_at,
                    Order.status,
                ).order_by(Order.id)
            )
        ).all()
    return [tuple(r) for r in cust], [tuple(r) for r in orders_]


async def orders(db: Db) -> dict[str, tuple[Any, ...]]:
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(
                    Order.order_id,
                    Order.external_id,
                    Order.amount_cents,
                    Order.category,
                    Order.ordered_at,
                    Order.status,
                )
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


async def add_customer(db: Db, **fields: Any) -> None:
    values: dict[str, Any] = {"tier": "C", "created_at": NOW, "updated_at": NOW, **fields}
    async with db.sessions() as s, s.begin():
        s.add(Customer(**values))


MIXED_CUSTOMERS = lines(
    CUSTOMERS_HEADER,
    "C1,Ann Lee,+1 212 734 5678,ann@example.com,1001,en,mgr-1,",
    ",Nobody,,,,,,",
    "C3,Bad Phone,12345,,,,,",
    "C4,Bad Tier,,,,,,Platinum",
    "C5,Vip Person,,,,zh_CN,,vip",
    "C6,Two Problems,+1 212 734 5678,not-an-email,-5,,,",
    " C7 ,  Padded  ,  ,  ,,ZH-Hans,,  ",
)
MIXED_CUSTOMER_ERRORS = [
    "line 3: missing external_id",
    "line 4: bad phone '12345'",
    "line 5: unknown tier 'Platinum' (valid tiers: VIP, A, B, C; (clear) releases the pin)",
    "line 7: bad email 'not-an-email'; bad telegram_id '-5' (expected a positive integer)",
]


async def test_customers_good_rows_load_bad_rows_are_reported(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    report = await import_customers(
        db.sessions, csv_file(tmp_path, MIXED_CUSTOMERS), policy, now=NOW
    )

    assert errors(report) == MIXED_CUSTOMER_ERRORS
    assert (report.kind, report.rows, report.ok, report.inserted, report.updated) == (
        "customers",
        7,
        3,
        3,
        0,
    )
    assert report.warnings == []
    assert report.dry_run is False
    assert await customers(db) == {
        "C1": (
            "Ann Lee",
            "+12127345678",
            "ann@example.com",
            1001,
            "en",
            "mgr-1",
            None,
            "C",
            False,
        ),
        "C5": ("Vip Person", None, None, None, "zh-cn", None, "VIP", "VIP", False),
        "C7": ("Padded", None, None, None, "zh-hans", None, None, "C", False),
    }
    (cust, _) = await snapshot(db)
    assert {(r[10], r[12], r[13]) for r in cust} == {(0.0, NOW, NOW)}


async def test_orders_good_rows_load_bad_rows_are_reported(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    text = lines(
        ORDERS_HEADER,
        "C1,O1,19.99,books,2026-03-01,paid",
        "C1,,5.00,books,2026-03-01,paid",
        "C1,O3,abc,books,2026-03-01,paid",
        "C1,O4,10.00,books,01/03/2026,paid",
        'C1,O5,"1,234.50",books,2026-03-01,paid',
        "C1,O6,-0.29,,2026-03-01T10:20:00+02:00,refunded",
        ",O7,,books,,paid",
        "C1,O8,10.005,books,2026-03-01,paid",
    )
    report = await import_orders(db.sessions, csv_file(tmp_path, text), policy)

    assert errors(report) == [
        "line 3: missing order_id",
        "line 4: bad amount 'abc' (expected e.g. 1234.50)",
        "line 5: ordered_at '01/03/2026' is not a date (expected YYYY-MM-DD or --date-format)",
        "line 6: amount '1,234.50' has a ',' or '_' separator; write plain digits with '.' "
        "for decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50",
        "line 8: missing external_id; missing amount; missing ordered_at",
        "line 9: amount '10.005' has more than 2 decimal places",
    ]
    assert (report.kind, report.rows, report.ok, report.inserted, report.updated) == (
        "orders",
        8,
        2,
        2,
        0,
    )
    assert await orders(db) == {
        "O1": ("C1", 1999, "books", datetime(2026, 3, 1, tzinfo=UTC), "paid"),
        "O6": ("C1", -29, None, datetime(2026, 3, 1, 8, 20, tzinfo=UTC), "refunded"),
    }
    assert report.warnings == ["2 orders belong to no imported customer yet"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("batch_size", [5000, 2])
async def test_line_numbers_are_physical_lines_after_multiline_fields_and_blank_lines(
    db: Db, policy: Policy, tmp_path: Path, newline: str, batch_size: int
) -> None:
    text = lines(
        CUSTOMERS_HEADER,
        f'C1,"Ann{newline}Lee{newline}Junior",,,,,,',  # lines 2-4
        "C2,Bob,12345,,,,,",  # line 5
        "",  # line 6: blank, skipped
        ",,,,,,,",  # line 7: only separators, skipped
        f'C3,"Multi{newline}line",not-a-phone,,,,,',  # lines 8-9
        "C4,Dan,,,,,,Gold",  # line 10
        newline=newline,
    )
    report = await import_customers(
        db.sessions, csv_file(tmp_path, text), policy, now=NOW, batch_size=batch_size
    )

    assert errors(report) == [
        "line 5: bad phone '12345'",
        "line 8: bad phone 'not-a-phone'",
        "line 10: unknown tier 'Gold' (valid tiers: VIP, A, B, C; (clear) releases the pin)",
    ]
    assert (report.rows, report.ok) == (4, 1)
    assert (await customers(db))["C1"][0] == f"Ann{newline}Lee{newline}Junior"


async def test_bom_extra_columns_and_header_case(db: Db, policy: Policy, tmp_path: Path) -> None:
    text = lines(
        "External_ID,Name,notes,phone,segment,",
        "C1,Ann,likes tea,+1 212 734 5678,retail,",
        "C2,Bob,,,,",
    )
    report = await import_customers(
        db.sessions, csv_file(tmp_path, text, bom=True), policy, now=NOW
    )

    assert report.errors == []
    assert report.warnings == ["ignored unknown columns: notes, segment, (unnamed column 6)"]
    assert (report.rows, report.ok, report.inserted) == (2, 2, 2)
    assert await customers(db) == {
        "C1": ("Ann", "+12127345678", None, None, None, None, None, "C", False),
        "C2": ("Bob", None, None, None, None, None, None, "C", False),
    }


async def test_import_twice_gives_the_same_database(db: Db, policy: Policy, tmp_path: Path) -> None:
    cust_csv = csv_file(tmp_path, MIXED_CUSTOMERS, "customers.csv")
    orders_csv = csv_file(
        tmp_path,
        lines(
            ORDERS_HEADER,
            "C1,O1,19.99,books,2026-03-01,paid",
            "C5,O2,250,garden,2026-03-02T09:00:00Z,shipped",
            "C1,O3,-19.99,books,2026-03-03 10:00,refunded",
        ),
        "orders.csv",
    )
    first_c = await import_customers(db.sessions, cust_csv, policy, now=NOW)
    first_o = await import_orders(db.sessions, orders_csv, policy, now=NOW)
    before = await snapshot(db)

    # Later: an unchanged row is not rewritten, so even updated_at stays.
    second_c = await import_customers(db.sessions, cust_csv, policy, now=LATER)
    second_o = await import_orders(db.sessions, orders_csv, policy, now=LATER)

    assert await snapshot(db) == before
    assert len(before[0]) == 3 and len(before[1]) == 3
    counts = ("inserted", "updated", "unchanged")
    assert [getattr(first_c, k) for k in counts] == [3, 0, 0]
    assert [getattr(second_c, k) for k in counts] == [0, 0, 3]
    assert [getattr(first_o, k) for k in counts] == [3, 0, 0]
    assert [getattr(second_o, k) for k in counts] == [0, 0, 3]
    assert "0 updated, 3 unchanged" in second_c.summary()
    assert errors(second_c) == MIXED_CUSTOMER_ERRORS
    assert second_o.warnings == []


async def test_numeric_looking_keys_stay_distinct_text(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, lines("external_id,name", "007,a", "7,b", "7.0,c", "07,d"))
    first = await import_customers(db.sessions, path, policy, now=NOW)
    second = await import_customers(db.sessions, path, policy, now=NOW)

    assert (first.inserted, first.updated, second.inserted, second.unchanged) == (4, 0, 0, 4)
    assert {k: v[0] for k, v in (await customers(db)).items()} == {
        "007": "a",
        "7": "b",
        "7.0": "c",
        "07": "d",
    }


async def test_update_keeps_empty_cells_clears_on_token_and_keeps_tier_and_spend(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await import_customers(
        db.sessions,
        csv_file(
            tmp_path,
            lines(
                CUSTOMERS_HEADER,
                "C1,Ann,+1 212 734 5678,ann@example.com,1001,en,mgr-1,A",
                "C2,Bob,+1 212 734 5679,bob@example.com,1002,de,mgr-2,",
            ),
            "first.csv",
        ),
        policy,
        now=NOW,
    )
    # The rescoring's columns, which an import must not touch.
    async with db.sessions() as s, s.begin():
        for c in (await s.scalars(select(Customer))).all():
            c.tier, c.spend_12m = "B", 1234.5

    # No phone column: phones stay. Empty cells keep what is stored; (clear), in any case,
    # sets NULL (here also the telegram link); a new value replaces the old.
    second = csv_file(
        tmp_path,
        lines(
            "external_id,name,email,telegram_id,tier_override,language,account_manager",
            "C1,,(clear),,,fr, (CLEAR) ",
            "C2,Robert,rob@example.com,(clear),vip,,",
        ),
        "second.csv",
    )
    report = await import_customers(db.sessions, second, policy, now=LATER)

    assert (report.errors, report.inserted, report.updated, report.unchanged) == ([], 0, 2, 0)
    assert await customers(db) == {
        "C1": ("Ann", "+12127345678", None, 1001, "fr", None, "A", "B", False),
        "C2": ("Robert", "+12127345679", "rob@example.com", None, "de", "mgr-2", "VIP", "B", False),
    }
    (cust, _) = await snapshot(db)
    assert [(r[10], r[12], r[13]) for r in cust] == [(1234.5, NOW, LATER)] * 2


async def test_telegram_id_of_a_guest_moves_to_the_imported_customer(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await add_customer(db, telegram_id=777, name="guest", is_guest=True)
    report = await import_customers(
        db.sessions,
        csv_file(tmp_path, lines("external_id,name,telegram_id", "C1,Ann,777")),
        policy,
        now=LATER,
    )

    assert (report.errors, report.inserted) == ([], 1)
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(
                    Customer.external_id,
                    Customer.telegram_id,
                    Customer.is_guest,
                    Customer.updated_at,
                ).order_by(Customer.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [(None, None, True, LATER), ("C1", 777, False, LATER)]


async def test_telegram_id_of_another_imported_customer_is_a_row_error(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await add_customer(db, external_id="C1", telegram_id=555)
    text = lines(
        "external_id,name,telegram_id",
        "C2,Bob,555",
        "C3,Cat,888",
        "C4,Dan,888",
        "C1,Ann,555",
        "C5,Eve,",
    )
    report = await import_customers(db.sessions, csv_file(tmp_path, text), policy, now=NOW)

    assert errors(report) == [
        "line 2: telegram_id 555 already belongs to customer C1",
        "line 4: telegram_id 888 already belongs to customer C3",
    ]
    assert (report.rows, report.ok, report.inserted, report.updated) == (5, 3, 2, 1)
    got = {k: (v[0], v[3]) for k, v in (await customers(db)).items()}
    assert got == {"C1": ("Ann", 555), "C3": ("Cat", 888), "C5": ("Eve", None)}


@pytest.mark.parametrize("batch_size", [5000, 2])
async def test_repeated_keys_the_later_row_wins(
    db: Db, policy: Policy, tmp_path: Path, batch_size: int
) -> None:
    cust = lines(
        "external_id,name",
        "C1,First",
        "C2,Other",
        "C1,Second",
        "C1,",
    )
    orders_text = lines(
        ORDERS_HEADER,
        "C1,O1,1.00,,2026-03-01,",
        "C1,O2,2.00,,2026-03-01,",
        "C2,O1,3.00,,2026-03-02,paid",
    )
    rc = await import_customers(
        db.sessions, csv_file(tmp_path, cust, "c.csv"), policy, now=NOW, batch_size=batch_size
    )
    ro = await import_orders(
        db.sessions, csv_file(tmp_path, orders_text, "o.csv"), policy, batch_size=batch_size
    )

    assert rc.warnings == [
        "line 4: external_id C1 also on line 2; the later row wins",
        "line 5: external_id C1 also on line 4; the later row wins",
    ]
    assert (rc.rows, rc.ok, rc.inserted, rc.updated) == (4, 4, 2, 0)
    # Rows of a key apply in file order: the empty cell of line 5 keeps line 4's name.
    assert {k: v[0] for k, v in (await customers(db)).items()} == {"C1": "Second", "C2": "Other"}
    assert ro.warnings == ["line 4: order_id O1 also on line 2; the later row wins"]
    assert (ro.rows, ro.ok, ro.inserted, ro.updated) == (3, 3, 2, 0)
    assert await orders(db) == {
        "O1": ("C2", 300, None, datetime(2026, 3, 2, tzinfo=UTC), "paid"),
        "O2": ("C1", 200, None, datetime(2026, 3, 1, tzinfo=UTC), None),
    }


async def test_dry_run_reports_the_same_and_writes_nothing(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await add_customer(db, telegram_id=1001, is_guest=True)
    await add_customer(db, external_id="C9", telegram_id=2002)
    text = MIXED_CUSTOMERS + "C8,Taken,,,2002,,,\n"
    path = csv_file(tmp_path, text)
    before = await snapshot(db)

    dry = await import_customers(db.sessions, path, policy, dry_run=True, now=LATER)

    assert await snapshot(db) == before
    assert errors(dry) == [
        *MIXED_CUSTOMER_ERRORS,
        "line 9: telegram_id 2002 already belongs to customer C9",
    ]
    assert (dry.dry_run, dry.rows, dry.ok, dry.inserted, dry.updated) == (True, 8, 3, 0, 0)

    real = await import_customers(db.sessions, path, policy, now=LATER)
    assert (errors(real), real.warnings, real.rows, real.ok) == (
        errors(dry),
        dry.warnings,
        dry.rows,
        dry.ok,
    )
    assert (real.dry_run, real.inserted, real.updated) == (False, 3, 0)
    assert (await customers(db))["C1"][3] == 1001


async def test_dry_run_of_orders_writes_nothing(db: Db, policy: Policy, tmp_path: Path) -> None:
    text = lines(ORDERS_HEADER, "C1,O1,1.00,,2026-03-01,", "C1,O1,x,,2026-03-01,")
    report = await import_orders(db.sessions, csv_file(tmp_path, text), policy, dry_run=True)

    assert errors(report) == ["line 3: bad amount 'x' (expected e.g. 1234.50)"]
    assert report.warnings == ["1 order belong to no imported customer yet"]
    assert (report.rows, report.ok, report.inserted, report.updated) == (2, 1, 0, 0)
    assert await orders(db) == {}


async def test_a_file_of_only_bad_rows_writes_nothing(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    text = lines(ORDERS_HEADER, "C1,O1,abc,,2026-03-01,", "C1,O2,1,,never,", "C1,O3,1,,,")
    report = await import_orders(db.sessions, csv_file(tmp_path, text), policy)

    assert errors(report) == [
        "line 2: bad amount 'abc' (expected e.g. 1234.50)",
        "line 3: ordered_at 'never' is not a date (expected YYYY-MM-DD or --date-format)",
        "line 4: missing ordered_at",
    ]
    assert (report.rows, report.ok, report.inserted, report.warnings) == (3, 0, 0, [])
    assert await snapshot(db) == ([], [])


AMOUNTS = [
    ("19.99", 1999),
    ("0.29", 29),
    ("-0.01", -1),
    ("-5.10", -510),
    ("12.5", 1250),
    ("100", 10000),
    ("12.340", 1234),
    ("0", 0),
    ("92233720368547758.07", 2**63 - 1),
]


async def test_amounts_are_stored_as_exact_cents(db: Db, policy: Policy, tmp_path: Path) -> None:
    rows = [f"C1,O{i},{amount},,2026-03-01," for i, (amount, _) in enumerate(AMOUNTS)]
    report = await import_orders(
        db.sessions, csv_file(tmp_path, lines(ORDERS_HEADER, *rows)), policy
    )

    assert report.errors == []
    got = {k: v[1] for k, v in (await orders(db)).items()}
    assert got == {f"O{i}": cents for i, (_, cents) in enumerate(AMOUNTS)}


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1.005", "amount '1.005' has more than 2 decimal places"),
        ("0.125", "amount '0.125' has more than 2 decimal places"),
        (
            "12,50",
            "amount '12,50' has a ',' or '_' separator; write plain digits with '.' for "
            "decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50",
        ),
        (
            "1_000",
            "amount '1_000' has a ',' or '_' separator; write plain digits with '.' for "
            "decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50",
        ),
        ("1e3", "bad amount '1e3' (expected e.g. 1234.50)"),
        ("+5", "bad amount '+5' (expected e.g. 1234.50)"),
        ("$5", "bad amount '$5' (expected e.g. 1234.50)"),
        ("NaN", "bad amount 'NaN' (expected e.g. 1234.50)"),
        ("5.", "bad amount '5.' (expected e.g. 1234.50)"),
        ("92233720368547758.08", "amount '92233720368547758.08' is out of range"),
        ("", "missing amount"),
    ],
)
def test_bad_amounts(amount: str, reason: str, policy: Policy) -> None:
    row = {"external_id": "C1", "order_id": "O1", "amount": amount, "ordered_at": "2026-03-01"}
    assert parse_order_row(row, 7, policy) == RowError(7, reason)


DATES = [
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ("2026-03-01T10:20:00", datetime(2026, 3, 1, 10, 20, tzinfo=UTC)),
    ("2026-03-01 10:20", datetime(2026, 3, 1, 10, 20, tzinfo=UTC)),
    ("2026-03-01T10:20:00Z", datetime(2026, 3, 1, 10, 20, tzinfo=UTC)),
    ("2026-03-01T10:20:00+02:00", datetime(2026, 3, 1, 8, 20, tzinfo=UTC)),
    ("2026-02-28T21:30:00-05:00", datetime(2026, 3, 1, 2, 30, tzinfo=UTC)),
    ("2026-03-01T10:20:30.250000", datetime(2026, 3, 1, 10, 20, 30, 250000, tzinfo=UTC)),
]


EXPECTED_DATE = "(expected YYYY-MM-DD or --date-format)"


async def test_dates_with_and_without_offset_are_stored_in_utc(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    rows = [f"C1,O{i},1,,{value}," for i, (value, _) in enumerate(DATES)]
    rows.append("C1,BAD1,1,,2026-02-30,")
    rows.append("C1,BAD2,1,,03/01/2026,")
    rows.append("C1,BAD3,1,,yesterday,")
    report = await import_orders(
        db.sessions, csv_file(tmp_path, lines(ORDERS_HEADER, *rows)), policy
    )

    n = len(DATES)
    assert errors(report) == [
        f"line {n + 2}: ordered_at '2026-02-30' is not a date {EXPECTED_DATE}",
        f"line {n + 3}: ordered_at '03/01/2026' is not a date {EXPECTED_DATE}",
        f"line {n + 4}: ordered_at 'yesterday' is not a date {EXPECTED_DATE}",
    ]
    got = {k: v[3] for k, v in (await orders(db)).items()}
    assert got == {f"O{i}": when for i, (_, when) in enumerate(DATES)}
    assert {when.tzinfo for when in got.values()} == {UTC}


async def test_orders_of_customers_not_imported_yet_load_with_a_warning(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await import_customers(
        db.sessions, csv_file(tmp_path, lines("external_id", "C1"), "c.csv"), policy, now=NOW
    )
    await add_customer(db, telegram_id=5, is_guest=True)  # guests never own orders
    text = lines(
        ORDERS_HEADER,
        "C1,O1,1,,2026-03-01,",
        "C9,O2,2,,2026-03-01,",
        "C9,O3,3,,2026-03-01,",
        "C1,O4,4,,2026-03-01,",
        "X,O5,5,,2026-03-01,",
    )
    report = await import_orders(db.sessions, csv_file(tmp_path, text, "o.csv"), policy)

    assert report.warnings == ["3 orders belong to no imported customer yet"]
    assert sorted(await orders(db)) == ["O1", "O2", "O3", "O4", "O5"]


async def test_too_many_fields_is_a_row_error_and_short_rows_are_padded(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    text = lines("external_id,name,email", "C1,Ann,a@b.co,extra", "C2,Bob", "C3,Cat,c@d.co,,  ")
    report = await import_customers(db.sessions, csv_file(tmp_path, text), policy, now=NOW)

    assert errors(report) == ["line 2: 4 fields but the header has 3"]
    assert {k: (v[0], v[2]) for k, v in (await customers(db)).items()} == {
        "C2": ("Bob", None),
        "C3": ("Cat", "c@d.co"),
    }


async def test_national_phone_numbers_use_the_policy_region(db: Db, tmp_path: Path) -> None:
    policy = Policy.model_validate({"identification": {"default_region": "US"}})
    text = lines("external_id,phone", "C1,(212) 734-5678", "C2,+44 20 7946 0958", "C3,734-5678")
    report = await import_customers(db.sessions, csv_file(tmp_path, text), policy, now=NOW)

    assert errors(report) == ["line 4: bad phone '734-5678'"]
    assert {k: v[1] for k, v in (await customers(db)).items()} == {
        "C1": "+12127345678",
        "C2": "+442079460958",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            lines("external_id,amount,ordered_at", "C1,1,2026-03-01"),
            "{path}: missing required column order_id; the header has: external_id, amount, "
            "ordered_at",
        ),
        (
            lines("customer;order;sum;date", "C1;O1;1;2026-03-01"),
            "{path}: missing required columns external_id, order_id, amount, ordered_at; the "
            "header has: customer, order, sum, date",
        ),
        ("", "{path}: the file is empty (no header row)"),
        (
            lines(ORDERS_HEADER.replace("status", "amount"), "C1,O1,1,,2026-03-01,"),
            "{path}: column 'amount' appears twice in the header",
        ),
    ],
)
async def test_bad_headers_raise_import_file_error(
    db: Db, policy: Policy, tmp_path: Path, text: str, message: str
) -> None:
    path = csv_file(tmp_path, text)
    with pytest.raises(ImportFileError) as info:
        await import_orders(db.sessions, path, policy)
    assert str(info.value) == message.format(path=path)
    assert await snapshot(db) == ([], [])


async def test_a_file_that_is_not_utf8_writes_nothing(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    good = [f"C{i},O{i},1,,2026-03-01," for i in range(10)]
    path = tmp_path / "latin1.csv"
    path.write_bytes(lines(ORDERS_HEADER, *good, "C1,O99,1,Caf\xe9,2026-03-01,").encode("latin-1"))

    with pytest.raises(ImportFileError) as info:
        await import_orders(db.sessions, path, policy, batch_size=2)
    assert str(info.value) == f"{path}: not UTF-8 text (line 12); save it as 'CSV UTF-8'"
    assert await snapshot(db) == ([], [])


async def test_a_missing_file_raises_import_file_error(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(ImportFileError) as info:
        await import_customers(db.sessions, path, policy)
    assert str(info.value) == f"{path}: cannot read file (No such file or directory)"


# --- the pure validators ---------------------------------------------------------------------


def test_parse_customer_row_normalises(policy: Policy) -> None:
    row = {
        "external_id": "C1",
        "name": "Ann",
        "phone": "+1 (212) 734-5678",
        "email": "ann@example.co.uk",
        "telegram_id": "42",
        "language": "zh_Hans",
        "account_manager": "mgr",
        "tier_override": "vip",
    }
    assert parse_customer_row(row, 3, policy) == CustomerRow(
        line=3,
        external_id="C1",
        name="Ann",
        phone="+12127345678",
        email="ann@example.co.uk",
        telegram_id=42,
        language="zh-hans",
        account_manager="mgr",
        tier_override="VIP",
    )
    assert parse_customer_row({"external_id": "C2"}, 4, policy) == CustomerRow(4, "C2")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("external_id", "x" * 65, "external_id longer than 64 characters"),
        ("email", "a@@b.com", "bad email 'a@@b.com'"),
        ("email", "a@localhost", "bad email 'a@localhost'"),
        ("email", "a b@c.com", "bad email 'a b@c.com'"),
        ("telegram_id", "0", "bad telegram_id '0' (expected a positive integer)"),
        ("telegram_id", "1.0", "bad telegram_id '1.0' (expected a positive integer)"),
        ("telegram_id", "9" * 20, f"bad telegram_id '{'9' * 20}' (expected a positive integer)"),
        ("language", "english!", "bad language 'english!' (expected e.g. en, zh-CN, zh-hans)"),
        ("language", "e", "bad language 'e' (expected e.g. en, zh-CN, zh-hans)"),
        ("name", "n" * 201, "name longer than 200 characters"),
        ("phone", "x" * 50, f"bad phone '{'x' * 37}...'"),
        (
            "timezone",
            "Mars/Olympus",
            "bad timezone 'Mars/Olympus' (expected an IANA name, e.g. Asia/Shanghai)",
        ),
        ("timezone", "../etc", "bad timezone '../etc' (expected an IANA name, e.g. Asia/Shanghai)"),
    ],
)
def test_parse_customer_row_rejects(policy: Policy, field: str, value: str, reason: str) -> None:
    row = {"external_id": "C1", field: value}
    assert parse_customer_row(row, 9, policy) == RowError(9, reason)
    assert str(RowError(9, reason)) == f"line 9: {reason}"


async def test_timezone_column_sets_the_zone_survey_quiet_hours_use(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    from surveys.outbox_schedule import zone_of

    path = csv_file(
        tmp_path,
        lines("external_id,timezone", "C1,Asia/Shanghai", "C2,", "C3,Nowhere/Else"),
    )
    report = await import_customers(db.sessions, path, policy, now=NOW)
    assert errors(report) == [
        "line 4: bad timezone 'Nowhere/Else' (expected an IANA name, e.g. Asia/Shanghai)"
    ]
    assert not report.warnings  # a known column, not an ignored extra one
    async with db.sessions() as s:
        rows = {c.external_id: c for c in (await s.scalars(select(Customer))).all()}
    assert rows["C1"].timezone == "Asia/Shanghai" and rows["C2"].timezone is None
    assert str(zone_of(rows["C1"], policy)) == "Asia/Shanghai"
    assert str(zone_of(rows["C2"], policy)) == policy.surveys.timezone
    # A file without the column leaves the zone alone.
    again = csv_file(tmp_path, lines("external_id,name", "C1,Ann"), "again.csv")
    await import_customers(db.sessions, again, policy, now=LATER)
    async with db.sessions() as s:
        ann = (await s.scalars(select(Customer).where(Customer.external_id == "C1"))).one()
    assert (ann.name, ann.timezone) == ("Ann", "Asia/Shanghai")


def test_parse_order_row(policy: Policy) -> None:
    row = {
        "external_id": "C1",
        "order_id": "O1",
        "amount": "-12.30",
        "ordered_at": "2026-03-01T10:20:00+01:00",
        "category": "books",
        "status": "s" * 33,
    }
    assert parse_order_row(row, 2, policy) == RowError(2, "status longer than 32 characters")
    row["status"] = "refunded"
    assert parse_order_row(row, 2, policy) == OrderRow(
        line=2,
        external_id="C1",
        order_id="O1",
        amount_cents=-1230,
        ordered_at=datetime(2026, 3, 1, 9, 20, tzinfo=UTC),
        category="books",
        status="refunded",
    )


def test_benchmark_runs_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--rows", "30", "--customers", "5"]) == 0
    out = capsys.readouterr().out
    assert "database: 5 customers, 30 orders" in out
    for label in ("import_customers", "import_orders", "reimport_orders"):
        assert f"{label}_rows_per_s: " in out
