"""Care tasks created by cadence per tier and by at-risk triggers, once per trigger or period,
even with two sweeps at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from routing.care import tasks, triggers
from routing.policy.root import Policy, parse_policy
from routing.store.care_models import CareTask, Complaint
from routing.store.models import Agent, Conversation, Customer
from tests.conftest import Db

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


async def customer(
    db: Db, ext: str, tier: str, *, created: datetime = NOW - timedelta(days=365), **kw: object
) -> int:
    async with db.sessions() as s, s.begin():
        c = Customer(
            external_id=ext,
            telegram_id=int(ext[1:]) + 7000,
            tier=tier,
            created_at=created,
            updated_at=created,
            **kw,
        )
        s.add(c)
        await s.flush()
        return c.id


async def agent(db: Db, telegram_id: int, name: str, role: str = "agent") -> int:
    async with db.sessions() as s, s.begin():
        a = Agent(telegram_id=telegram_id, name=name, role=role, created_at=NOW)
        s.add(a)
        await s.flush()
        return a.id


async def sweep(db: Db, policy: Policy, at: datetime) -> list[tuple[int, str]]:
    async with db.sessions() as s, s.begin():
        made = await triggers.sweep(s, policy, at)
    return sorted((t.customer_id, t.reason) for t in made)


async def all_tasks(db: Db) -> list[CareTask]:
    async with db.sessions() as s:
        return list((await s.execute(select(CareTask).order_by(CareTask.id))).scalars())


async def test_cadence_per_tier_from_the_last_contact(db: Db, policy: Policy) -> None:
    mia = await agent(db, 901, "Mia")
    vip = await customer(db, "K1", "VIP", account_manager="mia")
    a = await customer(db, "K2", "A")
    await customer(db, "K3", "C")  # no cadence for C
    new_vip = await customer(db, "K4", "VIP", created=NOW - timedelta(days=10))
    # The A customer talked to an agent 80 days ago: due at 90, created 3 days ahead.
    async with db.sessions() as s, s.begin():
        s.add(
            Conversation(
                customer_id=a,
                status="closed",
                tier="A",
                priority=1,
                origin="customer_request",
                queued_at=NOW - timedelta(days=80),
                last_agent_at=NOW - timedelta(days=80),
            )
        )
    assert await sweep(db, policy, NOW) == [(vip, "cadence")]
    [task] = await all_tasks(db)
    # Never contacted: due 30 days after the customer was created; the manager's task.
    assert task.due_at == NOW - timedelta(days=335) and task.agent_id == mia
    assert await sweep(db, policy, NOW + timedelta(days=6)) == []  # one pending at a time
    assert await sweep(db, policy, NOW + timedelta(days=7)) == [(a, "cadence")]
    async with db.sessions() as s:
        a_task = (await s.execute(select(CareTask).where(CareTask.customer_id == a))).scalar_one()
    assert a_task.due_at == NOW + timedelta(days=10) and a_task.agent_id is None  # the pool
    # The new VIP: due 30 days after creation (NOW + 20 d), shown from NOW + 17 d.
    assert await sweep(db, policy, NOW + timedelta(days=16)) == []
    assert await sweep(db, policy, NOW + timedelta(days=17)) == [(new_vip, "cadence")]
    # The VIP's visit done today: the next one is due 30 days later, shown 3 days early.
    async with db.sessions() as s, s.begin():
        m = await s.get(Agent, mia)
        assert m is not None
        result = await tasks.done(s, task.id, m, "called, all fine", NOW)
    assert result.outcome is tasks.Outcome.OK
    assert result.task is not None and result.task.outcome == "called, all fine"
    assert await sweep(db, policy, NOW + timedelta(days=26)) == []
    assert await sweep(db, policy, NOW + timedelta(days=27)) == [(vip, "cadence")]
    assert await sweep(db, policy, NOW + timedelta(days=27)) == []


async def test_two_sweeps_at_once_make_one_task_each(db: Db, policy: Policy) -> None:
    ids = [await customer(db, f"K{i}", "VIP") for i in range(1, 6)]
    both = await asyncio.gather(sweep(db, policy, NOW), sweep(db, policy, NOW))
    assert sorted(both[0] + both[1]) == [(i, "cadence") for i in ids]
    assert len(await all_tasks(db)) == 5
    # Two creators racing with the same key in two sessions: one task.
    async with db.sessions() as s:
        first = await s.get(Customer, ids[0])
    assert first is not None

    async def create(key: str) -> CareTask | None:
        async with db.sessions() as s, s.begin():
            return await tasks.create(
                s, first, tasks.DETRACTOR, due_at=NOW, dedupe_key=key, now=NOW
            )

    made = await asyncio.gather(create("detractor:1"), create("detractor:1"))
    assert sum(t is not None for t in made) == 1
    # Another trigger while one of that reason is pending: folded into it.
    assert await create("detractor:2") is None
    assert len(await all_tasks(db)) == 6


async def test_score_drop_and_pending_downgrade_for_human_first_tiers(
    db: Db, policy: Policy
) -> None:
    vip = await customer(db, "K1", "VIP", score=80.0)
    a = await customer(db, "K2", "A", score=80.0)
    below = await customer(
        db, "K3", "VIP", score=70.0, below_count=1, below_since=NOW - timedelta(days=1)
    )
    pinned = await customer(db, "K4", "VIP", score=70.0, below_count=1, tier_override="VIP")
    no_cadence = parse_policy({"care": {"cadence_days": {}}})
    assert await sweep(db, no_cadence, NOW) == [(below, "downgrade_pending")]
    assert await sweep(db, no_cadence, NOW) == []  # once per episode
    # Scores move: the VIP rises to 85 (the new peak), then falls to 74 (11 below).
    for score in (85.0, 74.0):
        async with db.sessions() as s, s.begin():
            await s.execute(update(Customer).where(Customer.id.in_([vip, a])).values(score=score))
        made = await sweep(db, no_cadence, NOW + timedelta(hours=1))
    assert made == [(vip, "score_drop")]  # A is not human_first
    tasks_ = {t.customer_id: t for t in await all_tasks(db)}
    assert tasks_[vip].detail == "score 85.0 -> 74.0" and tasks_[vip].due_at == NOW + timedelta(
        hours=1
    )
    assert pinned not in tasks_
    # The next fall is measured from 74: 70 is not enough.
    async with db.sessions() as s, s.begin():
        await s.execute(update(Customer).where(Customer.id == vip).values(score=70.0))
    assert await sweep(db, no_cadence, NOW + timedelta(hours=2)) == []
    async with db.sessions() as s:
        c = await s.get(Customer, vip)
        other = await s.get(Customer, a)
    assert c is not None and c.care_score_ref == 74.0
    assert other is not None and other.care_score_ref is None
    # A new episode below the tier (after a done task) is a new trigger.
    async with db.sessions() as s, s.begin():
        sup = Agent(telegram_id=990, name="Sup", role="supervisor", created_at=NOW)
        s.add(sup)
        await s.flush()
        assert (await tasks.done(s, tasks_[below].id, sup, None, NOW)).task is not None
        await s.execute(
            update(Customer)
            .where(Customer.id == below)
            .values(below_since=NOW + timedelta(days=20))
        )
    assert await sweep(db, no_cadence, NOW + timedelta(days=20)) == [(below, "downgrade_pending")]


async def test_detractor_and_complaint_triggers(db: Db, policy: Policy) -> None:
    vip = await customer(db, "K1", "VIP")
    b = await customer(db, "K2", "B")
    async with db.sessions() as s, s.begin():
        t1 = await triggers.on_detractor(s, vip, 41, "VIP", policy, NOW)
        again = await triggers.on_detractor(s, vip, 41, "VIP", policy, NOW)
        none = await triggers.on_detractor(s, b, 42, "B", policy, NOW)
        case = Complaint(
            customer_id=vip,
            tier="VIP",
            category="billing",
            severity=1.5,
            description="",
            opened_by="customer",
            status="open",
            opened_at=NOW,
        )
        s.add(case)
        await s.flush()
        t2 = await triggers.on_complaint(s, case, policy, NOW)
        off = await triggers.on_complaint(
            s, case, parse_policy({"care": {"complaint": False}}), NOW
        )
    assert t1 is not None and (t1.reason, t1.due_at, t1.dedupe_key) == (
        "detractor",
        NOW,
        "detractor:41",
    )
    assert again is None and none is None and off is None
    assert t2 is not None and t2.detail == f"complaint #{case.id} (billing)"
