"""Multi-instance harness: N real webhook processes on one PostgreSQL and one Redis.

What runs where::

    test process                                       OS processes
    ┌──────────────────────────────────────────┐
    │ FakeBotAPI (tests/fakes/bot_api.py)       │◀── Bot API calls ── inst-0 .. inst-N-1
    │ Telegram: posts the fake's queued updates │                     (`python -m bot run
    │   to the balancer, retrying non-2xx       │                      --webhook`, each on its
    │ Balancer: round robin over the instances ─┼── POST /webhook ──▶  own port, one PG
    └──────────────────────────────────────────┘                      database, one Redis)

* :class:`Instance` is one ``contactbot run --webhook`` process. It is "up" when its webhook
  answers (401 to a request without the secret). ``kill()`` is SIGKILL (no shutdown code
  runs), ``term()`` SIGTERM (the bot drains and exits 0), ``start()`` again restarts it.
* :class:`Balancer` forwards ``POST /webhook`` to the instances in turn. An instance that
  cannot be reached (killed, stopped, not up yet) gets ``on_down="502"``: the balancer answers
  502 as nginx does, and Telegram retries the update later (maybe landing on another
  instance); or ``on_down="next"``: the balancer tries the next instance at once. A 503 from
  a draining instance is passed on as it is (Telegram retries it).
* :class:`Telegram` delivers the updates the fake queues (``api.user_message``,
  ``api.press``) to the balancer with the secret token, as Telegram's webhook does: a non-2xx
  answer or a network error is retried with backoff (0.05 s doubling to 1 s here; Telegram's
  own delays are longer), the same update again. Two modes, as ``setWebhook``'s
  ``max_connections`` gives them:

  - ``max_connections=1``: one request at a time, in update_id order; a failing update is
    retried before any later one is sent. Every chat's updates are *stored* in order.
  - ``max_connections=k > 1``: up to k requests in flight, taken in update_id order but not
    waiting for each other, so two updates of one chat can be in flight at once and be stored
    (and answered) in either order. Telegram promises no order between concurrent webhook
    requests; neither do we. What the bot can promise then, and what the tests check, is:
    an update *stored* (answered 2xx) before another of the same chat was *sent* is handled
    before it (:meth:`Telegram.stored_before`). Among updates already stored when a chat's
    turn comes, update_id order.

  :meth:`Telegram.take_new` hands the queued updates to the test instead (to post one update
  to two instances at once, say).

Tests get a fresh cluster from the ``make_cluster`` fixture: a fresh database (the ``public``
schema dropped and recreated), an empty Redis database, the fake, the balancer, the poster,
and N instances started at once. By default the schema is migrated by the test process first
(``contactbot db upgrade`` as a deploy step would run it), so a test of something else does
not depend on concurrent migrations; ``migrate_first=False`` leaves the database empty (the
test of point 1). Needs ``CONTACTBOT_TEST_PG_URL`` and ``CONTACTBOT_TEST_REDIS_URL``;
without them every test here skips with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("CONTACTBOT_TEST_PG_URL")
REDIS_URL = os.environ.get("CONTACTBOT_TEST_REDIS_URL")
SECRET = "multi-instance-secret"
# NPS campaigns off: with the built-in crons a run on the 1st of a month would survey
# the seeded customers mid-test.
POLICY = "[surveys.nps]\ncampaigns = []\n"
UP_TIMEOUT = 120.0  # three interpreters importing aiogram at once on two busy cores


def skip_reason() -> str | None:
    missing = [
        name
        for name, value in (
            ("CONTACTBOT_TEST_PG_URL", PG_URL),
            ("CONTACTBOT_TEST_REDIS_URL", REDIS_URL),
        )
        if not value
    ]
    if not missing:
        return None
    return (
        f"multi-instance tests need {' and '.join(missing)} (e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test, redis://127.0.0.1:6379/15)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ one bot process


@dataclass
class Instance:
    """One ``python -m bot run --webhook`` process with its own port."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    cpu_before: float = 0.0  # CPU seconds of this instance's earlier (ended) processes
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def note(self, line: str) -> None:
        with self.log_path.open("ab") as f:
            f.write(f"=== harness {time.strftime('%H:%M:%S')} {line}\n".encode())

    async def start(self) -> None:
        assert not self.alive, f"{self.name} is running"
        self.starts += 1
        self.note(f"start #{self.starts}")
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--webhook", env=self.env, cwd=ROOT,
            stdout=self._log, stderr=self._log,
        )  # fmt: skip

    async def wait_up(self, timeout: float = UP_TIMEOUT) -> float:  # noqa: ASYNC109
        """Wait until the webhook answers; returns the seconds it took. Raises (with the
        log's tail) if the process exits first or the time runs out."""
        t0 = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if not self.alive:
                    raise AssertionError(
                        f"{self.name} exited ({self.returncode}) before its webhook came up:\n"
                        f"{self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.post(self.url, data=b"{}") as r:
                        if r.status in (200, 401):  # 401: no secret, so it is our handler
                            return time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(
                        f"{self.name} not up within {timeout:.0f}s:\n{self.tail()}"
                    )
                await asyncio.sleep(0.1)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def _last_cpu(self) -> None:
        # Read just before the signal: once the process is reaped /proc forgets it.
        self.cpu_before += self.cpu_seconds()

    async def _ended(self) -> int:
        assert self.proc is not None
        rc = await self.proc.wait()
        self.exits.append(rc)
        self.note(f"exit {rc}")
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    async def kill(self) -> int:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.proc is not None and self.alive, f"{self.name} is not running"
        self.note(f"SIGKILL pid {self.proc.pid}")
        self._last_cpu()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        return await self._ended()

    async def term(self, timeout: float = 45.0) -> tuple[int, float]:  # noqa: ASYNC109
        """SIGTERM and wait for the exit (SIGKILL after ``timeout``); (exit code, seconds)."""
        assert self.proc is not None and self.alive, f"{self.name} is not running"
        self.note(f"SIGTERM pid {self.proc.pid}")
        self._last_cpu()  # the drain's own CPU is not counted
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
        except TimeoutError:
            self.note("SIGTERM not obeyed in time: SIGKILL")
            self.proc.kill()
        rc = await self._ended()
        return rc, time.monotonic() - t0

    def cpu_seconds(self) -> float:
        """User + system CPU of the running process so far (Linux /proc); 0 if not running."""
        if not self.alive or self.proc is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_total(self) -> float:
        """CPU seconds of every process this instance ran (see :attr:`cpu_before`)."""
        return self.cpu_before + self.cpu_seconds()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        """The log's end without the scheduler's and the access log's routine lines."""
        quiet = ("apscheduler", "aiohttp.access")
        lines = [ln for ln in self.log().splitlines() if not any(q in ln for q in quiet)]
        return "\n".join(lines)[-chars:]


# ------------------------------------------------------------------ the load balancer


class Balancer:
    """Round robin over the instances' webhooks (see the module docstring for ``on_down``)."""

    def __init__(self, instances: list[Instance], *, on_down: str = "502") -> None:
        assert on_down in ("502", "next")
        self.instances = instances
        self.on_down = on_down
        self.forwarded: Counter[str] = Counter()  # requests an instance answered
        self.unreachable: Counter[str] = Counter()  # requests an instance could not take
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=2),
            connector=aiohttp.TCPConnector(limit=0),
        )
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        tries = len(self.instances) if self.on_down == "next" else 1
        name = "-"
        for _ in range(tries):
            inst = self.instances[next(self._turn) % len(self.instances)]
            name = inst.name
            try:
                async with self._http.post(inst.url, data=body, headers=headers) as r:
                    payload = await r.read()
                    self.forwarded[name] += 1
                    return web.Response(
                        status=r.status,
                        body=payload,
                        content_type=r.content_type,
                        headers={"X-Upstream": name},
                    )
            except (aiohttp.ClientError, TimeoutError):
                self.unreachable[name] += 1
        return web.Response(status=502, text="502 Bad Gateway", headers={"X-Upstream": name})


# ------------------------------------------------------------------ Telegram's side


@dataclass
class Posted:
    """One update's way through Telegram's webhook delivery."""

    update_id: int
    chat_id: int | None
    first_sent: float | None = None  # monotonic: the first POST began
    last_sent: float | None = None  # monotonic: the POST that got 2xx began
    accepted: float | None = None  # monotonic: 2xx received
    attempts: int = 0
    answers: list[str] = field(default_factory=list)  # status codes or error names
    upstream: str | None = None  # the instance that answered 2xx


def update_chat(update: dict[str, Any]) -> int | None:
    from routing.store.inbox import chat_key

    return chat_key(update)


class Telegram:
    """Delivers the fake's queued updates to a webhook URL as Telegram does (module docstring)."""

    def __init__(
        self,
        api: FakeBotAPI,
        url: str,
        secret: str = SECRET,
        *,
        max_connections: int = 1,
        retry_first: float = 0.05,
        retry_cap: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        self.api, self.url, self.secret = api, url, secret
        self.max_connections = max_connections
        self.retry_first, self.retry_cap = retry_first, retry_cap
        self.timeout = timeout
        self.posted: dict[int, Posted] = {}
        self.order: list[int] = []  # update ids in the order they were taken from the fake
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self.paused = False

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=0),
        )
        self._tasks.append(asyncio.create_task(self._feeder()))
        for _ in range(self.max_connections):
            self._tasks.append(asyncio.create_task(self._worker()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- taking updates from the fake --------------------------------------------------
    def _new(self) -> list[dict[str, Any]]:
        # The fake's getUpdates queue; with a webhook set, Telegram pushes what it holds
        # instead, so taking an update out of it is what "Telegram sends it" means here.
        pending: deque[dict[str, Any]] = self.api._pending
        fresh: list[dict[str, Any]] = []
        while pending:
            fresh.append(pending.popleft())
        return fresh

    def feed(self) -> int:
        """Queue the fake's new updates for posting; returns how many."""
        fresh = self._new()
        for u in fresh:
            self.posted[u["update_id"]] = Posted(u["update_id"], update_chat(u))
            self.order.append(u["update_id"])
            self._queue.append(u)
        if fresh:
            self._wake.set()
        return len(fresh)

    def take_new(self) -> list[dict[str, Any]]:
        """The fake's new updates, for the test to post itself (they are not posted here)."""
        return self._new()

    async def _feeder(self) -> None:
        while True:
            self.feed()
            await asyncio.sleep(0.005)

    # --- posting -----------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            while not self._queue or self.paused:
                self._wake.clear()
                await self._wake.wait()
            update = self._queue.popleft()
            await self._deliver(update)
            self._progress.set()

    async def _deliver(self, update: dict[str, Any]) -> None:
        assert self._http is not None
        rec = self.posted[update["update_id"]]
        delay = self.retry_first
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret}
        while True:
            sent = time.monotonic()
            rec.first_sent = rec.first_sent or sent
            rec.attempts += 1
            try:
                async with self._http.post(self.url, json=update, headers=headers) as r:
                    await r.read()
                    rec.answers.append(str(r.status))
                    if 200 <= r.status < 300:
                        rec.last_sent, rec.accepted = sent, time.monotonic()
                        rec.upstream = r.headers.get("X-Upstream")
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                rec.answers.append(type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_cap)

    def pause(self) -> None:
        """Hold new requests back (those in flight finish) until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    async def set_connections(self, k: int) -> None:
        """Switch to ``k`` requests at a time (``setWebhook(max_connections=k)``), once
        everything taken so far was accepted."""
        await self.settle()
        workers = self._tasks[1:]
        for t in workers:
            t.cancel()
        for t in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        del self._tasks[1:]
        self.max_connections = k
        for _ in range(k):
            self._tasks.append(asyncio.create_task(self._worker()))

    async def settle(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until every update taken from the fake was answered 2xx."""
        deadline = time.monotonic() + timeout
        self.feed()
        while True:
            left = [p for p in self.posted.values() if p.accepted is None]
            if not left and not self._queue:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(left)} update(s) not accepted within {timeout:.0f}s: "
                    + ", ".join(f"{p.update_id} {p.answers[-5:]}" for p in left[:10])
                )
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.2)
            self.feed()

    # --- questions -----------------------------------------------------------------------
    @property
    def accepted_ids(self) -> list[int]:
        return [u for u in self.order if self.posted[u].accepted is not None]

    def stored_before(self, a: int, b: int) -> bool:
        """Update ``a`` was surely stored before ``b``: a's 2xx arrived before b was first
        sent (the bot answers 2xx only after the commit; and an attempt at b that failed,
        a 502 or a timeout, may still have stored it, so b's first attempt counts)."""
        pa, pb = self.posted[a], self.posted[b]
        return pa.accepted is not None and pb.first_sent is not None and pa.accepted < pb.first_sent

    def retried(self) -> int:
        return sum(1 for p in self.posted.values() if p.attempts > 1)


# ------------------------------------------------------------------ what arrived where


def last_update_id(api: FakeBotAPI) -> int:
    """The update id the fake gave the update it queued last (``user_message``, ``press``)."""
    return int(api._next_update_id) - 1


def copies(api: FakeBotAPI, chat_id: int) -> list[tuple[str, float]]:
    """(text, monotonic time of the call) of every message the bot *copied* into ``chat_id``
    (copyMessage / copyMessages: relayed messages; not the bot's own texts), in the order
    the chat shows them."""
    found: list[tuple[int, str, float]] = []
    for call in api.calls:
        if not call.ok or call.chat_id != chat_id:
            continue
        if call.method not in ("copyMessage", "copyMessages"):
            continue
        results = call.result if isinstance(call.result, list) else [call.result]
        for r in results:
            mid = int(r["message_id"])
            body = api.message(chat_id, mid)
            found.append((mid, str(body.get("text") or body.get("caption") or ""), call.at))
    return [(t, at) for _, t, at in sorted(found)]


def order_violations(arrived: list[int], telegram: Telegram) -> list[str]:
    """Pairs of updates handled against the order they were surely stored in.

    ``arrived``: update ids in the order their effects show (the transcript, the other
    side's chat). For a < b: if a was stored (answered 2xx) before b was sent, a must come
    first. Updates posted at the same time promise nothing between them."""
    at = {u: i for i, u in enumerate(arrived)}
    out = []
    for a in arrived:
        for b in arrived:
            if a != b and at[a] > at[b] and telegram.stored_before(a, b):
                out.append(f"{b} before {a} (stored after it)")
    return out


# ------------------------------------------------------------------ the cluster


@dataclass
class Cluster:
    api: FakeBotAPI
    db_url: str
    redis_url: str
    workdir: Path
    instances: list[Instance]
    balancer: Balancer
    telegram: Telegram
    engine: AsyncEngine
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    # --- processes ---------------------------------------------------------------------
    async def start_all(self, timeout: float = UP_TIMEOUT) -> list[float]:  # noqa: ASYNC109
        """Start every instance at once; returns each one's seconds to come up."""
        for inst in self.instances:
            await inst.start()
        return list(await asyncio.gather(*(i.wait_up(timeout) for i in self.instances)))

    async def stop(self) -> None:
        await self.telegram.stop()
        for inst in self.instances:
            if inst.alive:
                await inst.term(timeout=20)
        await self.balancer.stop()
        await self.engine.dispose()

    def logs(self, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {i.name} (starts {i.starts}, exits {i.exits}):\n{i.tail(chars)}"
            for i in self.instances
        )

    def grep(self, needle: str) -> list[str]:
        """Log lines (any instance) containing ``needle``."""
        return [
            f"{i.name}: {line}"
            for i in self.instances
            for line in i.log().splitlines()
            if needle in line
        ]

    # --- the database ------------------------------------------------------------------
    async def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(query), params)).all()]

    async def execute(self, statement: str, **params: Any) -> int:
        """Run a writing statement in its own transaction; returns the rows it touched."""
        async with self.engine.begin() as conn:
            return int((await conn.execute(text(statement), params)).rowcount)

    async def seed(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with AsyncSession(self.engine, expire_on_commit=False) as s, s.begin():
            return await work(s)

    async def add_agent(
        self, telegram_id: int, name: str, *, online: bool = True, max_chats: int = 5
    ) -> int:
        from routing.queue.agents import add_agent

        async def work(s: AsyncSession) -> int:
            agent, _ = await add_agent(s, telegram_id, name, max_chats=max_chats, now=self.now)
            agent.online = online
            await s.flush()
            return int(agent.id)

        return int(await self.seed(work))

    async def add_customer(self, telegram_id: int, *, tier: str = "A", name: str = "") -> int:
        from routing.store.models import Customer

        async def work(s: AsyncSession) -> int:
            c = Customer(
                external_id=f"X{telegram_id}",
                name=name or f"Customer {telegram_id}",
                telegram_id=telegram_id,
                language="en",
                tier=tier,
                tier_override=tier,
                is_guest=False,
                created_at=self.now,
                updated_at=self.now,
            )
            s.add(c)
            await s.flush()
            return int(c.id)

        return int(await self.seed(work))

    async def open_chat(self, customer_id: int, agent_id: int) -> int:
        """An assigned conversation between them (as after a claim)."""
        from routing.store.models import ASSIGNED, Conversation

        async def work(s: AsyncSession) -> int:
            conv = Conversation(
                customer_id=customer_id,
                status=ASSIGNED,
                tier="A",
                priority=1,
                origin="customer_request",
                queued_at=self.now - timedelta(minutes=5),
                agent_id=agent_id,
                assigned_at=self.now - timedelta(minutes=4),
            )
            s.add(conv)
            await s.flush()
            return int(conv.id)

        return int(await self.seed(work))

    async def chat_locks(self) -> list[str]:
        """Chat locks held in Redis now (bot/intake.py ``redis_chat_lock``)."""
        from redis.asyncio import Redis

        r = Redis.from_url(self.redis_url)
        try:
            return sorted(k.decode() for k in await r.keys("contactbot:chat:*"))
        finally:
            await r.aclose()

    async def inbox(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """Inbox statuses by update id (of ``ids`` only, if given)."""
        if ids is None:
            rows = await self.sql("SELECT update_id, status FROM inbound_updates")
        else:
            rows = await self.sql(
                "SELECT update_id, status FROM inbound_updates WHERE update_id = ANY(:ids)",
                ids=list(ids),
            )
        return {int(u): str(s) for u, s in rows}

    async def wait_handled(
        self,
        ids: Iterable[int],
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        idle: float = 0.5,
    ) -> dict[int, str]:
        """Wait until every one of ``ids`` is in the inbox and no longer pending, then for
        the fake to be quiet ``idle`` s (deliveries of the last updates); returns statuses."""
        wanted = sorted(set(ids))
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.sql(
                "SELECT count(*) FROM inbound_updates WHERE update_id = ANY(:ids) "
                "AND status <> 'pending'",
                ids=wanted,
            )
            if int(rows[0][0]) == len(wanted):
                break
            if time.monotonic() > deadline:
                got = await self.inbox(wanted)
                left = [u for u in wanted if got.get(u) in (None, "pending")]
                raise AssertionError(
                    f"{len(left)} update(s) not handled within {timeout:.0f}s "
                    f"(missing or pending): {left[:20]}\n{self.logs()}"
                )
            await asyncio.sleep(0.1)
        if idle > 0:
            with contextlib.suppress(AssertionError):
                await self.api.wait_idle(quiet=idle, timeout=max(1.0, deadline - time.monotonic()))
        return await self.inbox(wanted)

    async def wait_deliveries(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until the delivery queue has nothing pending or being sent (but the messages
        of queued chats, which wait for a claim)."""
        deadline = time.monotonic() + timeout
        while True:
            # A queued chat's messages wait for whoever claims it: not pending in this sense.
            rows = await self.sql(
                "SELECT count(*) FROM deliveries d JOIN conversations cv "
                "ON cv.id = d.conversation_id "
                "WHERE d.status IN ('pending', 'sending') AND cv.status <> 'queued'"
            )
            if int(rows[0][0]) == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{rows[0][0]} deliveries still pending\n{self.logs()}")
            await asyncio.sleep(0.2)


async def reset_database(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def flush_redis(url: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    try:
        await r.flushdb()
    finally:
        await r.aclose()


def instance_env(cluster_env: dict[str, str], port: int) -> dict[str, str]:
    return cluster_env | {"CONTACTBOT_WEBHOOK_PORT": str(port)}


@contextlib.asynccontextmanager
async def cluster(
    workdir: Path,
    *,
    n: int = 3,
    db_url: str,
    redis_url: str,
    max_connections: int = 1,
    on_down: str = "502",
    migrate_first: bool = True,
    start: bool = True,
    policy: str = POLICY,
    api: FakeBotAPI | None = None,
) -> AsyncIterator[Cluster]:
    """A fresh database and Redis, the fake, the balancer, the poster and ``n`` instances
    (started at once unless ``start=False``); everything stopped at the end."""
    await reset_database(db_url)
    await flush_redis(redis_url)
    engine = create_async_engine(db_url, poolclass=NullPool)
    if migrate_first:
        from routing.store.db import upgrade

        await upgrade(engine)
    policy_path = workdir / "contactbot.toml"
    policy_path.write_text(policy, encoding="utf-8")
    own_api = api is None
    fake = api or FakeBotAPI()
    if own_api:
        await fake.start()
    instances: list[Instance] = []
    balancer = Balancer(instances, on_down=on_down)
    await balancer.start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")} | {
        "CONTACTBOT_TOKEN": DEFAULT_TOKEN,
        "CONTACTBOT_DATABASE_URL": db_url,
        "CONTACTBOT_TELEGRAM_API_URL": fake.url,
        "CONTACTBOT_REDIS_URL": redis_url,
        "CONTACTBOT_CONFIG": str(policy_path),
        "CONTACTBOT_WEBHOOK_URL": balancer.base_url,
        "CONTACTBOT_WEBHOOK_SECRET": SECRET,
        "CONTACTBOT_WEBHOOK_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    for k in range(n):
        port = free_port()
        path = workdir / f"inst-{k}.log"
        path.unlink(missing_ok=True)
        instances.append(Instance(f"inst-{k}", port, instance_env(base_env, port), path))
    tg = Telegram(fake, balancer.url, max_connections=max_connections)
    c = Cluster(fake, db_url, redis_url, workdir, instances, balancer, tg, engine)
    try:
        if start:
            await c.start_all()
        await tg.start()
        yield c
    finally:
        await c.stop()
        if own_api:
            await fake.stop()


ClusterFactory = Callable[..., contextlib.AbstractAsyncContextManager[Cluster]]


@pytest.fixture
def make_cluster(tmp_path: Path) -> ClusterFactory:
    """``async with make_cluster(n=3, ...) as c:`` (see :func:`cluster`); skips without
    CONTACTBOT_TEST_PG_URL / CONTACTBOT_TEST_REDIS_URL."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    assert PG_URL and REDIS_URL

    def factory(**kw: Any) -> contextlib.AbstractAsyncContextManager[Cluster]:
        return cluster(tmp_path, db_url=PG_URL, redis_url=REDIS_URL, **kw)

    return factory
