"""Timed jobs (APScheduler 3, in-memory): rescoring, tier notices, the queue, surveys, care.

The database is the source of truth: the jobs only run work whose state lives in tables
(``scoring_runs``, ``tier_changes.notice``), so a restart loses nothing.

Several instances tick the same jobs. Every job is added through :func:`_add`, which wraps it
in :func:`exclusive`: on PostgreSQL only the instance holding the job's advisory lock runs it,
and (every backend) a job runs once per period: the period a tick belongs to is recorded in
``job_runs`` by a conditional upsert before the job runs, so an instance whose tick comes a
second later (clocks and timers are never in step) finds the period done. Interval jobs tick
on multiples of their interval since the epoch, the same instants on every instance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.tier_notices import BotTierNotifier
from bot.care_jobs import CareReminders
from bot.complaint_jobs import ComplaintJobs
from bot.desk import Desk
from bot.survey_jobs import SurveyJobs
from routing.clock import Clock
from routing.policy.root import Policy
from routing.scoring import rescoring, tier_notices
from routing.store import cluster

log = logging.getLogger(__name__)

NOTICE_SWEEP_SECONDS = 60
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

Wall = Callable[[], datetime]
Period = Callable[[datetime], datetime | None]


def _wall() -> datetime:
    return datetime.now(UTC)


def job_key(job: str) -> int:
    """The advisory-lock key of a scheduled job: one per job, so different jobs run in
    different instances at once, and never one job in two."""
    if job == "surveys":
        from bot.survey_jobs import _LEADER_KEY

        return _LEADER_KEY
    if job == "queue":
        from bot.desk.queue import LEADER_KEY as QUEUE_KEY

        return QUEUE_KEY
    return cluster.advisory_key("job:" + job)


def interval_period(seconds: float) -> Period:
    """The tick a moment belongs to: the nearest multiple of ``seconds`` since the epoch
    (ticks are scheduled on those multiples, and run a little late or, rarely, early)."""

    def period(now: datetime) -> datetime:
        n = math.floor((now - EPOCH).total_seconds() / seconds + 0.5)
        return EPOCH + timedelta(seconds=n * seconds)

    return period


def cron_period(trigger: CronTrigger) -> Period:
    """The fire time a moment belongs to: the latest one at or before it, allowing 30 s of
    early firing (cron fire times are at least a minute apart)."""

    def period(now: datetime) -> datetime | None:
        now = now.astimezone(UTC) + timedelta(seconds=30)
        for back in (60, 3_600, 86_400, 32 * 86_400, 367 * 86_400, 5 * 367 * 86_400):
            fire: datetime | None = trigger.get_next_fire_time(None, now - timedelta(seconds=back))
            if fire is None or fire > now:
                continue
            while True:
                after = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
                if after is None or after > now:
                    return fire.astimezone(UTC)
                fire = after
        return None

    return period


def exclusive(
    sessions: async_sessionmaker[AsyncSession],
    job: str,
    run: Callable[[], Awaitable[Any]],
    period: Period,
    *,
    instance: str,
    wall: Wall = _wall,
) -> Callable[[], Awaitable[None]]:
    """``run`` as a scheduled job that runs once per period across instances."""

    async def tick() -> None:
        async with cluster.leader(sessions, job_key(job)) as lead:
            if not lead:
                log.debug("job %s: another instance runs it", job)
                return
            now = wall()
            start = period(now)
            if start is None:
                return
            claim = await cluster.claim_period(sessions, job, start, instance, now)
            if not claim.won:
                log.debug("job %s: already run for %s", job, start.isoformat())
                return
            try:
                await run()
            except BaseException:
                # The period is not done: the next tick (here or elsewhere) runs it again.
                await cluster.release_period(sessions, job, start, claim.previous)
                raise

    tick.__name__ = tick.__qualname__ = f"job_{job}"
    return tick


async def rescore_job(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot | None,
    clock: Clock,
) -> None:
    async with sessions() as s, s.begin():
        result = await rescoring.rescore(s, policy, clock(), trigger="schedule")
    log.info(
        "scheduled rescoring: %d customers, %d tier changes in %.1f s",
        result.customers,
        result.change_count,
        result.seconds,
    )
    if bot is not None:
        # Tell the customers now, under the notices job's lock: never next to its sweep.
        async with cluster.leader(sessions, job_key("tier_notices")) as lead:
            if lead:
                await notices_job(sessions, policy, bot, clock)


async def notices_job(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot,
    clock: Clock,
) -> None:
    async with sessions() as s, s.begin():
        n = await tier_notices.send_pending(s, BotTierNotifier(bot), policy, clock())
    if n:
        log.info("tier notices handled: %d", n)


async def queue_job(sessions: async_sessionmaker[AsyncSession], desk: Desk) -> None:
    """Offers, manager windows, SLA alerts, silent agents, inactivity, position updates."""
    async with sessions() as s:
        await desk.queue.sweep(s)


def _every(seconds: float) -> tuple[IntervalTrigger, Period]:
    # Aligned to the epoch: every instance ticks at the same instants.
    return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC), interval_period(
        seconds
    )


def make_scheduler(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot | None,
    clock: Clock,
    *,
    instance: str | None = None,
    wall: Wall = _wall,
) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone=policy.scoring.timezone)
    me = instance or cluster.new_instance_id()

    def _add(
        job: str,
        run: Callable[[], Awaitable[Any]],
        trigger: BaseTrigger,
        period: Period,
        **options: Any,
    ) -> None:
        """The one way a job is scheduled: leader lock and once per period (``exclusive``)."""
        sched.add_job(
            exclusive(sessions, job, run, period, instance=me, wall=wall),
            trigger,
            id=job,
            coalesce=True,
            **options,
        )

    if policy.scoring.schedule:
        cron = CronTrigger.from_crontab(policy.scoring.schedule, timezone=policy.scoring.timezone)
        _add(
            "rescore",
            lambda: rescore_job(sessions, policy, bot, clock),
            cron,
            cron_period(cron),
            max_instances=1,
            misfire_grace_time=3600,
        )
    if bot is not None:
        # The queue's timers: all their state lives in the conversations and offers tables.
        desk = Desk(bot, policy, clock)
        _add(
            "queue",
            lambda: queue_job(sessions, desk),
            *_every(policy.queue.sweep_seconds),
            max_instances=1,
        )
        # Surveys: expiry, campaign runs and the outbox sweep, all read from the database.
        surveys = SurveyJobs(sessions, policy, bot, clock)
        _add(
            "surveys",
            lambda: surveys.tick(lead=False),
            *_every(policy.surveys.sweep_seconds),
            # The first tick at start-up: it reconciles what a dead process left behind.
            next_run_time=datetime.now(sched.timezone),
            max_instances=2,  # a tick that finds one running returns at once (SurveyJobs)
        )
        _add(
            "tier_notices",
            lambda: notices_job(sessions, policy, bot, clock),
            *_every(NOTICE_SWEEP_SECONDS),
            max_instances=1,
        )
        if policy.complaints.enabled:
            # Complaint SLAs: each warning and breach paged once (bot/complaint_jobs.py).
            complaints = ComplaintJobs(desk, policy, clock)
            _add(
                "complaints",
                lambda: complaints.sweep(sessions),
                *_every(policy.complaints.sweep_seconds),
                max_instances=1,
            )
        if policy.care.enabled:
            # Care: cadence and at-risk tasks, then their reminders (bot/care_jobs.py).
            care = CareReminders(bot, policy, clock)
            _add(
                "care",
                lambda: care.sweep(sessions),
                *_every(policy.care.sweep_minutes * 60),
                max_instances=1,
            )
    return sched
