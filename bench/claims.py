"""Benchmark 3: claim contention, many agents racing ``/next`` over a long queue.

    python -m bench claims [--size tiny|default] [--json FILE]

50 agents (each its own task with its own session, as each /next is its own update) call
``routing.queue.claims.claim_next`` in a loop until the queue of 10,000 conversations is empty.
This measures the atomic claim itself, the part where agents contend; the Telegram side of
/next (the briefing messages) is per-claim work already covered by the pipeline benchmark.
Reported: claims/s, and double claims, i.e. conversations handed to more than one agent or
whose stored owner is not the agent that was told it won (must be 0). Runs on SQLite always
and on PostgreSQL when CONTACTBOT_TEST_PG_URL is set (the database is wiped first).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

from bench.common import NOW, Figure
from routing.queue.claims import claim_next
from routing.store.db import is_sqlite, make_engine, make_sessionmaker, upgrade
from routing.store.models import QUEUED, Agent, Conversation, Customer


@dataclass(frozen=True)
class Size:
    agents: int
    conversations: int


SIZES = {
    "tiny": Size(agents=10, conversations=200),
    "default": Size(agents=50, conversations=10_000),
}


async def _seed(sessions, size: Size) -> list[Agent]:  # type: ignore[no-untyped-def]
    tiers = ("VIP", "A", "B", "C")
    async with sessions() as s, s.begin():
        await s.execute(
            insert(Customer),
            [
                {"external_id": f"Q{i}", "name": f"cust{i}", "tier": tiers[i % 4],
                 "created_at": NOW, "updated_at": NOW}
                for i in range(size.conversations)
            ],
        )  # fmt: skip
        ids = list((await s.execute(select(Customer.id).order_by(Customer.id))).scalars())
        await s.execute(
            insert(Conversation),
            [
                {"customer_id": cid, "status": QUEUED, "tier": tiers[i % 4], "priority": i % 4,
                 "origin": "customer_request", "queued_at": NOW + timedelta(milliseconds=i)}
                for i, cid in enumerate(ids)
            ],
        )  # fmt: skip
        agents = [
            Agent(telegram_id=5000 + i, name=f"agent{i}", role="agent", max_chats=10**6,
                  online=True, active=True, created_at=NOW)
            for i in range(size.agents)
        ]  # fmt: skip
        s.add_all(agents)
    return agents


async def race(url: str, size: Size) -> tuple[float, int, int]:
    """(claims/s, double claims, conversations left unclaimed)."""
    # SQLite: the engine the bot uses (its pool is how one process's writers queue).
    # PostgreSQL: one connection per agent, as several bot instances would have, so all
    # of them really race on the rows (the default pool would queue them).
    kw = {} if is_sqlite(url) else {"pool_size": size.agents, "max_overflow": 0}
    engine = make_engine(url, pool_timeout=300, **kw)
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        agents = await _seed(sessions, size)
        claimed: list[tuple[int, int]] = []
        start = asyncio.Event()

        async def work(agent: Agent) -> None:
            await start.wait()
            while True:
                async with sessions() as s, s.begin():
                    conv = await claim_next(s, agent, NOW)
                if conv is None:
                    return
                claimed.append((conv.id, agent.id))

        tasks = [asyncio.create_task(work(a)) for a in agents]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        per_conv = Counter(cid for cid, _ in claimed)
        doubles = sum(n - 1 for n in per_conv.values() if n > 1)
        async with sessions() as s:
            owners = dict((await s.execute(select(Conversation.id, Conversation.agent_id))).all())
            left = await s.scalar(
                select(func.count()).select_from(Conversation).where(Conversation.status == QUEUED)
            )
        # A winner told "yours" while the row names someone else is a double claim too.
        doubles += sum(1 for cid, aid in set(claimed) if owners.get(cid) != aid)
        return len(claimed) / elapsed, doubles, int(left or 0)
    finally:
        await engine.dispose()


async def _reset_pg(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    figures: list[Figure] = []
    backends: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        backends.append(("sqlite", f"sqlite+aiosqlite:///{wd / 'claims.db'}"))
        pg = os.environ.get("CONTACTBOT_TEST_PG_URL")
        if pg:
            backends.append(("postgresql", pg))
        else:
            print("  postgresql: skipped (set CONTACTBOT_TEST_PG_URL to include it)")
        for name, url in backends:
            if name == "postgresql":
                await _reset_pg(url)
            rate, doubles, left = await race(url, size)
            print(
                f"  {name}: {size.agents} agents, {size.conversations} conversations: "
                f"{rate:.0f} claims/s, {doubles} double claims, {left} left"
            )
            figures += [
                Figure(f"claims_{name}_per_s", rate, "claims/s"),
                Figure(f"claims_{name}_double_claims", float(doubles), "", goal="== 0",
                       met=doubles == 0),
                Figure(f"claims_{name}_left_unclaimed", float(left), "", goal="== 0",
                       met=left == 0),
            ]  # fmt: skip
    return figures
