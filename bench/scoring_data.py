"""Generate a large, deterministic customers + orders data set for the rescoring benchmark.

    python -m bench.scoring_data --customers 1000000 --orders 10000000 --db /tmp/score.db

The schema comes from the migrations; the rows are written by SQLite itself (a recursive CTE
with deterministic integer hashing), in two big transactions, with the order indexes built
after the load. Orders are written in pseudo-random customer and date order, as a CRM export
by date would arrive, so rescoring does not get a conveniently clustered table.

Shape: ``customers`` customers ``C0000000``.., each with a "wealth" from a hash of their
number (order sizes are exponential in it: a few percent reach the VIP band); the first 5% of
customers get a quarter of all orders (high-frequency buyers); each customer buys in 1-5 of
7 categories; orders spread over the 3 years before ``NOW``; 5% are refunded.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from routing.store.db import make_engine, upgrade

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CATEGORIES = ("electronics", "books", "garden", "toys", "grocery", "fashion", "sports")


async def _migrate(path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def generate(path: Path, customers: int, orders: int) -> dict[str, float]:
    """Create ``path`` afresh with the data set; returns seconds per step."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    asyncio.run(_migrate(path))
    times["migrate"] = time.perf_counter() - t

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading
    con.execute("DROP INDEX IF EXISTS ix_orders_external_id")
    con.execute("DROP INDEX IF EXISTS ix_orders_external_id_ordered_at")
    con.execute("DROP INDEX IF EXISTS ix_orders_scoring")
    now_epoch = int(NOW.timestamp())
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S.000000")

    t = time.perf_counter()
    con.execute("BEGIN")
    con.execute(
        """
        WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n)
        INSERT INTO customers (external_id, name, phone, language, tier, spend_12m, is_guest,
                               created_at, updated_at)
        SELECT 'C' || printf('%07d', i), 'Customer ' || i, '+1212' || printf('%07d', i),
               'en', 'C', 0, 0, :stamp, :stamp
        FROM s
        """,
        {"n": customers, "stamp": stamp},
    )
    con.execute("COMMIT")
    times["customers"] = time.perf_counter() - t

    t = time.perf_counter()
    cats = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(CATEGORIES))
    con.execute("BEGIN")
    con.execute(
        f"""
        WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :m),
        o(i, c) AS (
            SELECT i, CASE WHEN i % 4 = 0 THEN (i * 2654435761) % MAX(:n / 20, 1)
                           ELSE (i * 2654435761) % :n END
            FROM s
        )
        INSERT INTO orders (order_id, external_id, amount_cents, category, ordered_at, status)
        SELECT 'O' || printf('%09d', i),
               'C' || printf('%07d', c),
               CAST(1500000.0 * 100 * exp(-9.0 * (1.0 - ((c * 40503) % 100003) / 100003.0))
                    * (0.5 + ((i * 7919) % 1000) / 1000.0) AS INTEGER) + 100,
               CASE (c * 3 + i % (1 + c % 5)) % 7 {cats} END,
               strftime('%Y-%m-%d %H:%M:%S.000000', :now - (i * 104729) % (3 * 365 * 86400),
                        'unixepoch'),
               CASE WHEN i % 20 = 7 THEN 'refunded' ELSE 'paid' END
        FROM o
        """,
        {"m": orders, "n": customers, "now": now_epoch},
    )
    con.execute("COMMIT")
    times["orders"] = time.perf_counter() - t

    t = time.perf_counter()
    con.execute(
        "CREATE INDEX ix_orders_scoring ON orders "
        "(external_id, ordered_at, amount_cents, category, status)"
    )
    con.execute("ANALYZE")
    times["indexes"] = time.perf_counter() - t
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return times


async def generate_pg(url: str, customers: int, orders: int) -> dict[str, float]:
    """The same data set on PostgreSQL (``url``'s ``public`` schema is dropped and recreated):
    the formulas of ``generate``, in ``generate_series``; the order indexes built after the
    load. Amounts truncate like SQLite's CAST, so the totals match the SQLite set."""
    from sqlalchemy import text

    times: dict[str, float] = {}
    t = time.perf_counter()
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await upgrade(engine)
        times["migrate"] = time.perf_counter() - t
        n, m, now_epoch = int(customers), int(orders), int(NOW.timestamp())
        stamp = f"to_timestamp({now_epoch})"
        t = time.perf_counter()
        async with engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            await conn.exec_driver_sql(
                "INSERT INTO customers (external_id, name, phone, language, tier, spend_12m,"
                " is_guest, created_at, updated_at)"
                " SELECT 'C' || lpad(i::text, 7, '0'), 'Customer ' || i,"
                f" '+1212' || lpad(i::text, 7, '0'), 'en', 'C', 0, false, {stamp}, {stamp}"
                f" FROM generate_series(0, {n - 1}) AS i"
            )
        times["customers"] = time.perf_counter() - t
        t = time.perf_counter()
        cats = ", ".join(f"'{c}'" for c in CATEGORIES)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            await conn.exec_driver_sql("DROP INDEX IF EXISTS ix_orders_scoring")
            await conn.exec_driver_sql(
                "INSERT INTO orders (order_id, external_id, amount_cents, category, ordered_at,"
                " status)"
                " SELECT 'O' || lpad(i::text, 9, '0'), 'C' || lpad(c::text, 7, '0'),"
                " trunc(1500000.0 * 100 * exp(-9.0 * (1.0 - ((c * 40503) % 100003)::float8"
                " / 100003.0)) * (0.5 + ((i * 7919) % 1000)::float8 / 1000.0))::bigint + 100,"
                f" (ARRAY[{cats}])[((c * 3 + i % (1 + c % 5)) % 7) + 1],"
                f" to_timestamp({now_epoch} - (i * 104729) % (3 * 365 * 86400)),"
                " CASE WHEN i % 20 = 7 THEN 'refunded' ELSE 'paid' END"
                " FROM (SELECT i, CASE WHEN i % 4 = 0"
                f" THEN (i * 2654435761) % GREATEST({n} / 20, 1) ELSE (i * 2654435761) % {n}"
                f" END AS c FROM generate_series(0::bigint, {m - 1}) AS i) AS s"
            )
        times["orders"] = time.perf_counter() - t
        t = time.perf_counter()
        async with engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            await conn.exec_driver_sql(
                "CREATE INDEX ix_orders_scoring ON orders"
                " (external_id, ordered_at, amount_cents, category, status)"
            )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE customers")
            await conn.exec_driver_sql("VACUUM ANALYZE orders")
        times["indexes"] = time.perf_counter() - t
    finally:
        await engine.dispose()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=10_000_000)
    p.add_argument("--db", type=Path, default=Path("/tmp/contactbot-score-bench.db"))
    a = p.parse_args()
    times = generate(a.db, a.customers, a.orders)
    total = sum(times.values())
    print(
        f"generated {a.customers:,} customers, {a.orders:,} orders in {a.db} in {total:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        + ")"
    )


if __name__ == "__main__":
    main()
