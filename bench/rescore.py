"""Benchmark: set-based rescoring of every customer on SQLite.

    python -m bench.rescore [--customers 1000000] [--orders 10000000] [--db PATH]
                            [--mode thresholds|percentile] [--runs 2] [--regenerate]

Generates the data set with ``bench.scoring_data`` in a child process when ``--db`` does not
exist yet (or with ``--regenerate``), so this process's peak RSS is the rescoring's alone.
Then runs ``routing.scoring.rescoring.rescore`` ``--runs`` times, each in its own transaction, the
way ``contactbot score`` does: run 1 grades everyone for the first time (every customer
changes tier from the import's default), later runs are the steady state (scores move with
recency, few tiers change). Prints per run: customers, seconds, customers/s, tier changes,
and peak RSS (``resource.getrusage``), plus the tier distribution.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench.scoring_data import NOW
from routing.policy.root import Policy
from routing.scoring.rescoring import rescore
from routing.store.db import make_engine, make_sessionmaker


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _run(db: Path, policy: Policy, runs: int) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    sessions = make_sessionmaker(engine)
    print(f"peak RSS before rescoring: {peak_rss_mib():.0f} MiB")
    try:
        for run in range(1, runs + 1):
            # Each run a day later: recency moves every score, as a nightly run would see.
            now = NOW + timedelta(days=run - 1)
            t = time.perf_counter()
            async with sessions() as s, s.begin():
                result = await rescore(s, policy, now, trigger="bench")
            secs = time.perf_counter() - t
            print(
                f"run {run} ({policy.scoring.mode}): {result.customers:,} customers in "
                f"{secs:.1f} s = {result.customers / secs:,.0f} customers/s; "
                f"{result.change_count:,} tier changes; peak RSS {peak_rss_mib():.0f} MiB"
            )
        dist = ", ".join(f"{t} {result.distribution.get(t, 0):,}" for t in policy.tier_names)
        print(f"tiers: {dist}")
    finally:
        await engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=10_000_000)
    p.add_argument("--db", type=Path, default=None)
    p.add_argument("--mode", choices=("thresholds", "percentile"), default="thresholds")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--regenerate", action="store_true")
    a = p.parse_args()
    db = a.db or Path(f"/tmp/contactbot-score-{a.customers}-{a.orders}.db")
    if a.regenerate or not db.exists():
        cmd = [sys.executable, "-m", "bench.scoring_data", "--db", str(db)]
        cmd += ["--customers", str(a.customers), "--orders", str(a.orders)]
        subprocess.run(cmd, check=True)
    policy = Policy.model_validate({"scoring": {"mode": a.mode}})
    asyncio.run(_run(db, policy, a.runs))


if __name__ == "__main__":
    main()
