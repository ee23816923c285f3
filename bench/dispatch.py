"""Benchmark: a survey campaign through the push sender against the fake Bot API.

    python -m bench.dispatch [--customers 20000] [--rate 500] [--json FILE]

The fake enforces a scaled-up Telegram limit (``--rate`` messages/s overall, 1/s per chat)
and the sender is configured just under it (``--factor`` of the rate, default 0.96). Real
aiogram (``bot.adapters.survey_transport.AiogramTransport``) talks HTTP to the fake; both run
in this process
and event loop: measured on a 2-core machine the pair sustains over 1,000 sendMessage/s
(unlimited), twice the default rate, so the loop is not what limits the figures.

Phase 1, clean: one survey per customer, each to its own chat. Goals: achieved rate (sent /
elapsed, start-up included) at least 95% of the configured rate, and no 429 at all.

Phase 2, faults: the same campaign with ``--blocked`` of the customers having blocked the
bot (403), a 429 ``retry_after=1`` injected at a few points and bursts of 500s. Goals: every
deliverable survey delivered exactly once (counted from the fake's own call log), every
blocked customer reported unreachable, no 429 beyond the injected ones.

Exit status 1 when a correctness goal fails (a 429 caused by our pacing, a duplicate, a lost
survey); a missed speed goal is reported, not fatal (it depends on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer

from bench.common import Figure, judged, machine, write_json
from bot.adapters.session import LeanSession
from bot.adapters.survey_transport import AiogramTransport
from surveys.push import Sender, Stats
from surveys.push_pacing import SenderConfig
from surveys.push_transport import Outcome, Push, Result
from tests.fakes.bot_api import FakeBotAPI

FIRST_CHAT = 300_000_000


class Progress:
    """How many pushes have a final outcome, and a way to wait for a count."""

    def __init__(self) -> None:
        self.done = 0
        self._changed = asyncio.Event()

    def bump(self) -> None:
        self.done += 1
        self._changed.set()

    async def reached(self, count: float) -> None:
        while self.done < count:
            self._changed.clear()
            await self._changed.wait()


@dataclass
class Phase:
    stats: Stats
    outcomes: dict[str | int, Outcome]
    delivered: Counter[int]  # successful sendMessage calls per chat, from the fake's log
    count_429: int
    injected_429: int = 0
    server_rate: float = 0.0  # successful sends/s between the first and last, fake's clock
    notes: list[str] = field(default_factory=list)


async def _campaign(
    api: FakeBotAPI,
    pushes: list[Push],
    config: SenderConfig,
    during: Callable[[Progress], Coroutine[Any, Any, None]] | None = None,
) -> Phase:
    bot = Bot(api.token, session=LeanSession(api=TelegramAPIServer.from_base(api.url)))
    outcomes: dict[str | int, Outcome] = {}
    progress_ = Progress()

    async def record(result: Result) -> None:
        outcomes[result.push.key] = result.outcome
        progress_.bump()

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            print(f"   ... {len(outcomes)}/{len(pushes)} done", flush=True)

    tasks = [asyncio.create_task(progress())]
    if during is not None:
        tasks.append(asyncio.create_task(during(progress_)))
    try:
        stats = await Sender(AiogramTransport(bot), config).run(pushes, record)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bot.session.close()
    ok = [c for c in api.calls_of("sendMessage") if c.ok]
    span = ok[-1].at - ok[0].at if len(ok) > 1 else 0.0
    return Phase(
        stats=stats,
        outcomes=outcomes,
        delivered=Counter(int(c.chat_id) for c in ok),
        count_429=api.count_429,
        server_rate=(len(ok) - 1) / span if span > 0 else 0.0,
    )


def _pushes(customers: int, wave: str) -> list[Push]:
    return [
        Push(f"{wave}-{i}", FIRST_CHAT + i, f"How did we do? ({wave} #{i})")
        for i in range(customers)
    ]


async def phase_clean(customers: int, rate: float, config: SenderConfig) -> Phase:
    async with FakeBotAPI(global_rate=rate, per_chat_rate=1) as api:
        return await _campaign(api, _pushes(customers, "clean"), config)


async def phase_faults(
    customers: int, rate: float, config: SenderConfig, blocked_share: float, n429: int
) -> Phase:
    pushes = _pushes(customers, "faults")
    every = max(1, round(1 / blocked_share)) if blocked_share > 0 else 0
    blocked = {p.chat_id for i, p in enumerate(pushes) if every and i % every == every - 1}
    injected = 0

    async def inject(progress: Progress) -> None:
        # Faults spread over the run rather than all at its start: 429s at even fractions,
        # a burst of five 500s every tenth of the way.
        nonlocal injected
        marks = sorted(
            {(k / (n429 + 1), "429") for k in range(1, n429 + 1)}
            | {(k / 10, "500") for k in range(1, 10)}
        )
        for fraction, kind in marks:
            await progress.reached(fraction * customers)
            if kind == "429":
                api.fail_next("sendMessage", 429, retry_after=1)
                injected += 1
            else:
                api.fail_next("sendMessage", 500, times=5)

    async with FakeBotAPI(global_rate=rate, per_chat_rate=1) as api:
        api.blocked |= blocked
        phase = await _campaign(api, pushes, config, inject)
    phase.injected_429 = injected
    lost = [p for p in pushes if p.chat_id not in blocked and phase.delivered[p.chat_id] != 1]
    not_unreachable = [
        p for p in pushes if p.chat_id in blocked and phase.outcomes[p.key] != Outcome.UNREACHABLE
    ]
    phase.notes += [
        f"blocked chats: {len(blocked)}",
        f"deliverable not delivered exactly once: {len(lost)}",
        f"blocked not reported unreachable: {len(not_unreachable)}",
    ]
    return phase


def _duplicates(phase: Phase) -> int:
    return sum(n - 1 for n in phase.delivered.values() if n > 1)


def _line(f: Figure) -> str:
    if f.value == int(f.value) and not f.unit.endswith("/s"):
        goal = f"  (goal {f.goal}: {'met' if f.met else 'NOT met'})" if f.goal else ""
        return f"{f.name}: {int(f.value)}{' ' + f.unit if f.unit else ''}{goal}"
    return f.line()


async def run(
    customers: int = 20_000,
    rate: float = 500.0,
    factor: float = 0.96,
    blocked: float = 0.02,
    n429: int = 3,
    concurrency: int = 16,
) -> list[Figure]:
    configured = rate * factor
    # Fast retries: the benchmark is about pacing, not about waiting out backoffs.
    config = SenderConfig(
        global_rate=configured, per_chat_interval=1.0, concurrency=concurrency, backoff_base=0.2
    )
    print(
        f"== dispatch: {customers} customers, fake limit {rate:g}/s overall and 1/s per chat, "
        f"sender at {configured:g}/s",
        flush=True,
    )

    print("-- phase 1: clean", flush=True)
    clean = await phase_clean(customers, rate, config)
    s = clean.stats
    ratio = s.rate / configured
    print(
        f"   sent {s.sent} in {s.elapsed:.1f}s: {s.rate:.1f} msg/s "
        f"(fake saw {clean.server_rate:.1f} msg/s), ratio to configured {ratio:.3f}; "
        f"429s: {clean.count_429}; failed {s.failed}, retries {s.retries}",
        flush=True,
    )

    print("-- phase 2: 403s, 429s and 500s", flush=True)
    faults = await phase_faults(customers, rate, config, blocked, n429)
    f = faults.stats
    print(
        f"   sent {f.sent}, unreachable {f.unreachable}, failed {f.failed} in {f.elapsed:.1f}s: "
        f"{f.rate:.1f} msg/s; 429s {faults.count_429} (injected {faults.injected_429}), "
        f"paused {f.pauses}x for {f.paused_seconds:.1f}s, retries {f.retries}",
        flush=True,
    )
    for note in faults.notes:
        print(f"   {note}", flush=True)
    lost = int(faults.notes[1].rsplit(":", 1)[1])
    misreported = int(faults.notes[2].rsplit(":", 1)[1])
    return [
        judged("dispatch_rate", s.rate, "msg/s"),
        judged("dispatch_rate_ratio", round(ratio, 3), goal=">= 0.95"),
        judged("dispatch_429", clean.count_429, goal="== 0"),
        judged("dispatch_faults_rate", f.rate, "msg/s"),
        judged(
            "dispatch_faults_unplanned_429", faults.count_429 - faults.injected_429, goal="== 0"
        ),
        judged("dispatch_faults_lost", lost + misreported, goal="== 0"),
        judged("dispatch_duplicates", _duplicates(clean) + _duplicates(faults), goal="== 0"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dispatch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0, help="the fake's global limit")
    parser.add_argument("--factor", type=float, default=0.96, help="sender rate / limit")
    parser.add_argument("--blocked", type=float, default=0.02, help="share of blocked chats")
    parser.add_argument("--injected-429", type=int, default=3, dest="n429")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    t = time.perf_counter()
    figures = asyncio.run(
        run(args.customers, args.rate, args.factor, args.blocked, args.n429, args.concurrency)
    )
    print(f"   ({time.perf_counter() - t:.1f}s)\n== summary")
    for fig in figures:
        print(_line(fig))
    if args.json:
        meta = {
            "command": "python -m bench.dispatch "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": started.isoformat(timespec="seconds"),
            "machine": machine(),
        }
        write_json(args.json, figures, meta)
        print(f"figures written to {args.json}")
    correctness = ("dispatch_429", "dispatch_faults_unplanned_429", "dispatch_faults_lost",
                   "dispatch_duplicates")  # fmt: skip
    return 1 if any(f.name in correctness and f.met is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
