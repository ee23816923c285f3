"""Benchmark: every message delivered, under kills, an outage and Telegram's flood limits.

    python -m bench chaos [--size tiny|default] [--backend sqlite|postgresql|both] [--json FILE]
    python -m bench.chaos [--size tiny|default] [--backend ...]

A contact centre's busy hour, run against the real bot process (``python -m bot run``) and
the fake Bot API with Telegram's limits (one message per second per chat, 30 per second
overall, answered with 429 and ``retry_after`` like api.telegram.org):

1. **Queue.** Every customer (all VIP: each message goes to a person) writes while no agent
   is online yet; each first message opens a chat and waits in the queue.
2. **Shift start.** The agents come ``/online`` and work the queue with ``/next`` (each keeps
   claiming while chats wait), so each ends up holding about customers/agents chats.
3. **Exchange, with chaos.** Customers keep writing and agents answer, each agent only to
   customers they hold and always by replying to that customer's last message relayed into
   their chat (so the addressing is unambiguous with many chats open). Meanwhile the fake
   goes down (every method, getUpdates included, answers 502) for ``outage_s`` seconds and
   the bot is SIGKILLed ``kills`` times and SIGTERMed ``terms`` times at random moments. A
   supervisor restarts it after every exit, as systemd's ``Restart=always`` with
   ``RestartSec=1`` would (a start during the outage fails its Bot API check, exits 3 and is
   restarted again).
4. **Quiet.** The driver waits (bounded) until every message arrived, the bot's delivery
   queue and inbox are empty and the fake saw no call for a while, then stops the bot.

Every message carries a unique tag: ``[c<customer>#<seq>]`` from a customer, and
``[a<agent>-<customer>#<seq>]`` from an agent. Arrivals are what the other side's chat in the
fake holds: the messages the bot *copied* there (copyMessage / copyMessages; the paging
previews and headers the bot writes itself do not count). Each way it reports messages sent,
lost (never arrived), duplicated (arrived more than once), out of order (arrived after a
later message of the same sender in the same conversation) and misrouted (arrived in a chat
that is not the conversation's other side); the longest and median delay (the customer or
agent sending it -> the copy arriving in the other chat, one clock); updates lost (handed out
and confirmed by ``getUpdates`` but never stored in the inbox, or stored and never handled);
the 429s, the outage's refused calls, kills and restarts. Lost, duplicated, out of order,
misrouted and updates lost must all be 0.

One kind of second copy is reported apart, as "sent again after a SIGKILL mid-send": the
first copy reached the fake at most ``IN_FLIGHT_S`` before a SIGKILL and the others after
it. That is the send whose answer the killed process never recorded, sent again when its
lease ended: delivery is at least once, and Telegram offers no idempotency key to make it
exactly once (docs/delivery.md, "Crash"). Any other second copy is a duplicate.

The orchestration reads the bot's database (is the queue empty yet, is the delivery queue
drained); the measurement never does, except for the inbox rows behind "updates lost".

The default size (300 customers, 10 agents, 3,300 messages, a 60 s outage, three kills and a
SIGTERM) takes well over ten minutes per backend (see bench/RESULTS.md), so it is not part of
``python -m bench all``; the tiny size takes one to two minutes.
PostgreSQL runs when ``CONTACTBOT_BENCH_PG_URL`` is set (its ``public`` schema is dropped
and recreated!), else it is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.common import (
    AGENT_TG,
    CUSTOMER_TG,
    NOW,
    ROOT,
    SEED,
    BenchAPI,
    Figure,
    _insert,
    _reflect,
    _upgrade_lock,
    bot_env,
    judged,
)
from routing.store.db import is_sqlite, make_engine, upgrade

PG_ENV = "CONTACTBOT_BENCH_PG_URL"
BACKENDS = ("sqlite", "postgresql")
RESTART_SECONDS = 1.0  # systemd RestartSec
REACTION_SECONDS = 1.0  # an agent answers a relayed message no sooner than this
# Bot answers in an agent's chat meaning "your message was not sent to anyone".
REFUSALS = ("so I did not send that", "no longer yours", "You have no open chat")

CUSTOMER_TAG = re.compile(r"^\[c(\d+)#(\d+)\]")
AGENT_TAG = re.compile(r"^\[a(\d+)-(\d+)#(\d+)\]")
CUSTOMER_LINES = (
    "my parcel is still not here",
    "the tracking page says delivered",
    "can you check with the courier?",
    "I need it before Friday",
    "order number is in my first message",
)
AGENT_LINES = (
    "let me check that for you",
    "I am on it",
    "the courier confirms it is on its way",
    "I have asked the warehouse",
    "thanks for waiting",
    "I will update you shortly",
    "here is what I found",
)


@dataclass(frozen=True)
class Size:
    customers: int
    agents: int
    to_agent: int  # messages each customer writes (the first opens the chat)
    to_customer: int  # messages each customer gets from their agent
    exchange_s: float  # the exchange's messages are spread over this many seconds
    outage_s: float
    kills: int  # SIGKILLs
    terms: int  # SIGTERMs
    settle_s: float  # bound on waiting for quiet once everything was sent
    open_s: float  # customers' first messages are spread over this many seconds

    @property
    def messages(self) -> int:
        return self.customers * (self.to_agent + self.to_customer)


SIZES = {
    "tiny": Size(
        customers=12, agents=4, to_agent=3, to_customer=14, exchange_s=12, outage_s=3,
        kills=1, terms=1, settle_s=150, open_s=2,
    ),
    "default": Size(
        customers=300, agents=10, to_agent=4, to_customer=7, exchange_s=200, outage_s=60,
        kills=3, terms=1, settle_s=900, open_s=15,
    ),
}  # fmt: skip


def customer_tg(i: int) -> int:
    return CUSTOMER_TG + i


def agent_tg(j: int) -> int:
    return AGENT_TG + j


# ------------------------------------------------------------------ the database


async def prepare_db(url: str, size: Size) -> None:
    """A fresh, migrated database with ``size.customers`` VIP customers and offline agents."""
    if is_sqlite(url):
        path = url.split("///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
    else:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()
    now = NOW.replace(tzinfo=None)
    customers = [
        {
            "id": i + 1,
            "external_id": f"CH{i:06d}",
            "name": f"Customer {i}",
            "telegram_id": customer_tg(i),
            "language": "en",
            "account_manager": None,  # no manager-first window: any agent may take any chat
            "tier": "VIP",
            "spend_12m": 1_000_000.0,
            "is_guest": False,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(size.customers)
    ]
    agents = [
        {
            "id": j + 1,
            "telegram_id": agent_tg(j),
            "name": f"Agent {j}",
            "role": "agent",
            "max_chats": 1000,
            "online": False,  # they come /online at the start of the shift
            "active": True,
            "created_at": NOW,
        }
        for j in range(size.agents)
    ]
    engine = make_engine(url)
    try:
        async with _upgrade_lock():
            await upgrade(engine)
        async with engine.begin() as conn:
            with warnings.catch_warnings():
                # SQLite: "Skipped unsupported reflection of expression-based index".
                warnings.simplefilter("ignore", SAWarning)
                tables = await conn.run_sync(_reflect)
            await _insert(conn, tables["customers"], customers)
            await _insert(conn, tables["agents"], agents)
    finally:
        await engine.dispose()


class Probe:
    """Read-only questions to the bot's database, for orchestration and the inbox check."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite_path = url.split("///", 1)[1] if is_sqlite(url) else None
        self.engine: AsyncEngine | None = (
            None if self.sqlite_path else create_async_engine(url, poolclass=NullPool)
        )

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            con = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=30)
            try:
                return [tuple(r) for r in con.execute(sql).fetchall()]
            finally:
                con.close()
        assert self.engine is not None
        async with self.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

    async def conversations(self) -> dict[str, int]:
        rows = await self.rows("SELECT status, count(*) FROM conversations GROUP BY status")
        return {str(s): int(n) for s, n in rows}

    async def backlog(self) -> tuple[int, int]:
        """(delivery rows not yet sent or failed, inbox rows not yet handled)."""
        d = await self.rows(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"
        )
        i = await self.rows("SELECT count(*) FROM inbound_updates WHERE status = 'pending'")
        return int(d[0][0]), int(i[0][0])

    async def inbox(self) -> dict[int, str]:
        return {int(u): str(s) for u, s in await self.rows(
            "SELECT update_id, status FROM inbound_updates")}  # fmt: skip

    async def handled(self, update_ids: list[int]) -> set[int]:
        """Which of these updates the bot has handled (or quarantined)."""
        if not update_ids:
            return set()
        ids = ", ".join(str(int(u)) for u in update_ids)
        rows = await self.rows(
            f"SELECT update_id FROM inbound_updates WHERE update_id IN ({ids}) "
            "AND status <> 'pending'"
        )
        return {int(r[0]) for r in rows}

    async def failed_deliveries(self) -> list[tuple[Any, ...]]:
        return await self.rows(
            "SELECT id, conversation_id, direction, error FROM deliveries WHERE status = 'failed'"
        )

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()


# ------------------------------------------------------------------ the bot under systemd


class Supervisor:
    """Runs ``python -m bot run`` like systemd with ``Restart=always``: after every exit
    (a kill, a SIGTERM, a failed start) it starts it again ``RESTART_SECONDS`` later."""

    def __init__(self, api: BenchAPI, db_url: str, log_path: Path) -> None:
        self.api = api
        self.db_url = db_url
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exits: list[int] = []
        self.kills = 0
        self.kill_times: list[float] = []  # time.monotonic() of each SIGKILL
        self.terms = 0
        self.term_seconds: list[float] = []  # SIGTERM -> exit
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None
        self._changed = asyncio.Event()

    def note(self, line: str) -> None:
        if self._log is not None:
            self._log.write(f"=== chaos {time.strftime('%H:%M:%S')} {line}\n".encode())
            self._log.flush()

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._task = asyncio.create_task(self._loop())
        mark = self.api.mark()
        try:
            # deleteWebhook is the last call before the first long poll.
            await self.api.wait_for("deleteWebhook", since=mark, timeout=60)
        except AssertionError:
            raise RuntimeError(f"bot did not start polling:\n{self.log()[-3000:]}") from None

    async def _loop(self) -> None:
        while not self._stopping:
            self.starts += 1
            self.note(f"start #{self.starts}")
            assert self._log is not None
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run",
                env=bot_env(self.api.url, self.db_url), cwd=ROOT,
                stdout=self._log, stderr=self._log,
            )  # fmt: skip
            self._changed.set()
            rc = await self.proc.wait()
            self.exits.append(rc)
            self.note(f"exit {rc}")
            self.proc = None
            self._changed.set()
            if self._stopping:
                break
            await asyncio.sleep(RESTART_SECONDS)

    async def _running(self) -> asyncio.subprocess.Process:
        while self.proc is None or self.proc.returncode is not None:
            self._changed.clear()
            await self._changed.wait()
        return self.proc

    async def kill(self) -> None:
        proc = await self._running()
        self.note(f"SIGKILL pid {proc.pid}")
        self.kill_times.append(time.monotonic())
        proc.send_signal(signal.SIGKILL)
        self.kills += 1
        await proc.wait()

    async def term(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        proc = await self._running()
        self.note(f"SIGTERM pid {proc.pid}")
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.terms += 1
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            self.note("SIGTERM not obeyed: SIGKILL")
            proc.kill()
            await proc.wait()
        self.term_seconds.append(time.monotonic() - t)

    async def stop(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
        if self._task is not None:
            await self._task
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ------------------------------------------------------------------ what arrived where


@dataclass
class Arrival:
    chat: int
    message_id: int
    at: float


@dataclass
class Ledger:
    """What was sent (by tag) and what arrived (copies the bot made), kept up to date."""

    api: BenchAPI
    sent_at: dict[tuple[Any, ...], float] = field(default_factory=dict)
    arrivals: dict[tuple[Any, ...], list[Arrival]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # (agent chat, customer) -> message ids of that customer's messages copied there
    copies: dict[tuple[int, int], list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    holder: dict[int, int] = field(default_factory=dict)  # customer -> agent chat
    refusals: list[str] = field(default_factory=list)
    update_ids: list[int] = field(default_factory=list)
    next_seq: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    _scanned: int = 0

    def customer_says(self, i: int, line: str) -> None:
        s = self.next_seq[("c", i)]
        self.next_seq[("c", i)] += 1
        self.api.user_message(customer_tg(i), f"[c{i}#{s}] {line}", first_name=f"Customer {i}")
        self.sent_at[("c", i, s)] = time.monotonic()
        self.update_ids.append(self.api._next_update_id - 1)

    def agent_says(self, j: int, i: int, line: str, reply_to: int) -> None:
        s = self.next_seq[("a", i)]
        self.next_seq[("a", i)] += 1
        self.api.user_message(
            agent_tg(j), f"[a{j}-{i}#{s}] {line}", first_name=f"Agent {j}",
            reply_to_message_id=reply_to,
        )  # fmt: skip
        self.sent_at[("a", i, s)] = time.monotonic()
        self.update_ids.append(self.api._next_update_id - 1)

    def command(self, uid: int, text_: str) -> None:
        self.api.user_message(uid, text_)
        self.update_ids.append(self.api._next_update_id - 1)

    def scan(self) -> None:
        """Read the fake's calls made since the last scan."""
        calls = self.api.calls
        end = len(calls)
        for call in calls[self._scanned : end]:
            if not call.ok or not isinstance(call.chat_id, int):
                continue
            if call.method in ("copyMessage", "copyMessages"):
                results = call.result if isinstance(call.result, list) else [call.result]
                for r in results:
                    self._arrived(call.chat_id, int(r["message_id"]), call.at)
            elif (
                call.method == "sendMessage"
                and AGENT_TG <= call.chat_id < CUSTOMER_TG
                and any(s in (call.text or "") for s in REFUSALS)
            ):
                self.refusals.append(f"{call.chat_id}: {(call.text or '')[:80]!r}")
        self._scanned = end

    def _arrived(self, chat: int, message_id: int, at: float) -> None:
        body = self.api.message(chat, message_id).get("text") or ""
        if m := CUSTOMER_TAG.match(body):
            i, s = int(m[1]), int(m[2])
            self.arrivals[("c", i, s)].append(Arrival(chat, message_id, at))
            self.copies[(chat, i)].append((message_id, at))
            self.holder.setdefault(i, chat)
        elif m := AGENT_TAG.match(body):
            i, s = int(m[2]), int(m[3])
            self.arrivals[("a", i, s)].append(Arrival(chat, message_id, at))

    def reply_target(self, i: int, now: float) -> tuple[int, int] | None:
        """(agent index, message id) of customer i's last message the agent has had time to
        read, or None while nothing of theirs has arrived in an agent's chat."""
        chat = self.holder.get(i)
        if chat is None:
            return None
        seen = [mid for mid, at in self.copies[(chat, i)] if now - at >= REACTION_SECONDS]
        return (chat - AGENT_TG, max(seen)) if seen else None

    def missing(self) -> int:
        return sum(1 for tag in self.sent_at if not self.arrivals.get(tag))


# ------------------------------------------------------------------ the scenario


async def _every(seconds: float, fn: Any) -> None:
    while True:
        fn()
        await asyncio.sleep(seconds)


async def claim_all(ledger: Ledger, probe: Probe, size: Size, bound: float) -> float:
    """Agents come /online, then each works the queue with /next: like a person, an agent
    sends the next /next once the bot has handled the previous one, while chats wait.
    Returns the seconds it took."""
    t0 = time.monotonic()
    outstanding: dict[int, int] = {}  # agent -> update id of their last command
    for j in range(size.agents):
        ledger.command(agent_tg(j), "/online")
        outstanding[j] = ledger.update_ids[-1]
    while True:
        await asyncio.sleep(0.5)
        counts = await probe.conversations()
        if counts.get("queued", 0) == 0 and counts.get("assigned", 0) >= size.customers:
            return time.monotonic() - t0
        if time.monotonic() - t0 > bound:
            raise RuntimeError(f"claims did not finish in {bound:.0f}s: {counts}")
        handled = await probe.handled(list(outstanding.values()))
        for j, update_id in outstanding.items():
            if update_id in handled and counts.get("queued", 0):
                ledger.command(agent_tg(j), "/next")
                outstanding[j] = ledger.update_ids[-1]


def schedule(size: Size, rng: random.Random) -> list[tuple[float, str, int]]:
    """The exchange: (seconds from its start, "c" or "a", customer), sorted by time."""
    events: list[tuple[float, str, int]] = []
    for i in range(size.customers):
        events += [(rng.uniform(0, size.exchange_s), "c", i) for _ in range(size.to_agent - 1)]
        events += [(rng.uniform(0, size.exchange_s), "a", i) for _ in range(size.to_customer)]
    events.sort()
    return events


def chaos_plan(size: Size, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds from the exchange's start, "outage" | "kill" | "term"), sorted.

    Kills and SIGTERMs fall at random moments of the exchange (at least a few seconds
    apart, so each hits a bot that has started again); the outage starts in its first third.
    """
    span = size.exchange_s
    plan = [(rng.uniform(0.1, 0.33) * span, "outage")] if size.outage_s > 0 else []
    gap = span / (size.kills + size.terms + 1) / 2
    while True:
        moments = sorted(rng.uniform(0.05, 0.95) * span for _ in range(size.kills + size.terms))
        if all(b - a >= gap for a, b in itertools.pairwise(moments)):
            break
    kinds = ["kill"] * size.kills + ["term"] * size.terms
    rng.shuffle(kinds)
    plan += list(zip(moments, kinds, strict=True))
    return sorted(plan)


async def run_chaos(
    api: BenchAPI, sup: Supervisor, plan: list[tuple[float, str]], t0: float, size: Size
) -> list[str]:
    done: list[str] = []
    for at, what in plan:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        moment = time.monotonic() - t0
        if what == "outage":
            api.outage(size.outage_s, code=502, include_get_updates=True)
            sup.note(f"outage {size.outage_s:.0f}s begins")
            done.append(f"{moment:.1f}s outage {size.outage_s:.0f}s")
        elif what == "kill":
            await sup.kill()
            done.append(f"{moment:.1f}s SIGKILL")
        else:
            await sup.term()
            done.append(f"{moment:.1f}s SIGTERM (exited in {sup.term_seconds[-1]:.1f}s)")
        print(f"    chaos: {done[-1]}", flush=True)
    return done


async def exchange(ledger: Ledger, size: Size, rng: random.Random, t0: float) -> int:
    """Send the exchange's messages on schedule. An agent's message for a customer whose
    messages they have not seen yet waits until one arrives. Returns how many waited."""
    pending = schedule(size, rng)
    waiting: dict[int, int] = defaultdict(int)  # customer -> agent messages held back
    postponed = 0
    idx = 0
    while idx < len(pending) or waiting:
        now = time.monotonic()
        while idx < len(pending) and t0 + pending[idx][0] <= now:
            _, who, i = pending[idx]
            idx += 1
            if who == "c":
                ledger.customer_says(i, rng.choice(CUSTOMER_LINES))
            else:
                if waiting[i] or ledger.reply_target(i, now) is None:
                    postponed += 1
                waiting[i] += 1
        ledger.scan()
        for i in list(waiting):
            target = ledger.reply_target(i, now)
            if target is None:
                continue
            j, mid = target
            ledger.agent_says(j, i, rng.choice(AGENT_LINES), mid)
            waiting[i] -= 1
            if not waiting[i]:
                del waiting[i]
        await asyncio.sleep(0.05 if idx < len(pending) else 0.5)
    return postponed


async def settle(ledger: Ledger, probe: Probe, api: BenchAPI, bound: float) -> float:
    """Wait until everything arrived and the bot has nothing left to do (bounded)."""
    t0 = time.monotonic()
    last = -1
    while time.monotonic() - t0 < bound:
        ledger.scan()
        missing = ledger.missing()
        if missing != last:
            print(f"    waiting for {missing} messages ({time.monotonic() - t0:.0f}s)", flush=True)
            last = missing
        if missing == 0 and not api.pending_updates and not api.in_outage:
            deliveries, inbox = await probe.backlog()
            if deliveries == 0 and inbox == 0:
                try:
                    await api.wait_idle(
                        quiet=3.0, timeout=max(1.0, bound - (time.monotonic() - t0))
                    )
                except AssertionError:
                    break
                ledger.scan()
                if ledger.missing() == 0:
                    break
        await asyncio.sleep(1.0)
    ledger.scan()
    return time.monotonic() - t0


# ------------------------------------------------------------------ judging


# A send whose answer arrived this long before a SIGKILL may not have been recorded as sent:
# its second copy after the kill is the documented at-least-once case (module docstring).
IN_FLIGHT_S = 1.0


@dataclass
class Way:
    sent: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    resent_after_kill: list[str] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    misrouted: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


def _in_flight_at_kill(got: list[Arrival], kills: Sequence[float]) -> bool:
    """The first copy reached the fake just before a SIGKILL, every other one after it."""
    first, *rest = sorted(got, key=lambda a: a.at)
    return any(k - IN_FLIGHT_S <= first.at <= k and all(a.at > k for a in rest) for k in kills)


def judge(ledger: Ledger, kills: Sequence[float] = ()) -> dict[str, Way]:
    """Each way's findings; ``kills``: the SIGKILLs' moments (``time.monotonic``, the
    fake's clock)."""
    ways = {"c": Way(), "a": Way()}
    streams: dict[tuple[str, int], list[tuple[int, int, int]]] = defaultdict(list)
    for tag, sent in ledger.sent_at.items():
        kind, i, s = tag
        way = ways[kind]
        way.sent += 1
        name = f"c{i}#{s}" if kind == "c" else f"a-{i}#{s}"
        got = ledger.arrivals.get(tag, [])
        if not got:
            way.lost.append(name)
            continue
        if len(got) > 1:
            if _in_flight_at_kill(got, kills):
                way.resent_after_kill.append(f"{name} x{len(got)}")
            else:
                way.duplicated.append(f"{name} x{len(got)}")
        first = min(got, key=lambda a: a.at)
        way.delays.append(first.at - sent)
        want = ledger.holder.get(i) if kind == "c" else customer_tg(i)
        for a in got:
            if a.chat != want:
                way.misrouted.append(f"{name} in chat {a.chat}")
        streams[(kind, i)].append((first.chat, first.message_id, s))
    for (kind, i), seen in streams.items():
        top = -1
        for _chat, _mid, s in sorted(seen):  # in the order the chat shows them
            if s < top:
                ways[kind].reordered.append(f"{'c' if kind == 'c' else 'a-'}{i}#{s}")
            top = max(top, s)
    return ways


def _show(label: str, items: list[str], limit: int = 12) -> None:
    if items:
        more = f" ... (+{len(items) - limit})" if len(items) > limit else ""
        print(f"    {label}: {', '.join(items[:limit])}{more}")


# ------------------------------------------------------------------ one backend


async def run_backend(size: Size, backend: str, url: str, wd: Path) -> list[Figure]:
    p = f"chaos_{backend}"
    rng = random.Random(SEED)
    await prepare_db(url, size)
    probe = Probe(url)
    log_path = wd / f"chaos-{backend}.log"
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    async with BenchAPI(per_chat_rate=1, global_rate=30) as api:
        ledger = Ledger(api)
        sup = Supervisor(api, url, log_path)
        try:
            await sup.start()
            # 1. The queue fills before the shift starts.
            t = time.monotonic()
            for n, i in enumerate(range(size.customers)):
                await asyncio.sleep(
                    max(0.0, t + n * size.open_s / size.customers - time.monotonic())
                )
                ledger.customer_says(i, "hello, my order arrived broken")
            deadline = time.monotonic() + 120
            while (await probe.conversations()).get("queued", 0) < size.customers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chats not all queued: {await probe.conversations()}")
                await asyncio.sleep(0.5)
            print(f"    {size.customers} chats queued in {time.monotonic() - t:.1f}s", flush=True)
            # 2. The shift starts.
            claim_s = await claim_all(ledger, probe, size, bound=900)
            print(f"    {size.agents} agents claimed every chat in {claim_s:.1f}s", flush=True)
            # 3. The exchange, with chaos.
            t0 = time.monotonic()
            chaos = asyncio.create_task(run_chaos(api, sup, chaos_plan(size, rng), t0, size))
            postponed = await exchange(ledger, size, rng, t0)
            sent_s = time.monotonic() - t0
            print(f"    exchange sent in {sent_s:.1f}s", flush=True)
            events = await chaos
            # 4. Quiet.
            settle_s = await settle(ledger, probe, api, size.settle_s)
            deliveries, inbox_pending = await probe.backlog()
        finally:
            await sup.stop()
        inbox = await probe.inbox()
        failed = await probe.failed_deliveries()
        await probe.close()
        pending = {u["update_id"] for u in api.pending_updates}
        count_429 = api.count_429
        outage_calls = len(api.outage_calls())
    total_s = time.monotonic() - started

    ways = judge(ledger, sup.kill_times)
    confirmed = [u for u in ledger.update_ids if u not in pending]
    lost_updates = [u for u in confirmed if inbox.get(u) != "done"]
    quarantined = [u for u, s in inbox.items() if s == "quarantined"]
    crashes = [rc for rc in sup.exits if rc not in (0, -signal.SIGKILL)]
    print(
        f"    {backend}: {ways['c'].sent + ways['a'].sent} messages, {len(ledger.update_ids)} "
        f"updates, {sup.starts} starts (exit codes {sup.exits}), {count_429} 429s, "
        f"{outage_calls} calls refused by the outage, run {total_s:.0f}s "
        f"(settled in {settle_s:.0f}s; {deliveries} deliveries and {inbox_pending} inbox rows "
        f"left; {postponed} agent messages waited for the customer's first relayed message)"
    )
    print(f"    chaos: {'; '.join(events)}")
    for kind, label in (("c", "customer->agent"), ("a", "agent->customer")):
        w = ways[kind]
        _show(f"{label} lost", w.lost)
        _show(f"{label} duplicated", w.duplicated)
        _show(f"{label} sent again after a SIGKILL mid-send", w.resent_after_kill)
        _show(f"{label} out of order", w.reordered)
        _show(f"{label} misrouted", w.misrouted)
    _show("updates lost", [str(u) for u in lost_updates])
    _show("updates quarantined", [str(u) for u in quarantined])
    _show("agent messages refused by the bot", ledger.refusals)
    _show("deliveries failed for good", [repr(r) for r in failed])
    if any(w.lost or w.duplicated or w.reordered or w.misrouted for w in ways.values()) or (
        lost_updates
    ):
        print(f"    bot log: {log_path}")

    figures: list[Figure] = []
    for kind, way_name in (("c", "to_agent"), ("a", "to_customer")):
        w = ways[kind]
        q = f"{p}_{way_name}"
        figures += [
            Figure(f"{q}_sent", float(w.sent), "messages"),
            judged(f"{q}_lost", float(len(w.lost)), "messages", "== 0"),
            judged(f"{q}_duplicated", float(len(w.duplicated)), "messages", "== 0"),
            Figure(f"{q}_resent_after_kill", float(len(w.resent_after_kill)), "messages"),
            judged(f"{q}_out_of_order", float(len(w.reordered)), "messages", "== 0"),
            judged(f"{q}_misrouted", float(len(w.misrouted)), "messages", "== 0"),
            Figure(f"{q}_max_delay_s", max(w.delays, default=float("nan")), "s"),
            Figure(f"{q}_median_delay_s", _median(w.delays), "s"),
        ]
    figures += [
        judged(f"{p}_updates_lost", float(len(lost_updates)), "updates", "== 0"),
        Figure(f"{p}_updates_unconfirmed", float(len(pending)), "updates"),
        Figure(f"{p}_updates", float(len(ledger.update_ids)), "updates"),
        Figure(f"{p}_429s", float(count_429), "responses"),
        Figure(f"{p}_outage_refused_calls", float(outage_calls), "calls"),
        Figure(f"{p}_outage_s", size.outage_s, "s"),
        Figure(f"{p}_sigkills", float(sup.kills), "kills"),
        Figure(f"{p}_sigterms", float(sup.terms), "SIGTERMs"),
        Figure(f"{p}_starts", float(sup.starts), "starts"),
        Figure(f"{p}_crashes", float(len(crashes)), "exits"),
        Figure(f"{p}_run_s", total_s, "s"),
    ]
    return figures


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def is_correctness(figure: Figure) -> bool:
    """A chaos figure whose goal is a guarantee (nothing lost, doubled or reordered)."""
    return figure.name.startswith("chaos_") and figure.goal == "== 0"


async def run(
    size_name: str = "default",
    workdir: Path | None = None,
    backend: str = "both",
    *,
    calm: bool = False,
) -> list[Figure]:
    """Run the scenario on each backend. ``calm``: no outage, kills or SIGTERM (the flood
    limits stay), to check the harness itself finds nothing lost."""
    size = SIZES[size_name]
    if calm:
        size = dataclasses.replace(size, outage_s=0, kills=0, terms=0)
    wanted = BACKENDS if backend == "both" else (backend,)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="contactbot-chaos-") as tmp:
        wd = workdir or Path(tmp)
        for name in wanted:
            if name == "sqlite":
                url = f"sqlite+aiosqlite:///{wd / 'chaos.db'}"
            else:
                url = os.environ.get(PG_ENV, "")
                if not url:
                    print(f"  postgresql: skipped ({PG_ENV} is not set)")
                    continue
            print(
                f"  {name}: {size.customers} customers, {size.agents} agents, {size.messages} "
                f"messages, {size.outage_s:.0f}s outage, {size.kills} SIGKILL, "
                f"{size.terms} SIGTERM",
                flush=True,
            )
            figures += await run_backend(size, name, url, wd)
            if workdir is None:
                # Keep the bot's log where it can be read after the temporary directory goes.
                log = wd / f"chaos-{name}.log"
                if log.exists():
                    keep = Path(tempfile.gettempdir()) / f"contactbot-chaos-{name}.log"
                    keep.write_bytes(log.read_bytes())
                    print(f"    bot log kept in {keep}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=list(SIZES), default="default")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument(
        "--calm", action="store_true", help="no outage, kills or SIGTERM (checks the harness)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the database and bot log here")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.size, args.workdir, args.backend, calm=args.calm))
    print("== summary")
    for f in figures:
        print(f.line())
    return 1 if any(is_correctness(f) and f.met is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
