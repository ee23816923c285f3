"""NPS campaigns: per-tier crons, deterministic sampling, idempotent runs, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from routing.policy.root import Policy, parse_policy
from routing.store.models import Customer, Survey, SurveyCampaign
from surveys import campaigns
from surveys.campaigns import campaign_key, latest_fire, sampled
from tests.conftest import Db

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_latest_fire_of_a_cron() -> None:
    monthly = "0 11 1 * *"
    at = datetime(2026, 12, 1, 11, 3, tzinfo=UTC)
    assert latest_fire(monthly, "UTC", at, timedelta(hours=24)) == datetime(
        2026, 12, 1, 11, tzinfo=UTC
    )
    assert latest_fire(monthly, "UTC", at - timedelta(minutes=4), timedelta(hours=24)) is None
    # Two days late is beyond a 24 h catch-up: wait for the next run.
    assert latest_fire(monthly, "UTC", at + timedelta(days=2), timedelta(hours=24)) is None
    # In the business time zone: 11:00 Berlin is 10:00 UTC in winter.
    assert latest_fire(monthly, "Europe/Berlin", at, timedelta(hours=24)) == datetime(
        2026, 12, 1, 10, tzinfo=UTC
    )


def test_sampling_is_deterministic_and_follows_the_ratio() -> None:
    key = "nps:C:20270101T1100Z"
    picked = {i for i in range(10_000) if sampled(key, i, 0.2)}
    assert 1_800 < len(picked) < 2_200
    assert picked == {i for i in range(10_000) if sampled(key, i, 0.2)}
    other = {i for i in range(10_000) if sampled("nps:C:20270401T1100Z", i, 0.2)}
    assert other != picked  # each run asks a fresh sample
    assert all(sampled(key, i, 1.0) for i in range(100))


async def _customers(db: Db, tier: str, n: int, start: int, **kw: Any) -> list[int]:
    async with db.sessions() as s, s.begin():
        rows = [
            Customer(
                external_id=f"{tier}{start + i}",
                telegram_id=start + i,
                tier=tier,
                created_at=T0,
                updated_at=T0,
                **kw,
            )
            for i in range(n)
        ]
        s.add_all(rows)
        await s.flush()
        return [r.id for r in rows]


async def _count(db: Db, key: str | None = None) -> int:
    async with db.sessions() as s:
        q = select(func.count()).select_from(Survey)
        if key is not None:
            q = q.where(Survey.campaign == key)
        return int(await s.scalar(q) or 0)


async def test_per_tier_crons_and_sample_ratio(db: Db, policy: Policy) -> None:
    await _customers(db, "VIP", 20, 1000)
    c_ids = await _customers(db, "C", 400, 5000)
    await _customers(db, "C", 5, 9000, is_guest=True)
    await _customers(db, "C", 5, 9100, surveys_opt_out=True)
    await _customers(db, "C", 5, 9200, unreachable_at=T0)
    # December: only the monthly VIP campaign runs (A/B/C are quarterly: Jan, Apr, Jul, Oct).
    dec = datetime(2026, 12, 1, 11, 1, tzinfo=UTC)
    runs = await campaigns.run_due(db.sessions, policy, dec)
    assert [(r.tier, r.total) for r in runs] == [("VIP", 20)]
    assert await campaigns.run_due(db.sessions, policy, dec + timedelta(minutes=1)) == []
    jan = datetime(2027, 1, 1, 11, 0, tzinfo=UTC)
    runs = {r.tier: r for r in await campaigns.run_due(db.sessions, policy, jan)}
    assert set(runs) == {"VIP", "A", "B", "C"}
    assert runs["A"].total == runs["B"].total == 0  # no A or B customers: empty runs
    key = campaign_key("nps", "C", jan)
    expected = [c for c in c_ids if sampled(key, c, 0.1)]
    assert runs["C"].total == len(expected) and 20 <= len(expected) <= 65
    async with db.sessions() as s:
        asked = set(
            (await s.execute(select(Survey.customer_id).where(Survey.campaign == key))).scalars()
        )
        row = (await s.execute(select(Survey).where(Survey.campaign == key).limit(1))).scalar_one()
        run = await s.get(SurveyCampaign, key)
    assert asked == set(expected)  # guests, opted-out and unreachable never sampled
    assert (row.kind, row.status, row.due_at) == ("nps", "scheduled", jan)
    assert row.expires_at == jan + timedelta(hours=72)
    assert run is not None and run.finished_at == jan and run.surveys == len(expected)


async def test_a_crashed_run_resumes_without_duplicates(db: Db) -> None:
    policy = parse_policy(
        {"surveys": {"nps": {"campaigns": [{"tier": "B", "schedule": "0 9 * * *"}]}}}
    )
    await _customers(db, "B", 2500, 20_000)  # three insert batches
    fire = datetime(2026, 11, 24, 9, tzinfo=UTC)
    key = campaign_key("nps", "B", fire)
    # As a crash after the first batch leaves it: an unfinished run and some of its rows.
    async with db.sessions() as s, s.begin():
        s.add(
            SurveyCampaign(
                key=key, kind="nps", tier="B", fire_at=fire, sample_ratio=1.0, created_at=fire
            )
        )
        first = (await s.execute(select(Customer.id).order_by(Customer.id).limit(1000))).scalars()
        s.add_all(
            Survey(
                kind="nps", customer_id=c, campaign=key, status="scheduled", due_at=fire,
                created_at=fire,
            )
            for c in first
        )  # fmt: skip
    # Restarted three hours later: the tick catches the run up and finishes it.
    later = fire + timedelta(hours=3)
    [run] = await campaigns.run_due(db.sessions, policy, later)
    assert (run.key, run.created, run.total) == (key, 1500, 2500)
    assert await _count(db, key) == 2500
    assert await campaigns.run_due(db.sessions, policy, later + timedelta(minutes=5)) == []
    # The next day's run is another key.
    [nxt] = await campaigns.run_due(db.sessions, policy, fire + timedelta(days=1))
    assert nxt.key != key and await _count(db) == 5000
