"""Benchmark 4: peak RSS of the bot process, and that it does not grow with the customer base.

    python -m bench memory [--size tiny|default] [--json FILE]

The bot (``python -m bot run``, a separate process so its RSS is its own) serves the pipeline
workload twice: once on a database of 5,000 customers and once on 100,000, with the same
messages from the same senders. Peak RSS (VmHWM from /proc) is read after the workload.
If the bot held anything per customer in the database, the second figure would grow by
roughly (95,000 x bytes per customer); the ratio large/small shows it does not.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchAPI, Figure, Traffic, bot_process, processed_count, seed, wait_done


@dataclass(frozen=True)
class Size:
    messages: int
    small: int
    large: int
    senders: int  # self-service senders drawn from the first N customers in both runs


SIZES = {
    "tiny": Size(messages=60, small=400, large=3000, senders=100),
    "default": Size(messages=1500, small=5000, large=100_000, senders=500),
}


async def serve(workdir: Path, customers: int, size: Size) -> tuple[int, int]:
    """(peak RSS KiB, RSS KiB after the workload) of the bot serving ``size.messages``."""
    world = await seed(workdir / f"memory-{customers}.db", customers)
    # Same VIP openers in both runs: the first few VIPs; the same self-service senders.
    traffic = Traffic(world, regular_pool=size.senders).mixed(size.messages)
    async with (
        BenchAPI() as api,
        bot_process(api, workdir / f"memory-{customers}.log", db_url=world.db_url) as bot,
    ):
        base = processed_count(world.db_path)
        for user, text, _ in traffic:
            api.user_message(user, text)
        await wait_done(lambda: processed_count(world.db_path) - base, size.messages, timeout=300)
        await api.wait_idle(quiet=0.2, timeout=30)
        await asyncio.sleep(0.1)
        rss, peak = bot.rss_kb()
    return peak, rss


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        small_peak, small_rss = await serve(wd, size.small, size)
        print(f"  {size.small:>7} customers: peak RSS {small_peak / 1024:.1f} MiB "
              f"(now {small_rss / 1024:.1f})")  # fmt: skip
        large_peak, large_rss = await serve(wd, size.large, size)
        print(f"  {size.large:>7} customers: peak RSS {large_peak / 1024:.1f} MiB "
              f"(now {large_rss / 1024:.1f})")  # fmt: skip
    growth = large_peak / small_peak
    per_customer = (large_peak - small_peak) * 1024 / (size.large - size.small)
    return [
        Figure("memory_peak_rss_mib", large_peak / 1024, "MiB"),
        Figure(f"memory_peak_rss_{size.small}_customers_mib", small_peak / 1024, "MiB"),
        Figure("memory_growth_ratio", growth, "large/small", goal="<= 1.1", met=growth <= 1.1),
        Figure("memory_bytes_per_extra_customer", per_customer, "bytes"),
    ]
