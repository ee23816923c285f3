"""Timed jobs (APScheduler 3, in-memory): the rescoring cron and the tier-notice sweep.

The database is the source of truth: the jobs only run work whose state lives in tables
(``scoring_runs``, ``tier_changes.notice``), so a restart loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.desk import Desk
from bot.survey_jobs import SurveyJobs
from bot.tier_notices import BotTierNotifier
from routing import rescoring, tier_notices
from routing.policy import Policy

log = logging.getLogger(__name__)

NOTICE_SWEEP_SECONDS = 60


async def rescore_job(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot | None,
    clock: Callable[[], datetime],
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
        await notices_job(sessions, policy, bot, clock)


async def notices_job(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    async with sessions() as s, s.begin():
        n = await tier_notices.send_pending(s, BotTierNotifier(bot), policy, clock())
    if n:
        log.info("tier notices handled: %d", n)


async def queue_job(sessions: async_sessionmaker[AsyncSession], desk: Desk) -> None:
    """Offers, manager windows, SLA alerts, silent agents, inactivity, position updates."""
    from bot.queue_desk import leader

    async with leader(sessions) as lead:
        if not lead:
            return
        async with sessions() as s:
            await desk.queue.sweep(s)


def make_scheduler(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot | None,
    clock: Callable[[], datetime],
) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone=policy.scoring.timezone)
    if policy.scoring.schedule:
        sched.add_job(
            rescore_job,
            CronTrigger.from_crontab(policy.scoring.schedule, timezone=policy.scoring.timezone),
            args=(sessions, policy, bot, clock),
            id="rescore",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
    if bot is not None:
        # The queue's timers: all their state lives in the conversations and offers tables.
        sched.add_job(
            queue_job,
            "interval",
            seconds=policy.queue.sweep_seconds,
            args=(sessions, Desk(bot, policy, clock)),
            id="queue",
            max_instances=1,
            coalesce=True,
        )
        # Surveys: expiry, campaign runs and the outbox sweep, all read from the database.
        sched.add_job(
            SurveyJobs(sessions, policy, bot, clock).tick,
            "interval",
            seconds=policy.surveys.sweep_seconds,
            id="surveys",
            # The first tick at start-up: it reconciles what a dead process left behind.
            next_run_time=datetime.now(sched.timezone),
            max_instances=2,  # a tick that finds one running returns at once (SurveyJobs)
            coalesce=True,
        )
        sched.add_job(
            notices_job,
            "interval",
            seconds=NOTICE_SWEEP_SECONDS,
            args=(sessions, policy, bot, clock),
            id="tier_notices",
            max_instances=1,
            coalesce=True,
        )
    return sched
