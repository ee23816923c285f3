"""The complaint SLA sweep the scheduler runs every ``[complaints] sweep_seconds``.

``routing.complaints.sla.sweep`` records each newly reached warning or breach of an
unresolved case once in its timeline (the database's unique index decides, so two instances
or a restart never record one twice) and returns them; this job then pages, after the
commit: the supervisors for every warning and breach, and for a breached case of a
human_first tier the customer's account manager too. A target found met late (between two
sweeps) is on record but pages nobody. Each event also counts in
``contactbot_sla_events_total`` with kind ``complaint_acknowledge`` or
``complaint_resolve``. The scheduler runs it once per period across instances
(bot/scheduler.py ``exclusive``).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.adapters.case_pager import customer_name
from bot.desk import Desk
from bot.http.metrics import metrics
from bot.i18n import for_agents
from routing.clock import Clock
from routing.complaints import sla
from routing.policy.root import Policy
from routing.queue.sla import supervisors
from routing.store.models import Agent

log = logging.getLogger(__name__)


class ComplaintJobs:
    def __init__(self, desk: Desk, policy: Policy, clock: Clock) -> None:
        self.desk = desk
        self.policy = policy
        self.clock = clock

    async def sweep(self, sessions: async_sessionmaker[AsyncSession]) -> list[sla.Alert]:
        async with sessions() as s:
            async with s.begin():
                alerts = await sla.sweep(s, self.policy, self.clock())
                bosses = await supervisors(s) if alerts else []
            await self.page(alerts, bosses)
        if alerts:
            log.info("complaint SLA: %d warnings/breaches", len(alerts))
        return alerts

    async def page(self, alerts: list[sla.Alert], bosses: list[Agent]) -> None:
        for a in alerts:
            metrics().sla_event(a.complaint.tier, f"complaint_{a.target}", a.level)
            if not a.page:
                continue  # met late, found after the fact: on record only
            with for_agents():  # no update here: the desk's language
                text = texts.complaint.sla_alert(
                    a.complaint.id,
                    customer_name(a.customer),
                    a.complaint.tier,
                    a.target,
                    a.level,
                    a.elapsed_s,
                    a.target_s,
                    a.agent.name if a.agent else None,
                )
            told = set()
            for boss in bosses:
                await self.desk.send_quietly(boss.telegram_id, text)
                told.add(boss.telegram_id)
            if a.manager is not None and a.manager.telegram_id not in told:
                await self.desk.send_quietly(a.manager.telegram_id, text)
