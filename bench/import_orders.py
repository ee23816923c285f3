"""Benchmark: import a generated CRM export into a fresh SQLite database.

    python -m bench.import_orders [--rows 100000] [--customers 10000] [--db PATH]
                                  [--backend sqlite|postgresql]
    python -m bench.import_orders --rows 1000000 --customers 100000   # issue 19's size

Generates deterministic (seeded) customers.csv and orders.csv in a temporary directory,
migrates a fresh database (SQLite; or PostgreSQL from ``CONTACTBOT_BENCH_PG_URL``, whose
``public`` schema is dropped and recreated), then times ``import_customers``,
``import_orders`` and an idempotent re-import of the same orders, printing rows, seconds,
rows/s and this process's CPU seconds for each. Goal (issue 19): 1,000,000 orders imported
in under 30 s on SQLite; the goal line is printed at that size.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from routing.customers.importer import ImportReport, import_customers, import_orders
from routing.policy.root import Policy
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer, Order

SEED = 20260301
CATEGORIES = ("electronics", "books", "garden", "toys", "grocery", "fashion", "sports")
STATUSES = ("paid", "shipped", "delivered", "refunded")
LANGUAGES = ("en", "en-GB", "zh-CN", "de", "fr", "es")
AREA_CODES = ("212", "646", "718", "415", "312", "617")


def write_customers(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "external_id",
                "name",
                "phone",
                "email",
                "telegram_id",
                "language",
                "account_manager",
                "tier_override",
            ]
        )
        for i in range(n):
            phone = f"+1 ({rng.choice(AREA_CODES)}) {rng.randint(200, 999)}-{i % 10000:04d}"
            w.writerow(
                [
                    f"C{i:07d}",
                    f"Customer {i}",
                    phone,
                    f"customer{i}@example.com",
                    str(100_000_000 + i) if rng.random() < 0.3 else "",
                    rng.choice(LANGUAGES),
                    f"agent{rng.randint(1, 20)}",
                    "VIP" if rng.random() < 0.01 else "",
                ]
            )


def write_orders(path: Path, n: int, customers: int, rng: random.Random) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "order_id", "amount", "category", "ordered_at", "status"])
        for i in range(n):
            when = start + timedelta(seconds=rng.randint(0, 400 * 86400))
            status = rng.choice(STATUSES)
            cents = rng.randint(100, 500_000) * (-1 if status == "refunded" else 1)
            w.writerow(
                [
                    f"C{rng.randrange(customers):07d}",
                    f"O{i:09d}",
                    f"{cents / 100:.2f}",
                    rng.choice(CATEGORIES),
                    when.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if i % 2 else ""),
                    status,
                ]
            )


PG_ENV = "CONTACTBOT_BENCH_PG_URL"
GOAL_ROWS, GOAL_SECONDS = 1_000_000, 30.0  # issue 19, SQLite


def _line(label: str, report: ImportReport, cpu: float) -> str:
    rate = report.rows / report.seconds if report.seconds else 0.0
    return (
        f"{label:<22} rows={report.rows:>9}  ok={report.ok:>9}  inserted={report.inserted:>9}  "
        f"updated={report.updated:>9}  errors={len(report.errors):>5}  "
        f"seconds={report.seconds:8.3f}  rows/s={rate:>10.0f}  cpu={cpu:7.1f}"
    )


async def _fresh_pg(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            await conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        await engine.dispose()


async def run(
    rows: int, customers: int, db_path: Path, workdir: Path, url: str | None = None
) -> dict[str, float]:
    rng = random.Random(SEED)
    customers_csv = workdir / "customers.csv"
    orders_csv = workdir / "orders.csv"
    t = time.perf_counter()
    write_customers(customers_csv, customers, rng)
    write_orders(orders_csv, rows, customers, rng)
    print(f"generated {customers} customers and {rows} orders in {time.perf_counter() - t:.2f}s")

    if url is not None:
        await _fresh_pg(url)
    engine = make_engine(url or f"sqlite+aiosqlite:///{db_path}")
    backend = engine.dialect.name
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        policy = Policy()
        results: dict[str, float] = {}
        for label, fn, path in (
            ("import_customers", import_customers, customers_csv),
            ("import_orders", import_orders, orders_csv),
            ("reimport_orders", import_orders, orders_csv),
        ):
            cpu = time.process_time()
            report = await fn(sessions, path, policy)
            print(_line(label, report, time.process_time() - cpu))
            for warning in report.warnings[:3]:
                print(f"    warning: {warning}")
            results[label] = report.rows / report.seconds if report.seconds else 0.0
            if label == "import_orders" and report.rows == GOAL_ROWS:
                met = report.seconds < GOAL_SECONDS
                goal = f"(goal < {GOAL_SECONDS:g} s on sqlite: {'met' if met else 'NOT met'})"
                print(
                    f"import_orders_{backend}_s: {report.seconds:.1f} s"
                    + (f"  {goal}" if backend == "sqlite" else "")
                )
        async with sessions() as s:
            n_customers = await s.scalar(select(func.count()).select_from(Customer))
            n_orders = await s.scalar(select(func.count()).select_from(Order))
        print(f"database: {n_customers} customers, {n_orders} orders")
        return results
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_orders", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="orders to generate")
    parser.add_argument("--customers", type=int, default=10_000, help="customers to generate")
    parser.add_argument("--db", type=Path, help="SQLite file (default: in the temp dir)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    url = None
    if args.backend == "postgresql":
        url = os.environ.get(PG_ENV)
        if not url:
            print(f"postgresql: skipped ({PG_ENV} is not set)")
            return 0
    if args.rows < 1 or args.customers < 1:
        parser.error("--rows and --customers must be positive")
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        workdir = Path(tmp)
        db_path = args.db or workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):  # a fresh database every run
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        results = asyncio.run(run(args.rows, args.customers, db_path, workdir, url))
    for label, rate in results.items():
        print(f"{label}_rows_per_s: {rate:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
