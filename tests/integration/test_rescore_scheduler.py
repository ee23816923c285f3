"""The rescoring cron: configured from the policy, and the job it runs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.scheduler import make_scheduler, rescore_job
from routing.policy.root import Policy, parse_policy
from routing.store.models import Customer, Order, ScoringRun
from tests.conftest import Db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_cron_comes_from_the_policy(policy: Policy) -> None:
    sched = make_scheduler(None, policy, None, lambda: NOW)  # type: ignore[arg-type]
    job = sched.get_job("rescore")
    assert job is not None
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["minute"], fields["hour"], fields["day"]) == ("0", "3", "1")
    weekly = parse_policy({"scoring": {"schedule": "30 2 * * mon", "timezone": "Europe/Berlin"}})
    job = make_scheduler(None, weekly, None, lambda: NOW).get_job("rescore")  # type: ignore[arg-type]
    assert job is not None and str(job.trigger.timezone) == "Europe/Berlin"
    off = parse_policy({"scoring": {"schedule": ""}})
    assert make_scheduler(None, off, None, lambda: NOW).get_jobs() == []  # type: ignore[arg-type]


async def test_the_job_rescores_everyone_and_records_the_run(sqlite_db: Db, policy: Policy) -> None:
    async with sqlite_db.sessions() as s, s.begin():
        s.add(Customer(external_id="J", tier="C", created_at=NOW, updated_at=NOW))
        s.add(Order(order_id="j1", external_id="J", amount_cents=60_000_000, ordered_at=NOW))
    await rescore_job(sqlite_db.sessions, policy, None, lambda: NOW)
    async with sqlite_db.sessions() as s:
        tier = await s.scalar(select(Customer.tier).where(Customer.external_id == "J"))
        run = (await s.scalars(select(ScoringRun))).one()
    assert tier == "VIP" and (run.trigger, run.customers, run.changes) == ("schedule", 1, 1)
