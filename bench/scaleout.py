"""Benchmark: three instances behave as one, while one is SIGKILLed and another restarted.

    python -m bench scaleout [--size tiny|default] [--json FILE]
    python -m bench.scaleout [--size tiny|default] [--workdir DIR]

Real ``contactbot run --webhook`` processes on one PostgreSQL database and one Redis,
behind the round-robin balancer of tests/multi/conftest.py, with Telegram played by the
fake Bot API and that harness's poster (which retries a 502 or 503 as Telegram does):

1. **Throughput, 1 instance.** ``tp_pairs`` customers, each in an assigned chat with their
   own agent, send ``tp_updates`` messages at once; Telegram posts them with 40 connections
   (its default ``max_connections``). Measured: updates handled per second (first POST to
   the last inbox row ``done``), the bot processes' CPU per update, and how many of the
   machine's cores were busy (all processes: bot, PostgreSQL, Redis, this driver).
2. **Throughput, 3 instances.** Two more instances start; the same again with new pairs.
   On a 2-core machine three instances cannot be three times one: the CPU figures show why.
3. **The busy hour, with chaos.** ``customers`` VIP customers write ``messages`` messages
   each (the first opens a chat and pages every online agent); ``agents`` agents with
   ``max_chats`` slots each (exactly enough for everyone) press the Claim buttons they are
   paged with (each with probability ``press_p``: several agents race for most chats) and
   send ``/next`` every few seconds while chats wait. Telegram posts with 20 connections. A
   third of the way in inst-0 is SIGKILLed (it stays dead); two thirds in inst-1 gets a
   SIGTERM and is started again. (``--size tiny`` does the kill and the SIGTERM between
   the busy hour's halves, on a quiet cluster: it is a smoke test of the benchmark; the
   guarantees under a kill mid-traffic are tests/multi/test_kill.py's.)
4. **Quiet.** Everything Telegram got a 2xx for is handled, every chat is claimed and the
   delivery queue is empty (bounded), then the judging:

* lost / duplicated / misrouted: each customer message ``[c<i>#<s>]`` must be copied into
  the chat of the agent who holds the conversation, once. The one duplicate docs/delivery.md
  allows (a copy in flight at the SIGKILL, sent again after its lease) is reported apart;
* reordered: with concurrent posting, the order promised is "stored before sent -> handled
  before" (tests/multi/conftest.py): a message shown before one that was stored before it
  was sent counts. Arrivals out of update_id order are reported too (no goal: Telegram
  itself does not order concurrent webhook requests);
* double claims: a conversation that more than one agent was told "You took";
* agents over capacity: agents told "You took" more chats than ``max_chats`` (nobody closes
  a chat here), or seen in the database holding more, sampled every half second;
* updates lost: accepted by the webhook (2xx) but not ``done`` in the inbox.

PostgreSQL and Redis: ``CONTACTBOT_BENCH_PG_URL`` (its ``public`` schema is dropped and
recreated!) and ``CONTACTBOT_BENCH_REDIS_URL`` (flushed!), else the tests' variables
``CONTACTBOT_TEST_PG_URL`` / ``CONTACTBOT_TEST_REDIS_URL``; without them it is skipped with
the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Figure, judged
from tests.multi.conftest import Cluster, cluster, copies, last_update_id, order_violations

PG_ENVS = ("CONTACTBOT_BENCH_PG_URL", "CONTACTBOT_TEST_PG_URL")
REDIS_ENVS = ("CONTACTBOT_BENCH_REDIS_URL", "CONTACTBOT_TEST_REDIS_URL")
SEED = 20260415
TP_CUSTOMER = 6_000_000  # throughput pair k: customer TP_CUSTOMER + k, agent TP_AGENT + k
TP_AGENT = 8_000_000
CUSTOMER = 7_000_000  # busy hour: customer i is CUSTOMER + i, agent j is AGENT + j
AGENT = 9_000_000
TAG = re.compile(r"^\[c(\d+)#(\d+)\]")
TOOK = re.compile(r"You took chat <b>#(\d+) ")
REACTION_S = 0.5  # an agent presses Claim no sooner than this after being paged
NEXT_EVERY_S = 3.0  # agents send /next this often while chats wait


@dataclass(frozen=True)
class Size:
    customers: int
    messages: int  # per customer, the first included
    agents: int
    max_chats: int
    press_p: float
    open_s: float  # the customers' first messages are spread over this many seconds
    exchange_s: float  # and the rest over this many
    tp_pairs: int
    tp_updates: int
    chaos_mid_traffic: bool
    settle_s: float

    @property
    def total(self) -> int:
        return self.customers * self.messages


SIZES = {
    "tiny": Size(
        customers=8, messages=3, agents=2, max_chats=4, press_p=0.6, open_s=2, exchange_s=3,
        tp_pairs=6, tp_updates=30, chaos_mid_traffic=False, settle_s=120,
    ),
    "default": Size(
        customers=300, messages=10, agents=10, max_chats=30, press_p=0.3, open_s=20,
        exchange_s=100, tp_pairs=50, tp_updates=600, chaos_mid_traffic=True, settle_s=420,
    ),
}  # fmt: skip


def _env(names: tuple[str, ...]) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


def _lock_seconds() -> float:
    try:
        from bot.intake import LOCK_SECONDS  # type: ignore[attr-defined]
    except ImportError:
        return 0.0
    return float(LOCK_SECONDS)


# ------------------------------------------------------------------ CPU


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


@dataclass
class Meter:
    """CPU of the bot processes, of this driver and of the machine over a stretch of time."""

    c: Cluster
    t0: float = 0.0
    bots0: float = 0.0
    me0: float = 0.0
    busy0: int = 0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.bots0 = sum(i.cpu_total() for i in self.c.instances)
        self.me0 = time.process_time()
        self.busy0 = _machine_jiffies()[0]

    def stop(self) -> tuple[float, float, float, float]:
        """(seconds, bot CPU s, driver CPU s, busy cores on average)."""
        wall = time.monotonic() - self.t0
        bots = sum(i.cpu_total() for i in self.c.instances) - self.bots0
        me = time.process_time() - self.me0
        busy = (_machine_jiffies()[0] - self.busy0) / os.sysconf("SC_CLK_TCK")
        return wall, bots, me, busy / wall if wall else 0.0


# ------------------------------------------------------------------ throughput


async def throughput(c: Cluster, size: Size, first_pair: int, label: str) -> list[Figure]:
    pairs = range(first_pair, first_pair + size.tp_pairs)
    for k in pairs:
        customer = await c.add_customer(TP_CUSTOMER + k, name=f"TP customer {k}")
        await c.open_chat(customer, await c.add_agent(TP_AGENT + k, f"TP agent {k}"))
    await c.telegram.set_connections(40)
    c.telegram.pause()
    ids = []
    for n in range(size.tp_updates):
        k = first_pair + n % size.tp_pairs
        c.api.user_message(TP_CUSTOMER + k, f"throughput {n}", first_name=f"TP {k}")
        ids.append(last_update_id(c.api))
    c.telegram.feed()
    meter = Meter(c)
    meter.start()
    c.telegram.resume()
    # Handled and relayed: the copies in the agents' chats are part of an update's work.
    await c.wait_handled(ids, timeout=600, idle=0.0)
    await c.wait_deliveries(timeout=300)
    wall, bots, me, cores = meter.stop()
    rate = len(ids) / wall
    print(
        f"    {label}: {len(ids)} updates handled and relayed in {wall:.1f}s = {rate:.0f} "
        f"updates/s; bot CPU "
        f"{1000 * bots / len(ids):.1f} ms/update ({bots / wall:.2f} cores), driver "
        f"{me / wall:.2f} cores, machine {cores:.2f} of {os.cpu_count()} cores busy",
        flush=True,
    )
    n = label.split()[0]
    return [
        Figure(f"scaleout_updates_per_s_{n}", rate, "updates/s"),
        Figure(f"scaleout_cpu_ms_per_update_{n}", 1000 * bots / len(ids), "ms"),
        Figure(f"scaleout_bot_cores_{n}", bots / wall, "cores"),
        Figure(f"scaleout_machine_cores_busy_{n}", cores, "cores"),
    ]


# ------------------------------------------------------------------ the busy hour


@dataclass
class Agents:
    """The agents' side: press Claim on pages (some of them), /next while chats wait."""

    c: Cluster
    size: Size
    rng: random.Random
    scanned: int = 0
    presses: int = 0
    nexts: int = 0
    over_capacity_seen: int = 0  # max over samples of agents holding more than max_chats
    last_next: dict[int, int] = dataclasses.field(default_factory=dict)  # agent -> update id

    async def run(self) -> None:
        due: list[tuple[float, int, int, str]] = []
        last_next = time.monotonic()
        agents = {AGENT + j for j in range(self.size.agents)}
        while True:
            calls = self.c.api.calls
            end = len(calls)
            for call in calls[self.scanned : end]:
                if (
                    call.ok
                    and call.method == "sendMessage"
                    and call.chat_id in agents
                    and "claim:" in str(call.params.get("reply_markup"))
                    and self.rng.random() < self.size.press_p
                ):
                    data = call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                    mid = int(call.result["message_id"])
                    due.append((time.monotonic() + REACTION_S, call.chat_id, mid, data))
            self.scanned = end
            now = time.monotonic()
            for item in [d for d in due if d[0] <= now]:
                due.remove(item)
                self.c.api.press(item[1], item[2], item[3])
                self.presses += 1
            if now - last_next >= NEXT_EVERY_S:
                last_next = now
                waiting = await self.c.sql(
                    "SELECT count(*) FROM conversations WHERE status = 'queued'"
                )
                if waiting[0][0]:
                    # A person clicks /next again only once the last one was answered: a
                    # slow bot must not be flooded with the agents' retries.
                    answered = await self.c.inbox(self.last_next.values())
                    for a in sorted(agents):
                        last = self.last_next.get(a)
                        if last is None or answered.get(last) == "done":
                            self.c.api.user_message(a, "/next")
                            self.last_next[a] = last_update_id(self.c.api)
                            self.nexts += 1
                over = await self.c.sql(
                    "SELECT count(*) FROM (SELECT a.id FROM agents a JOIN conversations cv "
                    "ON cv.agent_id = a.id AND cv.status = 'assigned' "
                    "GROUP BY a.id, a.max_chats HAVING count(*) > a.max_chats) x"
                )
                self.over_capacity_seen = max(self.over_capacity_seen, int(over[0][0]))
            await asyncio.sleep(0.1)


async def busy_hour(c: Cluster, size: Size, rng: random.Random) -> list[Figure]:
    for j in range(size.agents):
        await c.add_agent(AGENT + j, f"Agent {j}", online=True, max_chats=size.max_chats)
    for i in range(size.customers):
        await c.add_customer(CUSTOMER + i, tier="VIP", name=f"Customer {i}")
    await c.telegram.set_connections(20)
    schedule: list[tuple[float, int, int]] = []
    for i in range(size.customers):
        schedule.append((rng.uniform(0, size.open_s), i, 0))
        later = sorted(
            rng.uniform(size.open_s, size.open_s + size.exchange_s)
            for _ in range(size.messages - 1)
        )
        schedule += [(t, i, s + 1) for s, t in enumerate(later)]
    schedule.sort()
    span = size.open_s + size.exchange_s
    chaos = [(span / 3, "kill"), (2 * span / 3, "term")] if size.chaos_mid_traffic else []

    sent_at: dict[tuple[int, int], float] = {}
    update_of: dict[tuple[int, int], int] = {}
    agents = Agents(c, size, random.Random(SEED + 1))
    presser = asyncio.create_task(agents.run())
    events: list[str] = []
    restart: asyncio.Task[None] | None = None
    kill_at = -1e9
    t0 = time.monotonic()

    async def do(what: str) -> None:
        nonlocal kill_at, restart
        moment = time.monotonic() - t0
        if what == "kill":
            kill_at = time.monotonic()
            await c.instances[0].kill()
            events.append(f"{moment:.1f}s SIGKILL inst-0 (stays dead)")
        else:
            rc, took = await c.instances[1].term()
            events.append(f"{moment:.1f}s SIGTERM inst-1: exit {rc} in {took:.1f}s")

            async def again() -> None:
                t = time.monotonic()
                await c.instances[1].start()
                await c.instances[1].wait_up()
                events.append(f"inst-1 up again {time.monotonic() - t:.1f}s after its exit")

            restart = asyncio.create_task(again())
        print(f"    chaos: {events[-1]}", flush=True)

    meter = Meter(c)
    meter.start()
    for n, (at, i, s) in enumerate(schedule):
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        while chaos and t0 + chaos[0][0] <= time.monotonic():
            await do(chaos.pop(0)[1])
        if not size.chaos_mid_traffic and n == len(schedule) // 2:
            # tiny: the kill and the SIGTERM on a quiet cluster, between the two halves.
            await c.telegram.settle(timeout=120)
            await c.wait_handled(c.telegram.accepted_ids, timeout=120, idle=0.5)
            await do("kill")
            await do("term")
        c.api.user_message(CUSTOMER + i, f"[c{i}#{s}] message {s}", first_name=f"Customer {i}")
        sent_at[(i, s)] = time.monotonic()
        update_of[(i, s)] = last_update_id(c.api)
    for _, what in chaos:
        await do(what)
    sent_s = time.monotonic() - t0
    print(f"    {len(schedule)} messages sent in {sent_s:.1f}s", flush=True)

    # --- quiet ---------------------------------------------------------------------------
    bound = size.settle_s + _lock_seconds()
    if restart is not None:
        await restart
    deadline = time.monotonic() + bound
    while True:
        await c.telegram.settle(timeout=max(1.0, deadline - time.monotonic()))
        waiting = await c.sql("SELECT count(*) FROM conversations WHERE status = 'queued'")
        inbox = await c.sql("SELECT count(*) FROM inbound_updates WHERE status = 'pending'")
        if not waiting[0][0] and not inbox[0][0] and not c.api.pending_updates:
            break
        if time.monotonic() > deadline:
            print(f"    not quiet within {bound:.0f}s: {waiting[0][0]} chats still queued")
            break
        await asyncio.sleep(1.0)
    presser.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await presser
    await c.telegram.settle(timeout=60)
    await _bounded(c.wait_handled(c.telegram.accepted_ids, timeout=60, idle=0.5))
    await _bounded(c.wait_deliveries(timeout=max(30.0, deadline - time.monotonic())))
    await _bounded(c.api.wait_idle(quiet=2.0, timeout=30))
    wall, bots, _me, cores = meter.stop()
    return await judge(c, size, sent_at, update_of, agents, events, kill_at, t0, wall, bots, cores)


async def _bounded(wait: Any) -> None:
    """Await a bounded wait; if its bound runs out, say so (the judging tells the rest)."""
    try:
        await wait
    except AssertionError as exc:
        print(f"    {str(exc).splitlines()[0]}", flush=True)


# ------------------------------------------------------------------ judging


async def judge(
    c: Cluster,
    size: Size,
    sent_at: dict[tuple[int, int], float],
    update_of: dict[tuple[int, int], int],
    agents: Agents,
    events: list[str],
    kill_at: float,
    t0: float,
    wall: float,
    bots: float,
    cores: float,
) -> list[Figure]:
    holder: dict[int, int] = {
        int(tg) - CUSTOMER: int(atg)
        for tg, atg in await c.sql(
            "SELECT cu.telegram_id, a.telegram_id FROM conversations cv "
            "JOIN customers cu ON cu.id = cv.customer_id JOIN agents a ON a.id = cv.agent_id "
            "WHERE cv.status = 'assigned' AND cu.telegram_id >= :lo",
            lo=CUSTOMER,
        )
    }
    arrivals: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    shown: dict[int, list[int]] = defaultdict(list)  # customer -> seqs in the holder's chat
    took: dict[int, set[int]] = defaultdict(set)  # conversation -> agents told "You took"
    won: dict[int, set[int]] = defaultdict(set)  # agent -> conversations
    for j in range(size.agents):
        chat = AGENT + j
        for text, at in copies(c.api, chat):
            if m := TAG.match(text):
                i, s = int(m[1]), int(m[2])
                arrivals[(i, s)].append((chat, at))
                if holder.get(i) == chat:
                    shown[i].append(s)
        for call in c.api.calls_of("sendMessage", chat):
            if call.ok and (m := TOOK.search(call.text or "")):
                took[int(m[1])].add(chat)
                won[chat].add(int(m[1]))
    lost, duplicated, caveat, misrouted, delays = [], [], [], [], []
    for (i, s), at in sent_at.items():
        got = arrivals.get((i, s), [])
        name = f"c{i}#{s}"
        if not got:
            lost.append(name)
            continue
        if len(got) > 1:
            first = min(a for _, a in got)
            (caveat if kill_at - 2.0 <= first <= kill_at else duplicated).append(
                f"{name} x{len(got)}"
            )
        misrouted += [f"{name} in {chat}" for chat, _ in got if chat != holder.get(i)]
        delays.append(min(a for _, a in got) - at)
    reordered, out_of_id_order = [], 0
    for i, seqs in shown.items():
        firsts = list(dict.fromkeys(seqs))
        ids = [update_of[(i, s)] for s in firsts]
        out_of_id_order += sum(1 for a, b in itertools.pairwise(ids) if a > b)
        reordered += [f"c{i}: {v}" for v in order_violations(ids, c.telegram)]
    accepted = c.telegram.accepted_ids
    inbox = await c.inbox()
    not_done = [u for u in accepted if inbox.get(u) != "done"]
    double = [f"#{conv}: {sorted(a)}" for conv, a in took.items() if len(a) > 1]
    over = [f"{a}: {len(convs)}" for a, convs in won.items() if len(convs) > size.max_chats]
    unclaimed = size.customers - len(holder)

    delays.sort()
    p50 = delays[len(delays) // 2] if delays else float("nan")
    print(
        f"    {len(sent_at)} messages from {size.customers} customers, {len(accepted)} updates "
        f"accepted ({c.telegram.retried()} retried by Telegram), {agents.presses} Claim "
        f"presses, {agents.nexts} /next; balancer answered {dict(c.balancer.forwarded)}, "
        f"could not reach {dict(c.balancer.unreachable)}; {unclaimed} chats unclaimed; "
        f"delay median {p50:.2f}s, max {max(delays, default=float('nan')):.1f}s; "
        f"bot CPU {1000 * bots / max(1, len(accepted)):.1f} ms/update; "
        f"machine {cores:.2f} cores busy over {wall:.0f}s",
        flush=True,
    )
    print(f"    chaos: {'; '.join(events)}")
    for label, items in (
        ("lost", lost),
        ("duplicated", duplicated),
        ("duplicated by the SIGKILL caveat", caveat),
        ("misrouted", misrouted),
        ("reordered", reordered),
        ("updates not done", [str(u) for u in not_done]),
        ("double claims", double),
        ("agents over capacity", over),
    ):
        if items:
            print(f"    {label}: {', '.join(items[:12])}{' ...' if len(items) > 12 else ''}")
    if lost or duplicated or reordered or not_done or double or over:
        print(f"    logs in {c.workdir}")
    p = "scaleout"
    return [
        Figure(f"{p}_messages", float(len(sent_at)), "messages"),
        Figure(f"{p}_customers", float(size.customers), "customers"),
        judged(f"{p}_lost", float(len(lost)), "messages", "== 0"),
        judged(f"{p}_duplicated", float(len(duplicated)), "messages", "== 0"),
        Figure(f"{p}_duplicated_sigkill_caveat", float(len(caveat)), "messages"),
        judged(f"{p}_reordered", float(len(reordered)), "messages", "== 0"),
        judged(f"{p}_misrouted", float(len(misrouted)), "messages", "== 0"),
        Figure(f"{p}_out_of_update_id_order", float(out_of_id_order), "messages"),
        judged(f"{p}_updates_lost", float(len(not_done)), "updates", "== 0"),
        judged(f"{p}_double_claims", float(len(double)), "chats", "== 0"),
        judged(
            f"{p}_agents_over_capacity",
            float(max(len(over), agents.over_capacity_seen)),
            "agents",
            "== 0",
        ),
        judged(f"{p}_unclaimed", float(unclaimed), "chats", "== 0"),
        Figure(f"{p}_median_delay_s", p50, "s"),
        Figure(f"{p}_max_delay_s", max(delays, default=float("nan")), "s"),
        Figure(f"{p}_updates", float(len(accepted)), "updates"),
        Figure(f"{p}_claim_presses", float(agents.presses), "presses"),
    ]


def is_correctness(figure: Figure) -> bool:
    """A scaleout figure whose goal is a guarantee (nothing lost, doubled, reordered ...)."""
    return figure.name.startswith("scaleout_") and figure.goal == "== 0"


# ------------------------------------------------------------------ the run


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    pg, redis = _env(PG_ENVS), _env(REDIS_ENVS)
    if not pg or not redis:
        print(
            f"  scaleout: skipped (needs {PG_ENVS[0]} or {PG_ENVS[1]}, and {REDIS_ENVS[0]} "
            f"or {REDIS_ENVS[1]})"
        )
        return []
    print(
        f"  scaleout: {size.customers} customers x {size.messages} messages, {size.agents} "
        f"agents x {size.max_chats} chats, 3 instances; throughput {size.tp_updates} updates "
        f"with 1 and with 3 instances",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="contactbot-scaleout-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        async with cluster(
            wd, n=3, db_url=pg, redis_url=redis, start=False, max_connections=40
        ) as c:
            all_instances = list(c.instances)
            c.balancer.instances = all_instances[:1]
            await all_instances[0].start()
            up = await all_instances[0].wait_up()
            print(f"    inst-0 up in {up:.1f}s", flush=True)
            figures = await throughput(c, size, 0, "1 instance")
            for inst in all_instances[1:]:
                await inst.start()
            ups = await asyncio.gather(*(i.wait_up() for i in all_instances[1:]))
            c.balancer.instances = all_instances
            print(f"    inst-1, inst-2 up in {max(ups):.1f}s", flush=True)
            figures += await throughput(c, size, size.tp_pairs, "3 instances")
            one = next(f.value for f in figures if f.name == "scaleout_updates_per_s_1")
            three = next(f.value for f in figures if f.name == "scaleout_updates_per_s_3")
            figures.append(Figure("scaleout_speedup_3_over_1", three / one, "x"))
            figures += await busy_hour(c, size, random.Random(SEED))
            if workdir is None:
                keep = Path(tempfile.gettempdir()) / "contactbot-scaleout-logs"
                keep.mkdir(exist_ok=True)
                for inst in all_instances:
                    (keep / inst.log_path.name).write_bytes(inst.log_path.read_bytes())
                print(f"    bot logs kept in {keep}")
    figures.append(Figure("scaleout_run_s", time.monotonic() - started, "s"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=list(SIZES), default="default")
    parser.add_argument("--workdir", type=Path, help="keep the bot logs here")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.size, args.workdir))
    print("== summary")
    for f in figures:
        print(f.line())
    return 1 if any(is_correctness(f) and f.met is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
