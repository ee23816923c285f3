"""The scheduler's survey tick: expiry, campaign runs and the sweep, one at a time, and
(on PostgreSQL) only in the instance holding the leader lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from bot.survey_jobs import _LEADER_KEY, SurveyJobs
from routing.policy.root import parse_policy
from routing.store.models import Customer, Survey
from tests.conftest import Db
from tests.integration.test_outbox import FakeTransport

FIRE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = parse_policy(
    {
        "surveys": {
            "sender": {"global_rate": 1000, "per_chat_interval": 0},
            "nps": {"campaigns": [{"tier": "C", "schedule": "0 12 * * *"}]},
        }
    }
)


async def _seed(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        s.add_all(
            Customer(external_id=f"J{i}", telegram_id=i, tier="C", created_at=FIRE, updated_at=FIRE)
            for i in range(1, 6)
        )


async def test_one_tick_runs_the_campaign_and_sends_it_and_ticks_never_overlap(db: Db) -> None:
    await _seed(db)
    t = FakeTransport()
    jobs = SurveyJobs(db.sessions, POLICY, None, lambda: FIRE + timedelta(minutes=1), t)
    first, second = await asyncio.gather(jobs.tick(), jobs.tick())
    assert second is None and first is not None  # the second found the first running
    assert first.stats is not None and first.stats.sent == 5
    assert sorted(p.chat_id for p in t.calls) == [1, 2, 3, 4, 5]
    # Three days later the next tick expires the unanswered ones (NPS: 72 h), and that day's
    # run asks nobody: everyone was surveyed within the 14-day cap.
    later = SurveyJobs(db.sessions, POLICY, None, lambda: FIRE + timedelta(hours=73), t)
    await later.tick()
    async with db.sessions() as s:
        rows = list((await s.execute(select(Survey.campaign, Survey.status))).all())
    assert {st for key, st in rows if key == "nps:C:20261123T1200Z"} == {"expired"}
    assert {st for key, st in rows if key == "nps:C:20261126T1200Z"} == {"skipped"}
    assert len(t.calls) == 5


async def test_only_the_leader_instance_ticks_on_postgresql(pg_db: Db) -> None:
    await _seed(pg_db)
    t = FakeTransport()
    jobs = SurveyJobs(pg_db.sessions, POLICY, None, lambda: FIRE + timedelta(minutes=1), t)
    async with pg_db.engine.connect() as other:
        # Another instance holds the lock: this one does nothing.
        assert await other.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LEADER_KEY})
        assert await jobs.tick() is None
        assert t.calls == []
        await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LEADER_KEY})
    report = await jobs.tick()
    assert report is not None and len(t.calls) == 5
