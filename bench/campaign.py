"""Benchmark: an NPS campaign through the durable outbox, the sweep and the sender.

    python -m bench.campaign [--customers 20000] [--rate 500] [--json FILE]
    python -m bench campaign [--size tiny|default]

Unlike ``bench.dispatch`` (the sender alone), every survey here is a database row: the
campaign run writes them (``surveys.campaigns``), the sweep claims them in batches, stamps
each before its Telegram call and records its outcome and message id
(``surveys.outbox``), exactly as the bot's scheduler does. SQLite (the default backend),
real aiogram (``bot.adapters.survey_transport.AiogramTransport`` with the bot's survey
keyboard) over HTTP to
the fake Bot API, which enforces a scaled limit (``--rate`` messages/s overall, 1/s per
chat); the sender is configured ``--factor`` under it (default 0.96).

Phase 1, clean: goals: achieved rate (delivered / sweep time, claims and writes included)
at least 95% of the configured rate; zero 429s; every customer asked exactly once.

Phase 2, faults: ``--blocked`` of the customers blocked the bot (403), a few 429s
(``retry_after=1``) and bursts of 500s are injected as the run progresses. Goals: every
deliverable survey delivered exactly once (counted in the fake's own call log), every
blocked customer's row ``failed`` and the customer marked unreachable, no row left behind.

Exit status 1 when a correctness goal fails; a missed speed goal is reported, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, insert, select

from bench.common import Figure, judged, machine, write_json
from bot.adapters.session import LeanSession
from bot.adapters.survey_transport import AiogramTransport
from bot.app import settle_heap
from bot.handlers.survey import render
from routing.policy.root import Policy, parse_policy
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer, Survey
from surveys import campaigns, outbox
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

FIRST_CHAT = 400_000_000
FIRE = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # the campaign's cron time (a Monday noon)


class _InjectingFake(FakeBotAPI):
    """The fake, injecting 429s and bursts of 500s at set counts of sendMessage calls."""

    def __init__(self, plan: list[tuple[int, str]], **kw: Any) -> None:
        super().__init__(**kw)
        self.plan = sorted(plan)
        self.seen = 0
        self.injected_429 = 0

    async def _send_message(self, params: dict[str, Any], files: Any) -> Any:
        self.seen += 1
        while self.plan and self.seen >= self.plan[0][0]:
            _, kind = self.plan.pop(0)
            if kind == "429":
                self.fail_next("sendMessage", 429, retry_after=1)
                self.injected_429 += 1
            else:
                self.fail_next("sendMessage", 500, times=5)
        return await super()._send_message(params, files)


def _fake_process(
    rate: float, blocked: list[int], plan: list[tuple[int, str]], conn: Connection
) -> None:
    """The fake Bot API on its own core: the bench process is the bot's side alone, as in
    production where Telegram is somebody else's machine."""

    async def serve() -> None:
        api = _InjectingFake(plan, global_rate=rate, per_chat_rate=1)
        api.blocked |= set(blocked)
        async with api:
            # Telegram doesn't stop answering to collect its garbage; full collections of
            # the fake's start-up heap would stall it for a fifth of a second at a time.
            settle_heap()
            conn.send(api.url)
            cpu, wall = time.process_time(), time.perf_counter()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # until the bench says stop
            busy = (time.process_time() - cpu) / max(1e-9, time.perf_counter() - wall)
            ok = Counter(int(c.chat_id) for c in api.calls_of("sendMessage") if c.ok)
            conn.send((dict(ok), api.count_429, api.injected_429, busy))

    asyncio.run(serve())


# Deliveries per chat, 429s answered, 429s injected, and the share of one core the fake's
# process used while the bench ran (NaN when it shares this process): near 1.0 would mean
# the fake, not the bot's side, sets the pace.
FakeStats = tuple[dict[int, int], int, int, float]


async def _start_fake(
    rate: float, blocked: set[int], plan: list[tuple[int, str]], separate: bool
) -> tuple[str, Callable[[], Awaitable[FakeStats]]]:
    """Start the fake (in a child process, or in this one for smoke runs); returns its URL
    and a function that stops it and returns what it saw."""
    if not separate:
        api = _InjectingFake(plan, global_rate=rate, per_chat_rate=1)
        api.blocked |= blocked
        await api.start()

        async def stop_local() -> FakeStats:
            ok = Counter(int(c.chat_id) for c in api.calls_of("sendMessage") if c.ok)
            await api.stop()
            return dict(ok), api.count_429, api.injected_429, float("nan")

        return api.url, stop_local
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fake_process, args=(rate, sorted(blocked), plan, child))
    proc.daemon = True
    proc.start()
    url: str = await asyncio.to_thread(parent.recv)

    async def stop_child() -> FakeStats:
        try:
            parent.send("stop")
            stats: FakeStats = await asyncio.to_thread(parent.recv)
            return stats
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

    return url, stop_child


def _policy(configured: float, concurrency: int) -> Policy:
    return parse_policy(
        {
            "surveys": {
                "claim_batch": 500,
                "quiet_hours": {"start": "00:00", "end": "00:00"},
                "nps": {"campaigns": [{"tier": "C", "schedule": "0 12 * * mon"}]},
                "sender": {
                    "global_rate": configured,
                    "per_chat_interval": 1.0,
                    "concurrency": concurrency,
                    "backoff_base_seconds": 0.2,
                },
            }
        }
    )


@dataclass
class Phase:
    rows: int
    created_s: float
    report: outbox.SweepReport
    delivered: Counter[int]
    count_429: int
    statuses: Counter[str]
    injected_429: int = 0
    bench_busy: float = 0.0  # share of one core this process used during the sweep
    fake_busy: float = float("nan")  # the same for the fake's process
    notes: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)


async def _phase(
    customers: int,
    rate: float,
    policy: Policy,
    *,
    blocked_share: float = 0.0,
    n429: int = 0,
    separate_fake: bool = True,
) -> tuple[Phase, set[int], int]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'campaign.db'}")
        try:
            await upgrade(engine)
            sessions = make_sessionmaker(engine)
            async with sessions() as s, s.begin():
                await s.execute(
                    insert(Customer),
                    [
                        {
                            "external_id": f"N{i}",
                            "telegram_id": FIRST_CHAT + i,
                            "tier": "C",
                            "created_at": FIRE,
                            "updated_at": FIRE,
                        }
                        for i in range(customers)
                    ],
                )
            t = time.perf_counter()
            await campaigns.run_due(sessions, policy, FIRE)
            created_s = time.perf_counter() - t
            every = max(1, round(1 / blocked_share)) if blocked_share > 0 else 0
            blocked = {FIRST_CHAT + i for i in range(customers) if every and i % every == every - 1}
            plan = sorted(
                {(round(k / (n429 + 1) * customers), "429") for k in range(1, n429 + 1)}
                | ({(round(k / 10 * customers), "500") for k in range(1, 10)} if n429 else set())
            )
            url, finish = await _start_fake(rate, blocked, plan, separate_fake)
            try:
                bot = Bot(DEFAULT_TOKEN, session=LeanSession(api=TelegramAPIServer.from_base(url)))
                try:
                    settle_heap()  # as the bot does once it is up
                    cpu, wall = time.process_time(), time.perf_counter()
                    report = await outbox.sweep(
                        sessions, policy, AiogramTransport(bot, render), lambda: FIRE
                    )
                    bench_busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
                finally:
                    await bot.session.close()
            finally:
                ok, count_429, injected, fake_busy = await finish()
            delivered = Counter({int(k): v for k, v in ok.items()})
            async with sessions() as s:
                statuses = Counter(
                    dict(
                        (
                            await s.execute(
                                select(Survey.status, func.count()).group_by(Survey.status)
                            )
                        ).all()
                    )
                )
                unreachable = int(
                    await s.scalar(
                        select(func.count()).select_from(Customer).where(Customer.unreachable_at.is_not(None))
                    )
                    or 0
                )  # fmt: skip
        finally:
            await engine.dispose()
    rows = sum(statuses.values())
    phase = Phase(
        rows, created_s, report, delivered, count_429, statuses, injected, bench_busy, fake_busy
    )
    return phase, blocked, unreachable


async def run(
    customers: int = 20_000,
    rate: float = 500.0,
    factor: float = 0.96,
    blocked: float = 0.02,
    n429: int = 3,
    concurrency: int = 16,
    separate_fake: bool = True,
) -> list[Figure]:
    configured = rate * factor
    policy = _policy(configured, concurrency)
    print(
        f"== campaign: {customers} customers through the outbox (SQLite), fake limit "
        f"{rate:g}/s overall and 1/s per chat, sender at {configured:g}/s",
        flush=True,
    )
    print("-- phase 1: clean", flush=True)
    clean, _, _ = await _phase(customers, rate, policy, separate_fake=separate_fake)
    st = clean.report.stats
    assert st is not None
    ratio = st.rate / configured
    lost = customers - sum(1 for n in clean.delivered.values() if n >= 1)
    print(
        f"   campaign rows: {clean.rows} written in {clean.created_s:.2f}s; "
        f"sent {st.sent} in {st.elapsed:.1f}s: {st.rate:.1f} msg/s, ratio to configured "
        f"{ratio:.3f}; 429s: {clean.count_429}; statuses {dict(clean.statuses)}",
        flush=True,
    )
    print(
        f"   CPU during the sweep (share of one core): bench process {clean.bench_busy:.2f}, "
        f"fake Bot API process {clean.fake_busy:.2f}",
        flush=True,
    )
    print("-- phase 2: 403s, 429s and 500s", flush=True)
    faults, blocked_chats, unreachable = await _phase(
        customers, rate, policy, blocked_share=blocked, n429=n429, separate_fake=separate_fake
    )
    ft = faults.report.stats
    assert ft is not None
    not_once = sum(
        1
        for i in range(customers)
        if FIRST_CHAT + i not in blocked_chats and faults.delivered[FIRST_CHAT + i] != 1
    )
    to_blocked = sum(faults.delivered[c] for c in blocked_chats)
    left = faults.statuses.get("scheduled", 0) + faults.statuses.get("sending", 0)
    print(
        f"   sent {ft.sent}, unreachable {ft.unreachable}, failed {ft.failed} in "
        f"{ft.elapsed:.1f}s: {ft.rate:.1f} msg/s; 429s {faults.count_429} (injected "
        f"{faults.injected_429}), paused {ft.pauses}x, retries {ft.retries}",
        flush=True,
    )
    print(
        f"   blocked chats {len(blocked_chats)}, customers marked unreachable {unreachable}; "
        f"deliverable not delivered exactly once: {not_once}; rows left behind: {left}; "
        f"statuses {dict(faults.statuses)}",
        flush=True,
    )
    wrong_rows = (
        abs(faults.statuses.get("failed", 0) - len(blocked_chats))
        + abs(unreachable - len(blocked_chats))
        + to_blocked
        + left
    )
    return [
        judged("campaign_rows_per_s", clean.rows / clean.created_s, "rows/s"),
        judged("campaign_rate", st.rate, "msg/s"),
        judged("campaign_rate_ratio", round(ratio, 3), goal=">= 0.95"),
        judged("campaign_bench_cpu_share", round(clean.bench_busy, 2)),
        judged("campaign_fake_cpu_share", round(clean.fake_busy, 2)),
        judged("campaign_429", clean.count_429, goal="== 0"),
        judged("campaign_clean_lost", lost, goal="== 0"),
        judged("campaign_duplicates", clean.duplicates + faults.duplicates, goal="== 0"),
        judged("campaign_faults_rate", ft.rate, "msg/s"),
        judged(
            "campaign_faults_unplanned_429",
            faults.count_429 - faults.injected_429,
            goal="== 0",
        ),
        judged("campaign_faults_not_exactly_once", not_once, goal="== 0"),
        judged("campaign_faults_wrong_rows", wrong_rows, goal="== 0"),
    ]


async def run_size(size: str) -> list[Figure]:
    """For ``python -m bench campaign --size tiny|default``."""
    if size == "tiny":
        return await run(customers=300, rate=200.0, n429=1, separate_fake=False)
    return await run()


CORRECTNESS = (
    "campaign_429",
    "campaign_clean_lost",
    "campaign_duplicates",
    "campaign_faults_unplanned_429",
    "campaign_faults_not_exactly_once",
    "campaign_faults_wrong_rows",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0, help="the fake's global limit")
    parser.add_argument("--factor", type=float, default=0.96, help="sender rate / limit")
    parser.add_argument("--blocked", type=float, default=0.02, help="share of blocked chats")
    parser.add_argument("--injected-429", type=int, default=3, dest="n429")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run the fake Bot API in this process (smoke runs; it then shares the core)",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    t = time.perf_counter()
    figures = asyncio.run(
        run(
            args.customers,
            args.rate,
            args.factor,
            args.blocked,
            args.n429,
            args.concurrency,
            separate_fake=not args.same_process,
        )
    )
    print(f"   ({time.perf_counter() - t:.1f}s)\n== summary")
    for fig in figures:
        print(fig.line())
    if args.json:
        meta = {
            "command": "python -m bench.campaign "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": started.isoformat(timespec="seconds"),
            "machine": machine(),
        }
        write_json(args.json, figures, meta)
        print(f"figures written to {args.json}")
    return 1 if any(f.name in CORRECTNESS and f.met is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
