"""The orders import's fast paths give what the general ones give.

``order_fast_path`` (the parser for the common valid row) must return exactly the row
``parse_order_row`` returns, or nothing; an import with it must store and report exactly what
an import without it does; the driver-level writer must store SQLAlchemy's datetime text and
read stored text as SQLAlchemy does; the collector's threshold is restored after an import.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from routing.customers.import_rows import order_fast_path, parse_order_row
from routing.customers.importer import ImportReport, import_customers, import_orders
from routing.customers.order_importer import OrderImporter
from routing.policy.root import Policy
from routing.store import bulk
from routing.store.models import Order
from tests.conftest import Db

COLUMNS = ("external_id", "order_id", "amount", "category", "ordered_at", "status")

# Cells of every kind the parsers tell apart: plainly valid ones (most of them, so that the
# fast path has work), and each way a cell can be unusual or wrong.
KEYS = ["C1", "C2", " C3 ", "O-7", "", "  ", "(clear)", "(CLEAR) ", "(x)", "k" * 64, "k" * 65]
AMOUNTS = [
    "12.34", "-12.34", "0", "-0", "-0.00", "7.5", "0.05", "007.10", "1234567890123456.99",
    "12345678901234567", "99999999999999999999", "1.234", "10.000", "1,5", "1_000", "", " 3 ",
    "+5", "1e3", "١٢", ".5", "5.", "--1", "abc", "(clear)",
]  # fmt: skip
DATES = [
    "2026-02-01T23:22:58", "2026-02-01T23:22:58Z", "2026-02-01 23:22:58", "2026-02-01",
    "2026-02-01T23:22:58+02:00", "2026-02-01T23:22:58.123456", "2026-02-01T23:22",
    "2025/8/9", "2025/08/09 13:45", "2026-02-30", "0005-01-01T00:00:00",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "01.02.2026", "", "nonsense",
    "20260201T232258",
]  # fmt: skip
TEXTS = ["books", "", " toys ", "(clear)", "(Clear)", "(books)", "x" * 100, "x" * 101, "é😀"]
STATUSES = ["paid", "", "(clear)", "s" * 32, "s" * 33, "shipped"]


def random_cells(rng: random.Random) -> list[str]:
    if rng.random() < 0.5:  # the common row
        return [
            f"C{rng.randrange(5)}",
            f"O{rng.randrange(40)}",
            f"{rng.randrange(-(10**6), 10**6) / 100:.2f}",
            rng.choice(["books", "toys", ""]),
            rng.choice(DATES[:2]),
            rng.choice(["paid", "shipped", ""]),
        ]
    cells = [
        rng.choice(KEYS),
        rng.choice(KEYS),
        rng.choice(AMOUNTS),
        rng.choice(TEXTS),
        rng.choice(DATES),
        rng.choice(STATUSES),
    ]
    if rng.random() < 0.05:
        cells[rng.randrange(6)] += "\x00"
    return cells


@pytest.mark.parametrize("seed", range(5))
def test_fast_parser_returns_the_general_parsers_row_or_nothing(seed: int) -> None:
    rng = random.Random(seed)
    policy = Policy()
    order = list(COLUMNS)
    rng.shuffle(order)
    dropped = {c for c in ("category", "status") if rng.random() < 0.3}
    header = [c for c in order if c not in dropped]
    fast = order_fast_path({name: position for position, name in enumerate(header)})
    taken = 0
    for line in range(2, 4002):
        by_name = dict(zip(COLUMNS, random_cells(rng), strict=True))
        cells = [by_name[c] for c in header]
        # As ``Batches`` hands a row to the general parser: known columns, cells stripped.
        general = parse_order_row({c: by_name[c].strip() for c in header}, line, policy)
        quick = fast(cells, line)
        if quick is not None:
            taken += 1
            assert quick == general, cells
    # The common rows go the fast way (else this test would prove nothing).
    assert taken > 1500


def orders_csv(rng: random.Random, n: int) -> str:
    out = [",".join(COLUMNS)]
    for _ in range(n):
        roll = rng.random()
        if roll < 0.03:
            out.append("")  # blank line
        elif roll < 0.06:
            out.append(",".join(random_cells(rng)) + ",extra")  # too many fields
        elif roll < 0.08:
            out.append("C1,O1")  # too few: padded, then missing amount and date
        else:
            out.append(",".join(f'"{c}"' if "," in c else c for c in random_cells(rng)))
    return "\n".join(out) + "\n"


async def stored_orders(db: Db) -> list[tuple[Any, ...]]:
    async with db.sessions() as s:
        rows = await s.execute(
            select(
                Order.order_id,
                Order.external_id,
                Order.amount_cents,
                Order.category,
                Order.ordered_at,
                Order.status,
            ).order_by(Order.order_id)
        )
        return [tuple(r) for r in rows]


def outcome(report: ImportReport) -> tuple[Any, ...]:
    return (
        report.rows,
        report.ok,
        report.inserted,
        report.updated,
        report.unchanged,
        [str(e) for e in report.errors],
        report.warnings,
    )


@pytest.mark.parametrize("seed", range(3))
async def test_import_with_and_without_the_fast_path_stores_and_reports_the_same(
    db: Db, policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    customers = tmp_path / "c.csv"
    customers.write_text("external_id,name\nC1,A\nC2,B\n C3 ,C\n", encoding="utf-8")
    await import_customers(db.sessions, customers, policy)
    files = []
    for i in range(3):  # new orders, then changes, clears and repeats of stored ones
        path = tmp_path / f"o{i}.csv"
        path.write_text(orders_csv(rng, 300), encoding="utf-8")
        files.append(path)
    files.append(files[0])  # the same file again

    async def run() -> tuple[list[Any], list[tuple[Any, ...]]]:
        async with db.sessions() as s, s.begin():
            await s.execute(text("DELETE FROM orders"))
        reports = []
        for path in files:
            report = await import_orders(db.sessions, path, policy, batch_size=7)
            reports.append(outcome(report))
        return reports, await stored_orders(db)

    with_fast = await run()
    monkeypatch.setattr(OrderImporter, "fast_parser", lambda self, header: None)
    without = await run()
    assert with_fast == without
    assert with_fast[1]  # something was stored
    assert any(r[5] for r in with_fast[0])  # and some rows were rejected


async def test_stored_time_in_another_form_still_counts_unchanged(
    db: Db, policy: Policy, tmp_path: Path
) -> None:
    """A row stored by other means (SQLite text without microseconds) with the file's
    values: unchanged, as SQLAlchemy's reading of the text says."""
    if db.backend != "sqlite":
        pytest.skip("SQLite stores datetimes as text")
    async with db.sessions() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO orders (order_id, external_id, amount_cents, category, ordered_at,"
                " status) VALUES ('O1', 'C1', 1999, 'books', '2026-03-01 10:00:00', 'paid')"
            )
        )
    path = tmp_path / "o.csv"
    path.write_text(",".join(COLUMNS) + "\nC1,O1,19.99,books,2026-03-01T10:00:00Z,paid\n")
    report = await import_orders(db.sessions, path, policy)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 1)


async def test_the_collectors_threshold_is_restored(db: Db, policy: Policy, tmp_path: Path) -> None:
    before = gc.get_threshold()
    path = tmp_path / "o.csv"
    path.write_text(",".join(COLUMNS) + "\nC1,O1,19.99,books,2026-03-01,paid\n")
    await import_orders(db.sessions, path, policy)
    assert gc.get_threshold() == before


async def test_sqlite_import_restores_the_wal_checkpoint_and_checkpoints_after(
    db: Db, policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.backend != "sqlite":
        pytest.skip("SQLite's WAL")
    checkpoints: list[Any] = []
    real = bulk._checkpoint

    async def spy(session: Any) -> None:
        await real(session)  # the real one: it must run outside a transaction without error
        checkpoints.append(session)

    monkeypatch.setattr(bulk, "_checkpoint", spy)
    path = tmp_path / "o.csv"
    rows = [f"C{i % 50},O{i},{i}.50,books,2026-03-01T10:00:00Z,paid" for i in range(3000)]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    async with db.sessions() as s:
        before = (await s.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
    report = await import_orders(db.sessions, path, policy, batch_size=500)
    assert report.inserted == 3000
    assert len(checkpoints) == 1
    async with db.sessions() as s:
        assert (await s.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == before
