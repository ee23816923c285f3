"""NPS relationship campaigns: per tier, on a cron schedule, for a deterministic sample.

A campaign *run* is identified by its key ``nps:<tier>:<fire time UTC>``. A run is recorded
in ``survey_campaigns`` before any of its rows, its rows are inserted in batches with
``ON CONFLICT DO NOTHING`` on ``(campaign, customer_id)``, and ``finished_at`` is set last.
A crash part-way leaves an unfinished run; the next tick resumes it and creates only the
missing rows. Which customers are sampled is a hash of (run key, customer id), so a resumed
run picks the same people.

Ticks are driven by the bot's clock, not by a timer per campaign: each tick looks for the
latest fire time of each schedule that is not older than ``nps.catch_up_hours`` and runs it
if it has not finished. A run missed while the bot was down is therefore caught up at
start-up, and tests can move the clock instead of waiting for a real cron.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.policy.root import Policy
from routing.policy.surveys import NpsCampaign
from routing.scoring.model import NPS
from routing.store.models import Customer, Survey, SurveyCampaign
from surveys.outbox_schedule import expiry_for
from surveys.outbox_states import SCHEDULED

__all__ = [
    "CampaignRun",
    "campaign_key",
    "insert_once",
    "latest_fire",
    "run_campaign",
    "run_due",
    "sampled",
]

log = logging.getLogger(__name__)

BATCH = 1000
# A tick this long after a fire time still runs it, even with catch_up_hours = 0.
MIN_LOOKBACK = timedelta(minutes=10)


@dataclass(frozen=True)
class CampaignRun:
    key: str
    tier: str
    fire_at: datetime
    created: int  # rows inserted by this call (0 when resuming a run that had them all)
    total: int  # rows of the run


def campaign_key(kind: str, tier: str, fire_at: datetime) -> str:
    return f"{kind}:{tier}:{fire_at.astimezone(UTC):%Y%m%dT%H%MZ}"


def sampled(key: str, customer_id: int, ratio: float) -> bool:
    """Deterministic: the same run and customer always give the same answer."""
    if ratio >= 1:
        return True
    digest = hashlib.sha256(f"{key}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < ratio


def latest_fire(
    schedule: str, timezone: str, now: datetime, lookback: timedelta
) -> datetime | None:
    """The latest fire time of ``schedule`` in (now - lookback, now], or None."""
    trigger = CronTrigger.from_crontab(schedule, timezone=timezone)
    start = now - max(lookback, MIN_LOOKBACK)
    fire = trigger.get_next_fire_time(None, start)
    last: datetime | None = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return None if last is None else last.astimezone(UTC)


def insert_once(session: AsyncSession) -> Any:
    """``INSERT INTO surveys ... ON CONFLICT (campaign, customer_id) DO NOTHING`` in the
    session's dialect: a run (or a broadcast, :mod:`surveys.broadcasts`) resumed after a
    crash writes only the rows it lacks."""
    table: Table = Survey.__table__  # type: ignore[assignment]
    name = session.get_bind().dialect.name
    if name == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif name == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise NotImplementedError(f"campaigns are not supported on {name}")
    return stmt.on_conflict_do_nothing(index_elements=["campaign", "customer_id"])


async def _count(sessions: async_sessionmaker[AsyncSession], key: str) -> int:
    async with sessions() as s:
        q = select(func.count()).select_from(Survey).where(Survey.campaign == key)
        return int(await s.scalar(q) or 0)


async def run_campaign(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    campaign: NpsCampaign,
    fire_at: datetime,
    now: datetime,
) -> CampaignRun | None:
    """Create (or finish creating) the rows of one run; None if it had already finished."""
    key = campaign_key(NPS, campaign.tier, fire_at)
    async with sessions() as s, s.begin():
        run = await s.get(SurveyCampaign, key)
        if run is not None and run.finished_at is not None:
            return None
        if run is None:
            s.add(
                SurveyCampaign(
                    key=key,
                    kind=NPS,
                    tier=campaign.tier,
                    fire_at=fire_at,
                    sample_ratio=campaign.sample_ratio,
                    created_at=now,
                )
            )
    expires_at = max(fire_at, now) + expiry_for(NPS, policy)
    before = await _count(sessions, key)
    after = 0
    while True:
        async with sessions() as s, s.begin():
            # Keyset batches by id: memory stays flat however large the tier.
            ids = list(
                (
                    await s.execute(
                        select(Customer.id)
                        .where(
                            Customer.id > after,
                            Customer.tier == campaign.tier,
                            Customer.is_guest.is_(False),
                            Customer.telegram_id.is_not(None),
                            Customer.surveys_opt_out.is_(False),
                            Customer.unreachable_at.is_(None),
                        )
                        .order_by(Customer.id)
                        .limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                break
            after = ids[-1]
            rows = [
                {
                    "kind": NPS,
                    "customer_id": cid,
                    "campaign": key,
                    "status": SCHEDULED,
                    "due_at": fire_at,
                    "created_at": now,
                    "expires_at": expires_at,
                }
                for cid in ids
                if sampled(key, cid, campaign.sample_ratio)
            ]
            if rows:
                await s.execute(insert_once(s), rows)
    total = await _count(sessions, key)
    created = total - before
    async with sessions() as s, s.begin():
        await s.execute(
            update(SurveyCampaign)
            .where(SurveyCampaign.key == key)
            .values(finished_at=now, surveys=total)
        )
    log.info("campaign %s: %d surveys (%d new)", key, total, created)
    return CampaignRun(key, campaign.tier, fire_at, created, total)


async def run_due(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    now: datetime,
    campaigns: Sequence[NpsCampaign] | None = None,
) -> list[CampaignRun]:
    """Run every campaign whose latest fire time has come and whose run has not finished."""
    nps = policy.surveys.nps
    runs: list[CampaignRun] = []
    for campaign in nps.campaigns if campaigns is None else campaigns:
        if campaign.tier not in policy.tier_names:
            log.warning("NPS campaign for unknown tier %r ignored", campaign.tier)
            continue
        fire = latest_fire(
            campaign.schedule, policy.surveys.timezone, now, timedelta(hours=nps.catch_up_hours)
        )
        if fire is None:
            continue
        run = await run_campaign(sessions, policy, campaign, fire, now)
        if run is not None:
            runs.append(run)
    return runs
