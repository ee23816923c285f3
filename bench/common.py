"""Shared pieces of the benchmarks: the instrumented fake API, seeding, the bot processes.

Process model: the fake Bot API runs in the benchmark (driver) process; the bot under test
runs as a separate OS process (``python -m bot run``, exactly as users run it), and so does
the bare-aiogram floor (``python -m bench.common``, an echo bot). Both talk real HTTP to the
same fake and long-poll it with the same aiogram polling loop, so their ratio is fair; and the
bot's RSS can be read from /proc without the driver's memory mixed in. On a 2-core machine
that puts the fake on one core and the bot on the other.

Run ``python -m bench.common`` (with CONTACTBOT_TOKEN and CONTACTBOT_TELEGRAM_API_URL set)
to start the bare echo bot by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, insert, text

from routing.store.db import make_engine, upgrade
from routing.store.models import ASSIGNED, CLOSED, Agent, Conversation, Customer
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

ROOT = Path(__file__).resolve().parents[1]
SEED = 20260415
NOW = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)

CUSTOMER_TG = 100_000_000  # customer i has Telegram id CUSTOMER_TG + i
AGENT_TG = 9_000_000  # agent j has Telegram id AGENT_TG + j
START_TIMEOUT = 180  # seconds for a bot process to reach its first long poll
TIER_MIX = (("VIP", 0.05), ("A", 0.15), ("B", 0.30), ("C", 0.50))


# ------------------------------------------------------------------ figures and output


@dataclass
class Figure:
    name: str
    value: float
    unit: str = ""
    goal: str | None = None  # e.g. ">= 0.5"; met is None when there is no goal
    met: bool | None = None

    def line(self) -> str:
        value = f"{self.value:.3f}" if abs(self.value) < 100 else f"{self.value:.0f}"
        goal = ""
        if self.goal is not None:
            goal = f"  (goal {self.goal}: {'met' if self.met else 'NOT met'})"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}: {value}{unit}{goal}"


def judged(name: str, value: float, unit: str = "", goal: str | None = None) -> Figure:
    """A figure checked against a goal written as ``">= 0.95"`` or ``"== 0"``."""
    met = None
    if goal is not None:
        op, bound = goal.split()
        met = {">=": value >= float(bound), "==": value == float(bound)}[op]
    return Figure(name, value, unit, goal, met)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    payload = {
        "meta": meta,
        "figures": {f.name: {"value": f.value, "unit": f.unit, "goal": f.goal, "met": f.met}
                    for f in figures},
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def machine() -> str:
    cpu = "unknown cpu"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def loadavg() -> str:
    """The 1/5/15-minute load averages (the box is shared: others' runs show here)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# ------------------------------------------------------------------ instrumented fake API


class BenchAPI(FakeBotAPI):
    """The test fake, plus the moment each update was handed to a ``getUpdates`` response."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.handed_at: dict[int, float] = {}

    async def _get_updates(self, params: dict[str, Any], files: Any) -> Any:
        batch = await super()._get_updates(params, files)
        now = time.monotonic()
        for update in batch:
            self.handed_at.setdefault(update["update_id"], now)
        return batch

    def count(self, method: str, since: int = 0) -> int:
        return sum(1 for c in self.calls[since:] if c.method == method)

    def api_calls(self, since: int = 0) -> int:
        """Bot API calls made in answer to updates (every method but getUpdates)."""
        return sum(1 for c in self.calls[since:] if c.method != "getUpdates")


# ------------------------------------------------------------------ seeding


@dataclass
class World:
    """Who is in the seeded database, by Telegram id."""

    db_path: Path
    agents: list[int]  # every agent; each has one assigned chat with partners[j]
    online: list[int]  # the agents paged for VIPs
    partners: list[int]  # customers in an assigned chat with agents[j]
    vips: list[int]  # VIPs with no open conversation (each opens one on first message)
    regular: list[int]  # identified non-VIP customers without a conversation (self-service)
    url: str | None = None  # a PostgreSQL database instead of the SQLite file at db_path

    @property
    def db_url(self) -> str:
        return self.url or f"sqlite+aiosqlite:///{self.db_path}"

    async def processed(self) -> int:
        """Updates the bot has finished (done in its inbox), on either backend."""
        if self.url is None:
            return processed_count(self.db_path)
        engine = _count_engines.get(self.url)
        if engine is None:
            # Autocommit: the poll is one statement, not BEGIN, the count and ROLLBACK (three
            # round trips every 20 ms, on the server the bot under measurement shares).
            engine = make_engine(self.url).execution_options(isolation_level="AUTOCOMMIT")
            _count_engines[self.url] = engine
        async with engine.connect() as conn:
            n = await conn.scalar(
                text("SELECT count(*) FROM inbound_updates WHERE status = 'done'")
            )
        return int(n or 0)


_count_engines: dict[str, Any] = {}


async def dispose_count_engines() -> None:
    while _count_engines:
        _, engine = _count_engines.popitem()
        await engine.dispose()


def pg_url() -> str | None:
    """The PostgreSQL database benchmarks may wipe: CONTACTBOT_BENCH_PG_URL, else
    CONTACTBOT_TEST_PG_URL (its ``public`` schema is dropped and recreated for each run)."""
    return os.environ.get("CONTACTBOT_BENCH_PG_URL") or os.environ.get("CONTACTBOT_TEST_PG_URL")


async def reset_pg(url: str) -> None:
    """An empty ``public`` schema, as bench/chaos.py leaves PostgreSQL before a run."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def seed(
    db_path: Path,
    customers: int,
    *,
    agents: int = 8,
    online: int = 3,
    seed: int = SEED,
    url: str | None = None,
    history: int = 0,
) -> World:
    """A migrated SQLite file with ``customers`` identified customers (mixed tiers) and agents.

    Inserted with SQLAlchemy core executemany: 100,000 customers take a couple of seconds.
    With ``url`` (PostgreSQL) the same rows go there instead, into a schema reset first.
    ``history``: that many closed chats from the past year, spread over the customers and
    agents, as a bot that has been serving has (its reads must not grow with them).
    """
    if url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
    else:
        await reset_pg(url)
    rng = random.Random(seed)
    tiers, weights = zip(*TIER_MIX, strict=True)
    rows = []
    tier_of: list[str] = []
    for i in range(customers):
        tier = "A" if i < agents else rng.choices(tiers, weights)[0]
        tier_of.append(tier)
        rows.append(
            {
                "id": i + 1,
                "external_id": f"C{i:07d}",
                "name": f"Customer {i}",
                "telegram_id": CUSTOMER_TG + i,
                "language": "en",
                "account_manager": f"Agent {rng.randrange(agents)}",
                "tier": tier,
                "spend_12m": 0.0,
                "is_guest": False,
                "created_at": NOW.replace(tzinfo=None),
                "updated_at": NOW.replace(tzinfo=None),
            }
        )
    agent_rows = [
        {
            "id": j + 1,
            "telegram_id": AGENT_TG + j,
            "name": f"Agent {j}",
            "role": "agent",
            "max_chats": 1000,
            "online": j < online,
            "active": True,
            "created_at": NOW,
        }
        for j in range(agents)
    ]
    # Agent j is in an assigned chat with customer j (a tier-A customer): both sides relay.
    convs = [
        {
            "customer_id": j + 1,
            "status": ASSIGNED,
            "tier": "A",
            "priority": 1,
            "origin": "customer_request",
            "queued_at": NOW - timedelta(minutes=5),
            "agent_id": j + 1,
            "assigned_at": NOW - timedelta(minutes=4),
        }
        for j in range(agents)
    ]
    engine = make_engine(url or f"sqlite+aiosqlite:///{db_path}")
    try:
        # alembic keeps its migration context in module globals: one upgrade at a time.
        async with _upgrade_lock():
            await upgrade(engine)
        async with engine.begin() as conn:
            # The migrated schema, not the models: rows stay valid while models move ahead.
            tables = await conn.run_sync(_reflect)
            for start in range(0, len(rows), 20_000):
                await _insert(conn, tables["customers"], rows[start : start + 20_000])
            await _insert(conn, tables["agents"], agent_rows)
            await _insert(conn, tables["conversations"], convs)
            for start in range(0, history, 20_000):
                await _insert(
                    conn,
                    tables["conversations"],
                    _history(range(start, min(history, start + 20_000)), tier_of, agents),
                )
            if url is not None:
                # Rows went in with their ids: move PostgreSQL's sequences past them.
                for table in ("customers", "agents"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                            f" (SELECT max(id) FROM {table}))"
                        )
                    )
    finally:
        await engine.dispose()
    ids = [CUSTOMER_TG + i for i in range(customers)]
    return World(
        db_path=db_path,
        agents=[AGENT_TG + j for j in range(agents)],
        online=[AGENT_TG + j for j in range(online)],
        partners=ids[:agents],
        vips=[t for t, tier in zip(ids, tier_of, strict=True) if tier == "VIP"],
        regular=[
            t for t, tier in zip(ids[agents:], tier_of[agents:], strict=True) if tier != "VIP"
        ],
        url=url,
    )


def _history(ks: range, tier_of: list[str], agents: int) -> list[dict[str, Any]]:
    """Closed chats ``ks`` of a seeded history: the k-th a year ago plus k minutes (about
    one a minute), customer and agent taken in turn, ten minutes with the agent."""
    start = NOW - timedelta(days=365)
    out = []
    for k in ks:
        customer = k % len(tier_of)
        queued = start + timedelta(minutes=k)
        out.append(
            {
                "customer_id": customer + 1,
                "status": CLOSED,
                "tier": tier_of[customer],
                "priority": 2,
                "origin": "customer_request",
                "queued_at": queued,
                "agent_id": k % agents + 1,
                "assigned_at": queued + timedelta(minutes=1),
                "closed_at": queued + timedelta(minutes=11),
            }
        )
    return out


_UPGRADE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _upgrade_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _UPGRADE_LOCKS.get(loop)
    if lock is None:
        lock = _UPGRADE_LOCKS[loop] = asyncio.Lock()
    return lock


def _reflect(conn: Any) -> dict[str, Table]:
    meta = MetaData()
    names = (Customer.__tablename__, Agent.__tablename__, Conversation.__tablename__)
    return {name: Table(name, meta, autoload_with=conn) for name in names}


async def _insert(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    cols = set(table.c.keys())
    await conn.execute(insert(table), [{k: v for k, v in r.items() if k in cols} for r in rows])


# ------------------------------------------------------------------ traffic


@dataclass
class Traffic:
    """A deterministic stream of (sender Telegram id, text, kind)."""

    world: World
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    regular_pool: int | None = None  # draw self-service senders from the first N only
    _vip_iter: Iterator[int] | None = None

    def next_vip(self) -> int:
        if self._vip_iter is None:
            self._vip_iter = iter(self.world.vips)
        try:
            return next(self._vip_iter)
        except StopIteration:
            raise RuntimeError("seed more customers: every VIP already opened a chat") from None

    def ordinary(self) -> tuple[int, str, str]:
        """Background traffic: self-service customers and relays both ways."""
        r = self.rng.random()
        w = self.world
        if r < 0.6 / 0.9:
            pool = w.regular[: self.regular_pool] if self.regular_pool else w.regular
            return self.rng.choice(pool), f"where is my order {self.rng.randrange(10**6)}?", "self"
        j = self.rng.randrange(len(w.agents))
        if r < 0.75 / 0.9:
            return w.partners[j], f"any news? {self.rng.randrange(10**6)}", "to_agent"
        return w.agents[j], f"checking it now {self.rng.randrange(10**6)}", "to_customer"

    def mixed(self, n: int) -> list[tuple[int, str, str]]:
        """The pipeline mix: 60% self-service, 10% VIPs opening chats, 15% relay each way."""
        out = []
        for _ in range(n):
            if self.rng.random() < 0.1:
                out.append((self.next_vip(), "my order arrived broken", "vip"))
            else:
                out.append(self.ordinary())
        return out


# ------------------------------------------------------------------ bot processes


# The benchmarks' bots run the default policy without its NPS campaigns. Whether a campaign
# fires depends on the calendar (the VIP one on the 1st at 11:00, caught up for 24 h after
# a start, and deferred through quiet hours): on 2026-12-02 from 09:00 every fresh bot began
# by surveying its seeded VIPs, a thousand messages competing with the traffic measured.
BENCH_POLICY = "[surveys.nps]\ncampaigns = []\n"


def bench_policy_file() -> Path:
    path = Path(tempfile.gettempdir()) / "contactbot-bench-policy.toml"
    if not path.exists() or path.read_text() != BENCH_POLICY:
        path.write_text(BENCH_POLICY)
    return path


def bot_env(api_url: str, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")}
    env |= {
        "CONTACTBOT_TOKEN": DEFAULT_TOKEN,
        "CONTACTBOT_TELEGRAM_API_URL": api_url,
        "CONTACTBOT_CONFIG": str(bench_policy_file()),
        "PYTHONUNBUFFERED": "1",
    }
    if db_url:
        env["CONTACTBOT_DATABASE_URL"] = db_url
    return env


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> tuple[int, int]:
        """(current RSS, peak RSS) in KiB, from /proc (Linux)."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return fields["VmRSS"], fields["VmHWM"]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far, from /proc (Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@asynccontextmanager
async def bot_process(
    api: BenchAPI, log_path: Path, *, db_url: str | None = None, bare: bool = False,
    prefix: list[str] | None = None,
):  # type: ignore[no-untyped-def]  # fmt: skip
    """Run ``python -m bot run`` (or the bare echo bot) against ``api`` until the block ends.

    ``prefix`` wraps the command (e.g. a profiler: ``["py-spy", "record", ...]``).
    """
    args = ["-m", "bench.common"] if bare else ["-m", "bot", "run"]
    mark = api.mark()
    log = log_path.open("ab")
    cmd = [*(prefix or []), sys.executable, *args]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=bot_env(api.url, db_url), cwd=ROOT, stdout=log, stderr=log
    )
    bp = BotProcess(proc, log_path)
    try:
        try:
            # deleteWebhook is the last call before the first long poll.
            # Generous: on a shared box under load, importing the bot alone took 10-60 s.
            await api.wait_for("deleteWebhook", since=mark, timeout=START_TIMEOUT)
        except AssertionError:
            raise RuntimeError(f"bot did not start polling:\n{bp.log()[-3000:]}") from None
        yield bp
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT if prefix else signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def processed_count(db_path: Path) -> int:
    """Updates the bot has finished (done in its inbox), read with plain sqlite3."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return int(
            con.execute("SELECT count(*) FROM inbound_updates WHERE status = 'done'").fetchone()[0]
        )
    finally:
        con.close()


async def wait_done(
    done: Any,
    target: int,
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline is the point of this helper
    poll: float = 0.01,
) -> float:
    """Poll ``done()`` until it reaches ``target``; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while True:
        n = done()
        if n >= target:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {n} of {target} updates finished within {timeout:.0f}s")
        await asyncio.sleep(poll)


# ------------------------------------------------------------------ the bare aiogram floor


async def _bare_main() -> None:
    """The framework's floor: aiogram polling + one echo per message, nothing else."""
    from aiogram import Dispatcher
    from aiogram.types import Message

    from bot.app import make_bot

    bot = make_bot(os.environ["CONTACTBOT_TOKEN"], os.environ["CONTACTBOT_TELEGRAM_API_URL"])
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    await bot.get_me()
    await bot.delete_webhook(drop_pending_updates=False)
    await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types())


if __name__ == "__main__":
    # Same logging as `contactbot run`: aiogram logs every handled update at INFO in both.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with suppress(KeyboardInterrupt):
        asyncio.run(_bare_main())
