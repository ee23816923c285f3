"""Issue "Trust what people type": re-imports keep what they should, real CRM exports load.

An empty cell keeps the stored value and ``(clear)`` clears it (a released tier pin is logged
with who and why); semicolon/tab/pipe files, regional dates and decimal commas read; national
phone numbers without a default region load the customer without the phone; a NUL character
rejects its row only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.cli import main
from routing.customers.import_rows import CLEAR, parse_order_row
from routing.customers.importer import (
    ImportOptionError,
    ImportReport,
    import_customers,
    import_orders,
)
from routing.policy.root import Policy
from routing.scoring import report, rescoring
from routing.store.models import Customer, Order, TierChange
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
HEADER = "external_id,name,phone,email,telegram_id,language,account_manager,tier_override,timezone"


def write(tmp_path: Path, name: str, *rows: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def errors(report: ImportReport) -> list[str]:
    return [str(e) for e in report.errors]


async def customer(db: Db, external_id: str) -> Customer:
    async with db.sessions() as s:
        return (await s.scalars(select(Customer).where(Customer.external_id == external_id))).one()


async def history(db: Db, external_id: str) -> list[tuple[Any, ...]]:
    async with db.sessions() as s:
        rows = await s.execute(
            select(TierChange.from_tier, TierChange.to_tier, TierChange.kind, TierChange.reason)
            .join(Customer, Customer.id == TierChange.customer_id)
            .where(Customer.external_id == external_id)
            .order_by(TierChange.id)
        )
        return [tuple(r) for r in rows]


async def pin_vip(db: Db, policy: Policy, tmp_path: Path) -> None:
    """C00002 imported with a name and a phone, then pinned VIP by a person."""
    first = write(
        tmp_path,
        "first.csv",
        HEADER,
        "C00001,Ann,+12127345678,,,,,,",
        "C00002,Bob,+12127345679,bob@example.com,,en,mgr-1,,Europe/Berlin",
    )
    assert errors(await import_customers(db.sessions, first, policy, now=NOW)) == []
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, policy, NOW)
        await report.set_override(
            s, "C00002", "VIP", by="Mia", reason="key account", policy=policy, now=NOW
        )


async def rescore(db: Db, policy: Policy, when: datetime) -> None:
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, policy, when)


# --- 5: a re-import keeps what it should -----------------------------------------------------


async def test_empty_cells_keep_the_stored_values_and_the_vip_pin(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await pin_vip(db, policy, tmp_path)
    before = await customer(db, "C00002")
    again = write(tmp_path, "crm.csv", HEADER, "C00002,,,,,,,,", "C00001,Ann,,,,,,,")

    report = await import_customers(db.sessions, again, policy, now=LATER)

    assert errors(report) == []
    after = await customer(db, "C00002")
    assert (after.name, after.phone, after.email, after.language, after.timezone) == (
        "Bob",
        "+12127345679",
        "bob@example.com",
        "en",
        "Europe/Berlin",
    )
    assert (after.tier_override, after.tier_override_by, after.tier_override_reason) == (
        "VIP",
        "Mia",
        "key account",
    )
    assert after.updated_at == before.updated_at  # nothing was rewritten
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 2)
    # The model grades Bob C (no orders): the pin holds however often scoring runs.
    for days in (1, 30, 60):
        await rescore(db, policy, LATER + timedelta(days=days))
    assert (await customer(db, "C00002")).tier == "VIP"


async def test_the_same_pin_again_keeps_who_set_it(db: Db, policy: Policy, tmp_path: Path) -> None:
    await pin_vip(db, policy, tmp_path)
    again = write(tmp_path, "crm.csv", HEADER, "C00002,Robert,,,,,,vip,")

    report = await import_customers(db.sessions, again, policy, now=LATER)

    assert (report.updated, report.unchanged) == (1, 0)  # the name changed, the pin did not
    after = await customer(db, "C00002")
    assert (after.name, after.tier_override, after.tier_override_by) == ("Robert", "VIP", "Mia")


async def test_a_different_pin_records_the_import_as_who_set_it(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await pin_vip(db, policy, tmp_path)
    again = write(tmp_path, "crm.csv", HEADER, "C00002,,,,,,,A,")

    await import_customers(db.sessions, again, policy, now=LATER)

    after = await customer(db, "C00002")
    assert (after.tier_override, after.tier_override_by, after.tier_override_reason) == (
        "A",
        "import crm.csv",
        "tier_override on line 2",
    )
    assert after.tier_override_at == LATER


async def test_clear_releases_the_pin_and_the_history_says_who_and_why(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    await pin_vip(db, policy, tmp_path)
    again = write(
        tmp_path, "crm.csv", HEADER, "C00001,,,,,,,(clear),", "C00002,,(clear),,,,,(Clear),"
    )

    report = await import_customers(db.sessions, again, policy, now=LATER)

    assert errors(report) == []
    # C00001 had no pin: its (clear) changes nothing.
    assert (report.updated, report.unchanged, report.overrides_released) == (1, 1, 1)
    after = await customer(db, "C00002")
    assert (after.tier_override, after.tier_override_by, after.tier_override_reason) == (
        None,
        None,
        None,
    )
    assert (after.phone, after.name) == (None, "Bob")
    # Released as ``customers override --clear`` releases: the model's grade at once.
    assert after.tier == "C"
    logged = await history(db, "C00002")
    assert logged[-2:] == [
        (
            "VIP",
            "VIP",
            "override",
            "override VIP released by import crm.csv, line 3: tier_override (clear) "
            "(pinned by Mia: key account)",
        ),
        ("VIP", "C", "override", logged[-1][3]),
    ]
    assert logged[-1][3].startswith("override released; ")
    assert (await customer(db, "C00001")).phone == "+12127345678"


async def test_clear_of_a_required_column_is_a_row_error(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    path = write(tmp_path, "c.csv", "external_id,name", f"{CLEAR},x", "C1,y")
    report = await import_customers(db.sessions, path, policy, now=NOW)
    assert errors(report) == ["line 2: external_id cannot be (clear)"]


async def test_orders_keep_category_and_status_unless_cleared(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    header = "external_id,order_id,amount,category,ordered_at,status"
    first = write(
        tmp_path, "o1.csv", header, "C1,O1,10,books,2026-03-01,paid", "C1,O2,5,tv,2026-03-01,paid"
    )
    await import_orders(db.sessions, first, policy)
    second = write(
        tmp_path, "o2.csv", header, "C1,O1,10,,2026-03-01,", "C1,O2,5,(clear),2026-03-01,"
    )
    report = await import_orders(db.sessions, second, policy)

    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 1)
    async with db.sessions() as s:
        got = dict((await s.execute(select(Order.order_id, Order.category))).all())
    assert got == {"O1": "books", "O2": None}


# --- 6: real CRM exports ---------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
async def test_semicolon_tab_and_pipe_files_load(
    db: Db, policy: Policy, tmp_path: Path, delimiter: str
) -> None:
    d = delimiter
    customers = write(
        tmp_path,
        "c.csv",
        d.join(["External_ID", "Name", "email"]),
        d.join(["C1", "Müller, Anna", "anna@example.de"]),
        d.join(["C2", "Bob", ""]),
    )
    orders = write(
        tmp_path,
        "o.csv",
        d.join(["external_id", "order_id", "amount", "ordered_at"]),
        d.join(["C1", "O1", "1.234,56", "09.08.2025"]),
        d.join(["C2", "O2", "12", "2025/8/9"]),
    )

    rc = await import_customers(db.sessions, customers, policy, now=NOW)
    ro = await import_orders(
        db.sessions, orders, policy, date_format="%d.%m.%Y", decimal_comma=True
    )

    assert (errors(rc), rc.warnings, rc.inserted) == ([], [], 2)
    assert (errors(ro), ro.warnings, ro.inserted) == ([], [], 2)
    assert (await customer(db, "C1")).name == "Müller, Anna"
    async with db.sessions() as s:
        got = {
            r[0]: tuple(r[1:])
            for r in await s.execute(select(Order.order_id, Order.amount_cents, Order.ordered_at))
        }
    assert got == {
        "O1": (123456, datetime(2025, 8, 9, tzinfo=UTC)),
        "O2": (1200, datetime(2025, 8, 9, tzinfo=UTC)),
    }


async def test_a_date_that_does_not_parse_names_the_expected_format(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    header = "external_id;order_id;amount;ordered_at"
    path = write(
        tmp_path,
        "o.csv",
        header,
        *(f"C1;O{i};1;2025-08-0{i}" for i in range(1, 6)),
        "C1;O7;1;09.08.2025",
        "C1;O8;1;2025/8/9 13:45",
    )

    report = await import_orders(db.sessions, path, policy)

    assert errors(report) == [
        "line 7: ordered_at '09.08.2025' is not a date (expected YYYY-MM-DD or --date-format)"
    ]
    assert report.inserted == 6
    with_format = await import_orders(db.sessions, path, policy, date_format="%d.%m.%Y")
    assert errors(with_format) == []
    path2 = write(tmp_path, "o2.csv", header, "C1;O9;1;2025-13-01", "C1;O10;1;13.08.25")
    report2 = await import_orders(db.sessions, path2, policy, date_format="%d.%m.%Y")
    assert errors(report2) == [
        "line 2: ordered_at '2025-13-01' is not a date (expected %d.%m.%Y as --date-format "
        "says, or YYYY-MM-DD)",
        "line 3: ordered_at '13.08.25' is not a date (expected %d.%m.%Y as --date-format "
        "says, or YYYY-MM-DD)",
    ]


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("DD.MM.YYYY", "has no % directive"),
        ("%d.%m.%Q", "bad directive"),
        ("%d.%m", "does not give a full date"),
    ],
)
async def test_an_unusable_date_format_is_one_error_before_anything_is_read(
    db: Db, policy: Policy, tmp_path: Path, fmt: str, message: str
) -> None:
    path = write(tmp_path, "o.csv", "external_id,order_id,amount,ordered_at", "C1,O1,1,2025-01-01")
    with pytest.raises(ImportOptionError) as info:
        await import_orders(db.sessions, path, policy, date_format=fmt)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        ("1.234,56", 123456),
        ("1234,5", 123450),
        ("-0,29", -29),
        ("12", 1200),
        ("1.000.000", 100000000),
    ],
)
def test_decimal_comma_amounts(policy: Policy, raw: str, cents: int) -> None:
    row = {"external_id": "C1", "order_id": "O1", "amount": raw, "ordered_at": "2026-03-01"}
    parsed = parse_order_row(row, 2, policy, decimal_comma=True)
    assert getattr(parsed, "amount_cents", parsed) == cents


@pytest.mark.parametrize(
    ("raw", "decimal_comma", "reason"),
    [
        (
            "1.234.5",
            True,
            "bad amount '1.234.5' (expected e.g. 1.234,50 or 1234,50: ',' for decimals, "
            "as --decimal-comma says)",
        ),
        ("1,005", True, "amount '1,005' has more than 2 decimal places"),
        (
            "1.234,56",
            False,
            "amount '1.234,56' has a ',' or '_' separator; write plain digits with '.' for "
            "decimals (e.g. 1234.50), or use --decimal-comma for 1.234,50",
        ),
    ],
)
def test_amounts_that_do_not_parse_name_the_expected_format(
    policy: Policy, raw: str, decimal_comma: bool, reason: str
) -> None:
    row = {"external_id": "C1", "order_id": "O1", "amount": raw, "ordered_at": "2026-03-01"}
    parsed = parse_order_row(row, 7, policy, decimal_comma=decimal_comma)
    assert str(parsed) == f"line 7: {reason}"


async def test_national_phones_without_a_default_region_load_the_customer_without_them(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    assert policy.identification.default_region is None
    await import_customers(
        db.sessions, write(tmp_path, "a.csv", "external_id,phone", "C9,+4930123456"), policy
    )
    rows = [f"C{i},Name {i},030 1234{i:03d}" for i in range(1, 6)]
    path = write(
        tmp_path,
        "b.csv",
        "external_id,name,phone",
        *rows,
        "C6,Intl,+49 30 1234567",
        "C7,Short,12345",
        "C9,Kept,0301234567",
    )

    report = await import_customers(db.sessions, path, policy, now=NOW)

    assert errors(report) == ["line 8: bad phone '12345'"]
    assert report.phones_skipped == 6
    assert report.warnings == [
        "6 phone numbers without a country code not loaded (first on line 2; those customers "
        'loaded without it): set [identification] default_region in the policy file, e.g. "DE", '
        "and import again"
    ]
    assert (report.ok, report.inserted, report.updated) == (7, 6, 1)
    assert (await customer(db, "C1")).phone is None
    assert (await customer(db, "C6")).phone == "+49301234567"
    assert (await customer(db, "C9")).phone == "+4930123456"  # the stored phone stays
    # With the region set, the same file loads every phone.
    de = Policy.model_validate({"identification": {"default_region": "DE"}})
    again = await import_customers(db.sessions, path, de, now=LATER)
    assert (again.phones_skipped, again.warnings) == (0, [])
    assert (await customer(db, "C1")).phone == "+49301234001"


@pytest.mark.parametrize("batch_size", [5000, 2])
async def test_a_nul_character_rejects_its_row_and_keeps_the_rest_of_the_batch(
    db: Db, policy: Policy, tmp_path: Path, batch_size: int
) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"external_id,name,email\nC1,Ann,\nC2,B\x00b,\nC3,Cat,c\x00@x.io\nC4,Dan,\n")
    report = await import_customers(db.sessions, path, policy, now=NOW, batch_size=batch_size)

    assert errors(report) == ["line 3: NUL character in name", "line 4: NUL character in email"]
    assert (report.ok, report.inserted) == (2, 2)
    async with db.sessions() as s:
        names = set(await s.scalars(select(Customer.name)))
    assert names == {"Ann", "Dan"}

    orders = tmp_path / "o.csv"
    orders.write_bytes(
        b"external_id,order_id,amount,ordered_at,status\n"
        b"C1,O1,1,2026-03-01,paid\nC1,O2,1,2026-03-01,pa\x00id\nC1,O3,1,2026-03-01,\n"
    )
    ro = await import_orders(db.sessions, orders, policy, batch_size=batch_size)
    assert errors(ro) == ["line 3: NUL character in status"]
    assert ro.inserted == 2


# --- the command line ------------------------------------------------------------------------


def test_cli_reimport_keeps_the_vip_pin_and_clear_releases_it(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(cli_env, "customers.csv", HEADER, "C00001,Ann,,,,,,,", "C00002,Bob,+12127345679,,,,,,")
    assert main(["import", "customers", "customers.csv"]) == 0
    assert main(["customers", "override", "C00002", "VIP", "--by", "Mia", "--reason", "key"]) == 0
    write(cli_env, "again.csv", HEADER, "C00001,Ann,,,,,,,", "C00002,,,,,,,,")
    capsys.readouterr()

    assert main(["import", "customers", "again.csv"]) == 0
    out = capsys.readouterr().out
    assert "(0 inserted, 0 updated, 2 unchanged)" in out
    for _ in range(3):
        assert main(["score"]) == 0
    assert main(["customers", "show", "C00002"]) == 0
    out = capsys.readouterr().out
    assert "tier: VIP" in out and "override: VIP by Mia - key" in out

    write(cli_env, "release.csv", "external_id,tier_override", "C00002,(clear)")
    assert main(["import", "customers", "release.csv"]) == 0
    assert "1 updated" in capsys.readouterr().out
    assert main(["customers", "show", "C00002"]) == 0
    out = capsys.readouterr().out
    assert "tier: C" in out and "override:" not in out
    assert "released by import" in out


def test_cli_regional_orders_and_unusable_options(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        cli_env,
        "orders.csv",
        "external_id;order_id;amount;ordered_at",
        "C1;O1;1.234,56;09.08.2025",
        "C1;O2;7,5;10.08.2025",
    )
    args = ["import", "orders", "orders.csv", "--date-format", "%d.%m.%Y", "--decimal-comma"]
    assert main([*args, "--dry-run"]) == 0
    assert "would load 2" in capsys.readouterr().out
    assert main(["import", "orders", "orders.csv"]) == 1
    err = capsys.readouterr().err
    assert "line 2: amount '1.234,56' has a ',' or '_' separator" in err
    assert "ordered_at '09.08.2025' is not a date (expected YYYY-MM-DD or --date-format)" in err
    assert main(["import", "orders", "orders.csv", "--date-format", "%d.%m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contactbot: --date-format '%d.%m' does not give a full date")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_import_help_documents_the_clear_token_and_the_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["import", "customers", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(clear)" in text and "empty cell keeps" in text
    assert "--date-format" in text and "--decimal-comma" in text
