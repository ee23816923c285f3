"""The survey tick the scheduler runs every ``surveys.sweep_seconds``.

One tick: expire what is overdue, start any campaign run whose cron time has come, finish
writing any broadcast whose command died part-way, then sweep the outbox (reconcile, claim,
send: surveys and announcements alike) until nothing is due. Everything it acts on is
in the database, so a tick after a restart picks up exactly where the dead process stopped.

Ticks never overlap: a tick that finds the previous one still sending (a large campaign
takes minutes at Telegram's pace) returns at once. That is also what makes the sweep's
reconciliation safe: while no tick runs, no row is legitimately ``sending``. With several
instances on PostgreSQL, a tick runs only in the one holding an advisory lock.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.survey_transport import AiogramTransport
from bot.handlers.survey import render
from routing.clock import Clock
from routing.policy.root import Policy
from routing.store import cluster
from surveys import broadcasts, campaigns, outbox
from surveys.push_transport import Transport

log = logging.getLogger(__name__)


# pg_try_advisory_lock key: "surveys" in ASCII.
_LEADER_KEY = 0x7375727665797300


class SurveyJobs:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: Policy,
        bot: Bot | None,
        clock: Clock,
        transport: Transport | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.clock = clock
        self.transport = transport or (AiogramTransport(bot, render) if bot else None)
        self._lock = asyncio.Lock()

    async def tick(self, *, lead: bool = True) -> outbox.SweepReport | None:
        """One tick. ``lead=False``: the caller holds the leader lock already (the scheduler
        wraps every job in it, bot.scheduler.exclusive)."""
        if self._lock.locked():
            return None
        async with self._lock:
            if lead:
                async with cluster.leader(self.sessions, _LEADER_KEY) as leader:
                    if not leader:
                        return None  # another instance runs the surveys
                    return await self._run()
            return await self._run()

    async def _run(self) -> outbox.SweepReport | None:
        async with self.sessions() as s, s.begin():
            expired = await outbox.expire(s, self.policy, self.clock())
        if expired:
            log.info("surveys expired: %d", expired)
        for run in await campaigns.run_due(self.sessions, self.policy, self.clock()):
            log.info("NPS campaign %s: %d surveys", run.key, run.total)
        for done in await broadcasts.resume_unfinished(self.sessions, self.clock()):
            log.info("broadcast %s finished: %d rows (%d new)", done.key, done.rows, done.written)
        if self.transport is None:
            return None
        report = await outbox.sweep(self.sessions, self.policy, self.transport, self.clock)
        st = report.stats
        if st is not None and (st.sent or st.failed or st.unreachable):
            log.info(
                "surveys sent %d, unreachable %d, failed %d in %.1fs (%.1f/s); "
                "skipped %s, deferred %d",
                st.sent,
                st.unreachable,
                st.failed,
                st.elapsed,
                st.rate,
                report.settled,
                report.deferred,
            )
        return report
