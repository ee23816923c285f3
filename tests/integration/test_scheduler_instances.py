"""Three instances tick the same jobs (issue "Three instances behave as one"): every job's
effect happens once per period, whether the ticks come together or a second apart.

Each instance is in-process with its own engine, sessionmaker, Bot (on the fake Bot API)
and scheduler built by ``make_scheduler``; a tick is the scheduled job's own callable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import func, select

from bot.app import make_bot
from bot.scheduler import make_scheduler
from routing.policy.root import parse_policy
from routing.scoring import rescoring
from routing.store import db as store
from routing.store.models import Customer, Order, ScoringRun, TierChange
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

# The monthly rescoring cron (policy default "0 3 1 * *", UTC) fires at FIRE.
FIRE = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
POLICY = parse_policy({"scoring": {"timezone": "UTC"}, "surveys": {"nps": {"campaigns": []}}})


@dataclass
class Cluster:
    api: FakeBotAPI
    scheds: list[AsyncIOScheduler]
    bots: list[Bot]
    engines: list[Any]
    wall: list[datetime]

    async def tick(self, job: str, *, offset: float | None = None) -> None:
        """Every instance ticks ``job``: together (``offset=None``) or ``offset`` s apart."""
        jobs = [s.get_job(job) for s in self.scheds]
        assert all(j is not None for j in jobs)
        if offset is None:
            await asyncio.gather(*(j.func(*j.args, **j.kwargs) for j in jobs))
            return
        base = self.wall[0]
        for i, j in enumerate(jobs):
            self.wall[0] = base + timedelta(seconds=offset * i)
            await j.func(*j.args, **j.kwargs)
        self.wall[0] = base


@pytest.fixture
async def cluster(db: Db) -> AsyncIterator[Cluster]:
    wall = [FIRE]
    async with FakeBotAPI() as api:
        engines = [store.make_engine(db.url) for _ in range(3)]
        bots = [make_bot(DEFAULT_TOKEN, api.url) for _ in engines]
        scheds = [
            make_scheduler(
                store.make_sessionmaker(e),
                POLICY,
                b,
                lambda: FIRE,
                instance=f"instance-{i}",
                wall=lambda: wall[0],
            )
            for i, (e, b) in enumerate(zip(engines, bots, strict=True))
        ]
        yield Cluster(api, scheds, bots, engines, wall)
        for b in bots:
            await b.session.close()
        for e in engines:
            await e.dispose()


async def _count(db: Db, what: Any) -> int:
    async with db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(what)) or 0)


async def _vip_to_be(db: Db, ext: str, telegram_id: int) -> None:
    """A customer graded C last month who has since spent enough to be VIP."""
    async with db.sessions() as s, s.begin():
        s.add(
            Customer(
                external_id=ext,
                name=ext,
                tier="C",
                telegram_id=telegram_id,
                scored_at=FIRE - timedelta(days=31),
                created_at=FIRE - timedelta(days=60),
                updated_at=FIRE - timedelta(days=60),
            )
        )
        s.add(
            Order(
                order_id=f"{ext}-1",
                external_id=ext,
                amount_cents=60_000_000,
                ordered_at=FIRE - timedelta(days=5),
            )
        )


@pytest.mark.parametrize("offset", [None, 1.0], ids=["together", "1s-apart"])
async def test_rescoring_runs_once_a_month_and_tells_the_customer_once(
    db: Db, cluster: Cluster, offset: float | None
) -> None:
    await _vip_to_be(db, "V", 501)
    cluster.wall[0] = FIRE + timedelta(milliseconds=200)
    await cluster.tick("rescore", offset=offset)
    assert await _count(db, ScoringRun) == 1
    assert await _count(db, TierChange) == 1
    notices = cluster.api.sent_to(501)
    assert len(notices) == 1 and "VIP" in (notices[0].text or "")
    # A late tick in the same month (a restart within the misfire grace time) does nothing.
    cluster.wall[0] = FIRE + timedelta(minutes=20)
    await cluster.tick("rescore", offset=offset)
    assert await _count(db, ScoringRun) == 1
    # Next month's fire runs again, once.
    cluster.wall[0] = datetime(2026, 12, 1, 3, 0, 0, 500_000, tzinfo=UTC)
    await cluster.tick("rescore", offset=offset)
    assert await _count(db, ScoringRun) == 2
    assert len(cluster.api.sent_to(501)) == 1


async def test_a_tick_that_fires_a_little_early_still_counts_for_its_period(
    db: Db, cluster: Cluster
) -> None:
    cluster.wall[0] = FIRE - timedelta(milliseconds=3)
    await cluster.tick("rescore", offset=1.0)
    assert await _count(db, ScoringRun) == 1


async def test_a_failed_run_leaves_its_period_to_the_next_tick(
    db: Db, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:

    real = rescoring.rescore
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(rescoring, "rescore", flaky)
    job = cluster.scheds[0].get_job("rescore")
    with pytest.raises(ConnectionError):
        await job.func()
    await cluster.tick("rescore", offset=1.0)
    assert await _count(db, ScoringRun) == 1 and calls == 2


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    real: Callable[..., Any] = getattr(owner, name)
    runs: list[int] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        await asyncio.sleep(0.05)  # long enough for the other instances' ticks to overlap
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return runs


@pytest.mark.parametrize("offset", [None, 1.0], ids=["together", "1s-apart"])
async def test_tier_notices_sweep_once_per_period(
    db: Db, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, offset: float | None
) -> None:
    from routing.scoring import tier_notices

    await _vip_to_be(db, "V", 501)
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, POLICY, FIRE)  # a notice waits in the outbox
    runs = _spy(monkeypatch, tier_notices, "send_pending")
    cluster.wall[0] = FIRE + timedelta(seconds=60, milliseconds=100)  # a 60 s tick
    await cluster.tick("tier_notices", offset=offset)
    assert len(runs) == 1
    assert len(cluster.api.sent_to(501)) == 1
    cluster.wall[0] += timedelta(seconds=60)
    await cluster.tick("tier_notices", offset=offset)
    assert len(runs) == 2 and len(cluster.api.sent_to(501)) == 1


@pytest.mark.parametrize("offset", [None, 1.0], ids=["together", "1s-apart"])
async def test_queue_sweep_once_per_period(
    db: Db, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, offset: float | None
) -> None:
    from bot.desk.queue import QueueDesk

    runs = _spy(monkeypatch, QueueDesk, "sweep")
    # The queue ticks every 5 s (queue.sweep_seconds); 1 s apart is within one tick.
    cluster.wall[0] = FIRE + timedelta(seconds=10, milliseconds=20)
    await cluster.tick("queue", offset=offset)
    assert len(runs) == 1
    cluster.wall[0] += timedelta(seconds=5)
    await cluster.tick("queue", offset=offset)
    assert len(runs) == 2


@pytest.mark.parametrize("offset", [None, 1.0], ids=["together", "1s-apart"])
async def test_survey_tick_once_per_period(
    db: Db, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, offset: float | None
) -> None:
    from surveys import campaigns

    runs = _spy(monkeypatch, campaigns, "run_due")
    cluster.wall[0] = FIRE + timedelta(seconds=10, milliseconds=20)
    await cluster.tick("surveys", offset=offset)
    assert len(runs) == 1
    cluster.wall[0] += timedelta(seconds=5)
    await cluster.tick("surveys", offset=offset)
    assert len(runs) == 2


@pytest.mark.parametrize("offset", [None, 1.0], ids=["together", "1s-apart"])
async def test_complaint_sla_breach_paged_once(
    db: Db, cluster: Cluster, offset: float | None
) -> None:
    from routing.complaints import cases
    from routing.queue.agents import add_agent

    async with db.sessions() as s, s.begin():
        await add_agent(s, 700, "Sue", role="supervisor", now=FIRE)
        vic = Customer(external_id="V", name="Vic", tier="VIP", tier_override="VIP",
                       telegram_id=601, created_at=FIRE, updated_at=FIRE)  # fmt: skip
        s.add(vic)
        await s.flush()
        # Nobody answered for 16 minutes of the VIP's 15.
        await cases.open_by_customer(
            s, vic, "delivery", "lost", FIRE - timedelta(minutes=16), POLICY
        )
    # The complaint sweep ticks every 30 s ([complaints] sweep_seconds).
    cluster.wall[0] = FIRE + timedelta(seconds=30, milliseconds=20)
    await cluster.tick("complaints", offset=offset)
    cluster.wall[0] += timedelta(seconds=30)
    await cluster.tick("complaints", offset=offset)
    pages = [c for c in cluster.api.sent_to(700) if "Complaint SLA breach" in (c.text or "")]
    assert len(pages) == 1


def test_every_job_has_its_own_leader_key() -> None:
    from bot.scheduler import job_key

    sched = make_scheduler(None, POLICY, object(), lambda: FIRE)  # type: ignore[arg-type]
    names = {j.id for j in sched.get_jobs()}
    assert names == {"rescore", "queue", "surveys", "tier_notices", "care", "complaints"}
    assert len({job_key(n) for n in names}) == len(names)


def test_interval_jobs_tick_at_the_same_instants_on_every_instance() -> None:
    a = make_scheduler(None, POLICY, object(), lambda: FIRE)  # type: ignore[arg-type]
    b = make_scheduler(None, POLICY, object(), lambda: FIRE)  # type: ignore[arg-type]
    now = datetime(2026, 11, 1, 3, 0, 2, 345_000, tzinfo=UTC)
    for name in ("queue", "tier_notices"):
        ja, jb = a.get_job(name), b.get_job(name)
        assert ja.trigger.get_next_fire_time(None, now) == jb.trigger.get_next_fire_time(None, now)
    assert a.get_job("queue").trigger.get_next_fire_time(None, now) == now.replace(
        second=5, microsecond=0
    )
