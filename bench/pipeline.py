"""Benchmark 1: update pipeline throughput, ours against a bare aiogram echo bot.

    python -m bench pipeline [--size tiny|default] [--json FILE]

N customer messages (60% self-service, 10% VIPs opening a chat and paging agents, 15%
customers relaying to their agent, 15% agents relaying back) are queued on the fake Bot API
at once; the bot (a separate ``python -m bot run`` process on a seeded SQLite file) long-polls
them over real HTTP. The clock stops when the bot has finished every update (its redelivery
guard rows). The floor is a bare aiogram bot in its own process that echoes each of the same
N messages over the same fake; it is done when N echoes arrived. Repetitions alternate the
two bots, and the figures are medians.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchAPI,
    Figure,
    Traffic,
    bot_process,
    median,
    processed_count,
    seed,
    wait_done,
)


@dataclass(frozen=True)
class Size:
    messages: int
    customers: int
    reps: int


SIZES = {
    "tiny": Size(messages=60, customers=400, reps=1),
    "default": Size(messages=1500, customers=10_000, reps=3),
}


@dataclass(frozen=True)
class Run:
    rate: float  # updates/s
    cpu_ms: float  # CPU time of the bot process per update
    calls: float  # Bot API calls per update
    peak_kb: int = 0


async def run_ours(workdir: Path, size: Size, tag: str) -> Run:
    """Updates/s and CPU per update of contactbot, and the bot process's peak RSS (KiB)."""
    world = await seed(workdir / f"pipeline-{tag}.db", size.customers)
    traffic = Traffic(world).mixed(size.messages)
    async with (
        BenchAPI() as api,
        bot_process(api, workdir / f"pipeline-{tag}.log", db_url=world.db_url) as bot,
    ):
        base = processed_count(world.db_path)
        mark = api.mark()
        for user, text, _kind in traffic:
            api.user_message(user, text)
        t0, cpu0 = time.monotonic(), bot.cpu_seconds()
        end = await wait_done(
            lambda: processed_count(world.db_path) - base, size.messages, timeout=300
        )
        cpu = bot.cpu_seconds() - cpu0
        _, peak = bot.rss_kb()
        calls = api.api_calls(mark) / size.messages
    return Run(size.messages / (end - t0), cpu * 1000 / size.messages, calls, peak)


async def run_bare(workdir: Path, size: Size, tag: str) -> Run:
    """Updates/s and CPU per update of the bare aiogram echo bot (same transport, messages)."""
    world = await seed(workdir / f"pipeline-bare-{tag}.db", size.customers)
    traffic = Traffic(world).mixed(size.messages)
    async with BenchAPI() as api, bot_process(api, workdir / f"bare-{tag}.log", bare=True) as bot:
        mark = api.mark()
        for user, text, _kind in traffic:
            api.user_message(user, text)
        t0, cpu0 = time.monotonic(), bot.cpu_seconds()
        end = await wait_done(lambda: api.count("sendMessage", mark), size.messages, timeout=300)
        cpu = bot.cpu_seconds() - cpu0
        calls = api.api_calls(mark) / size.messages
    return Run(size.messages / (end - t0), cpu * 1000 / size.messages, calls)


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        ours: list[Run] = []
        bare: list[Run] = []
        for rep in range(size.reps):
            # Alternate the order so drift on a shared machine hits both alike.
            order = ("bare", "ours") if rep % 2 == 0 else ("ours", "bare")
            for which in order:
                if which == "bare":
                    r = await run_bare(wd, size, str(rep))
                    bare.append(r)
                    print(
                        f"  rep {rep}: bare aiogram {r.rate:8.1f} updates/s"
                        f"  {r.cpu_ms:6.2f} ms CPU/update  {r.calls:.2f} API calls/update"
                    )
                else:
                    r = await run_ours(wd, size, str(rep))
                    ours.append(r)
                    print(
                        f"  rep {rep}: contactbot   {r.rate:8.1f} updates/s"
                        f"  {r.cpu_ms:6.2f} ms CPU/update  {r.calls:.2f} API calls/update"
                        f"  (peak RSS {r.peak_kb // 1024} MiB)"
                    )
        pairs = list(zip(ours, bare, strict=True))
    ratio = median([o.rate / b.rate for o, b in pairs])
    # CPU per update is far less sensitive to other load on a shared machine than updates/s:
    # it says how much work an update is, not how quickly the machine got round to it.
    cpu_ratio = median([b.cpu_ms / o.cpu_ms for o, b in pairs])
    return [
        Figure("pipeline_contactbot_updates_per_s", median([o.rate for o in ours]), "updates/s"),
        Figure("pipeline_bare_aiogram_updates_per_s", median([b.rate for b in bare]), "updates/s"),
        Figure("pipeline_ratio", ratio, "ours/bare", goal=">= 0.5", met=ratio >= 0.5),
        Figure("pipeline_contactbot_cpu_ms_per_update", median([o.cpu_ms for o in ours]), "ms"),
        Figure("pipeline_bare_aiogram_cpu_ms_per_update", median([b.cpu_ms for b in bare]), "ms"),
        Figure("pipeline_cpu_ratio", cpu_ratio, "bare/ours CPU per update"),
        Figure(
            "pipeline_contactbot_api_calls_per_update", median([o.calls for o in ours]), "calls"
        ),
        Figure("pipeline_messages", float(size.messages), "messages"),
    ]


def main_async(size_name: str) -> list[Figure]:
    print(f"pipeline: {SIZES[size_name]}")
    return asyncio.run(run(size_name))
