"""Benchmark: set-based rescoring of every customer, on SQLite and PostgreSQL (issue 19).

    python -m bench.rescore [--customers 1000000] [--orders 10000000] [--db PATH]
                            [--backend sqlite|postgresql|both] [--repeat 3]
                            [--mode thresholds|percentile] [--runs 2] [--regenerate]
    python -m bench rescore [--size tiny|default] [--backend sqlite|postgresql|both]

Generates the data set with ``bench.scoring_data`` (SQLite: in a child process, once, kept
at ``--db``; PostgreSQL: in ``CONTACTBOT_BENCH_PG_URL``, whose ``public`` schema is dropped
and recreated, skipped with the reason printed when the variable is not set). Each
repetition first resets every customer to the state the generator left (tier C, no score,
never evaluated; no tier history), then runs ``routing.scoring.rescoring.rescore`` ``--runs``
times, each in its own transaction, the way ``contactbot score`` does: run 1 grades everyone
for the first time ("initial": 237k tier changes at the default size), later runs are the
steady state a day later each (recency moves every score, no tier changes). Prints per run
the wall time, this process's CPU time (the SQLite thread included; PostgreSQL's server
not), customers/s, tier changes and peak RSS; then one figure per backend and run kind,
the median over the repetitions with the spread, against the goal (under 20 s on SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import Figure
from bench.scoring_data import NOW, generate_pg
from routing.policy.root import Policy
from routing.scoring.rescoring import rescore
from routing.store.db import make_engine, make_sessionmaker

PG_ENV = "CONTACTBOT_BENCH_PG_URL"
GOAL_SECONDS = 20.0  # issue 19, SQLite, 1,000,000 customers / 10,000,000 orders
SIZES = {"tiny": (2_000, 20_000), "default": (1_000_000, 10_000_000)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _reset(engine: AsyncEngine) -> None:
    """Every customer as the generator left them, and no tier history."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE customers SET tier = 'C', score = 0, spend_12m = 0, below_count = 0,"
            " below_since = NULL, scored_at = NULL"
        )
        await conn.exec_driver_sql("DELETE FROM tier_changes")
        await conn.exec_driver_sql("DELETE FROM scoring_runs")
    if engine.dialect.name == "postgresql":
        # The reset rewrote every row: without a vacuum run 1 would walk the dead ones.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE customers")
            await conn.exec_driver_sql("VACUUM ANALYZE tier_changes")


async def _repetition(
    engine: AsyncEngine, policy: Policy, runs: int
) -> list[tuple[float, float, int, int]]:
    """(wall s, CPU s, customers, changes) per run, after a reset."""
    await _reset(engine)
    sessions = make_sessionmaker(engine)
    out = []
    for run in range(1, runs + 1):
        # Each run a day later: recency moves every score, as a nightly run would see.
        now = NOW + timedelta(days=run - 1)
        t, cpu = time.perf_counter(), time.process_time()
        async with sessions() as s, s.begin():
            result = await rescore(s, policy, now, trigger="bench")
        secs, cpu_secs = time.perf_counter() - t, time.process_time() - cpu
        print(
            f"  run {run} ({policy.scoring.mode}): {result.customers:,} customers in "
            f"{secs:.1f} s (CPU {cpu_secs:.1f} s) = {result.customers / secs:,.0f} customers/s; "
            f"{result.change_count:,} tier changes; peak RSS {peak_rss_mib():.0f} MiB",
            flush=True,
        )
        out.append((secs, cpu_secs, result.customers, result.change_count))
    dist = ", ".join(f"{t} {result.distribution.get(t, 0):,}" for t in policy.tier_names)
    print(f"  tiers: {dist}")
    return out


def _figures(backend: str, reps: list[list[tuple[float, float, int, int]]]) -> list[Figure]:
    figures = []
    for i, kind in enumerate(("initial", "steady")):
        walls = [r[i][0] for r in reps if len(r) > i]
        cpus = [r[i][1] for r in reps if len(r) > i]
        if not walls:
            continue
        wall = statistics.median(walls)
        spread = ", ".join(f"{w:.1f}" for w in walls)
        print(
            f"{backend} {kind}: median {wall:.1f} s over {len(walls)} ({spread}); "
            f"CPU median {statistics.median(cpus):.1f} s"
        )
        goal, met = None, None
        if backend == "sqlite":
            goal, met = f"< {GOAL_SECONDS:g} s", wall < GOAL_SECONDS
        figures.append(Figure(f"rescore_{backend}_{kind}_s", wall, "s", goal, met))
        figures.append(Figure(f"rescore_{backend}_{kind}_cpu_s", statistics.median(cpus), "s"))
    return figures


async def run_backend(
    backend: str,
    customers: int,
    orders: int,
    db: Path,
    policy: Policy,
    runs: int,
    repeat: int,
    regenerate: bool,
) -> list[Figure]:
    if backend == "sqlite":
        if regenerate or not await asyncio.to_thread(db.exists):
            cmd = [sys.executable, "-m", "bench.scoring_data", "--db", str(db)]
            cmd += ["--customers", str(customers), "--orders", str(orders)]
            await asyncio.to_thread(subprocess.run, cmd, check=True)
        url = f"sqlite+aiosqlite:///{db}"
    else:
        url = os.environ.get(PG_ENV, "")
        if not url:
            print(f"postgresql: skipped ({PG_ENV} is not set)")
            return []
        times = await generate_pg(url, customers, orders)
        print(
            f"postgresql: generated {customers:,} customers, {orders:,} orders in "
            + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        )
    engine = make_engine(url)
    reps = []
    try:
        for rep in range(1, repeat + 1):
            print(f"{backend}, repetition {rep}/{repeat}:", flush=True)
            reps.append(await _repetition(engine, policy, runs))
    finally:
        await engine.dispose()
    return _figures(backend, reps)


async def run(
    size: str = "default",
    backend: str = "sqlite",
    *,
    repeat: int = 3,
    runs: int = 2,
    mode: str = "thresholds",
    db: Path | None = None,
    customers: int | None = None,
    orders: int | None = None,
    regenerate: bool = False,
) -> list[Figure]:
    """The figures for ``python -m bench rescore``."""
    c, o = SIZES[size]
    c, o = customers or c, orders or o
    db = db or Path(f"/tmp/contactbot-score-{c}-{o}.db")
    policy = Policy.model_validate({"scoring": {"mode": mode}})
    figures: list[Figure] = []
    for name in ("sqlite", "postgresql") if backend == "both" else (backend,):
        figures += await run_backend(name, c, o, db, policy, runs, repeat, regenerate)
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=SIZES["default"][0])
    p.add_argument("--orders", type=int, default=SIZES["default"][1])
    p.add_argument("--db", type=Path, default=None, help="SQLite file for the data set")
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    p.add_argument("--mode", choices=("thresholds", "percentile"), default="thresholds")
    p.add_argument("--runs", type=int, default=2, help="runs per repetition (1: initial only)")
    p.add_argument("--repeat", type=int, default=1, help="repetitions, each after a reset")
    p.add_argument("--regenerate", action="store_true")
    a = p.parse_args(argv)
    figures = asyncio.run(
        run(
            backend=a.backend,
            repeat=a.repeat,
            runs=a.runs,
            mode=a.mode,
            db=a.db,
            customers=a.customers,
            orders=a.orders,
            regenerate=a.regenerate,
        )
    )
    for f in figures:
        print(f.line())


if __name__ == "__main__":
    main()
