"""Care task transitions (start, done, snooze), who may act, overdue tasks, reminders (each
once per interval, a snooze respected) and the customer card."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import update

from routing.care import card, tasks
from routing.complaints import cases
from routing.policy.root import Policy, parse_policy
from routing.queue import conversations
from routing.store.care_models import CareTask
from routing.store.models import Agent, Customer, Order, Survey
from tests.conftest import Db
from tests.integration.test_care_triggers import NOW, agent, customer


async def task_for(db: Db, cid: int, reason: str = tasks.DETRACTOR, key: str = "k1") -> int:
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, cid)
        assert cu is not None
        t = await tasks.create(s, cu, reason, due_at=NOW, dedupe_key=key, now=NOW)
        assert t is not None
        return t.id


async def as_agent(db: Db, agent_id: int) -> Agent:
    async with db.sessions() as s:
        a = await s.get(Agent, agent_id)
        assert a is not None
        return a


async def reminders(db: Db, policy: Policy, at: datetime) -> list[tuple[int, list[str]]]:
    async with db.sessions() as s, s.begin():
        due = await tasks.due_reminders(s, at, policy)
    return [(r.task.id, [a.name for a in r.recipients]) for r in due]


async def test_start_done_snooze_and_who_may_act(db: Db, policy: Policy) -> None:
    mia = await as_agent(db, await agent(db, 901, "Mia"))
    bob = await as_agent(db, await agent(db, 902, "Bob"))
    sup = await as_agent(db, await agent(db, 903, "Sue", "supervisor"))
    vip = await customer(db, "K1", "VIP", account_manager="901")
    tid = await task_for(db, vip)
    async with db.sessions() as s, s.begin():
        assert (await tasks.start(s, tid, bob, 1, NOW)).outcome is tasks.Outcome.NOT_YOURS
        assert (await tasks.done(s, 999, mia, None, NOW)).outcome is tasks.Outcome.UNKNOWN
        snoozed = await tasks.snooze(s, tid, mia, NOW, policy)
        assert snoozed.outcome is tasks.Outcome.OK and snoozed.task is not None
        assert (snoozed.task.status, snoozed.task.snoozed_until) == (
            "snoozed",
            NOW + timedelta(hours=24),
        )
        cu = await s.get(Customer, vip)
        assert cu is not None
        conv, _ = await conversations.open_conversation(s, cu, policy, "care", NOW)
        started = await tasks.start(s, tid, mia, conv.id, NOW + timedelta(hours=1))
        assert started.task is not None
        assert (started.task.status, started.task.conversation_id, started.task.snoozed_until) == (
            "started",
            conv.id,
            None,
        )
        # A started task cannot be snoozed; a supervisor may close anyone's task, once.
        assert (await tasks.snooze(s, tid, mia, NOW, policy)).outcome is tasks.Outcome.NOT_NOW
        finished = await tasks.done(s, tid, sup, "  left a voucher ", NOW + timedelta(hours=2))
        assert finished.task is not None and (finished.task.status, finished.task.outcome) == (
            "done",
            "left a voucher",
        )
        assert finished.task.agent_id == mia.id  # still Mia's task
        assert (await tasks.done(s, tid, mia, None, NOW)).outcome is tasks.Outcome.NOT_NOW


async def test_a_pool_task_is_taken_by_whoever_acts_first(db: Db, policy: Policy) -> None:
    ann = await as_agent(db, await agent(db, 901, "Ann"))
    bob = await as_agent(db, await agent(db, 902, "Bob"))
    cid = await customer(db, "K1", "A")
    tid = await task_for(db, cid)
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, cid)
        assert cu is not None
        conv_id = (await conversations.open_conversation(s, cu, policy, "care", NOW))[0].id

    async def take(who: Agent) -> tasks.Outcome:
        async with db.sessions() as s, s.begin():
            return (await tasks.start(s, tid, who, conv_id, NOW)).outcome

    outcomes = set(await asyncio.gather(take(ann), take(bob)))
    # The loser finds it started, or already someone else's.
    assert outcomes in (
        {tasks.Outcome.OK, tasks.Outcome.NOT_NOW},
        {tasks.Outcome.OK, tasks.Outcome.NOT_YOURS},
    )
    async with db.sessions() as s:
        t = await s.get(CareTask, tid)
    assert t is not None and t.status == "started" and t.agent_id in (ann.id, bob.id)


async def test_reminders_once_per_interval_and_after_a_snooze(db: Db) -> None:
    policy = parse_policy({"care": {"pool": ["Pia", "902"], "remind_every_hours": 24}})
    mia = await as_agent(db, await agent(db, 901, "Mia"))
    await agent(db, 902, "Bob")
    await agent(db, 903, "Pia")
    await agent(db, 904, "Sue", "supervisor")
    mine = await task_for(db, await customer(db, "K1", "VIP", account_manager="mia"), key="a")
    pooled = await task_for(db, await customer(db, "K2", "A"), key="b")
    later = NOW + timedelta(days=2)
    k3 = await customer(db, "K3", "VIP")
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, k3)
        assert cu is not None
        future = await tasks.create(s, cu, tasks.CADENCE, due_at=later, dedupe_key="c", now=NOW)
        assert future is not None
    both = await asyncio.gather(reminders(db, policy, NOW), reminders(db, policy, NOW))
    assert sorted(both[0] + both[1]) == [(mine, ["Mia"]), (pooled, ["Pia", "Bob"])]
    assert await reminders(db, policy, NOW + timedelta(hours=23)) == []
    async with db.sessions() as s, s.begin():
        await tasks.snooze(
            s, mine, mia, NOW + timedelta(hours=23), policy, NOW + timedelta(hours=30)
        )
    assert await reminders(db, policy, NOW + timedelta(hours=24)) == [(pooled, ["Pia", "Bob"])]
    # The snooze ended: reminded at once (and open again), not a day after the last one.
    assert await reminders(db, policy, NOW + timedelta(hours=30)) == [(mine, ["Mia"])]
    async with db.sessions() as s:
        t = await s.get(CareTask, mine)
        assert t is not None and t.status == "open"
        overdue = await tasks.overdue(s, later)
        only_mia = await tasks.overdue(s, later, agent_id=mia.id)
        pool = await tasks.pending(s, agent_id=None)
    assert [t.id for t, _ in overdue] == [mine, pooled, future.id]
    assert [t.id for t, _ in only_mia] == [mine]
    assert [t.id for t, _ in pool] == [pooled, future.id]
    # Without a pool, the supervisors are reminded of pool tasks.
    assert await reminders(db, Policy(), later + timedelta(days=1)) == [
        (mine, ["Mia"]),
        (pooled, ["Sue"]),
        (future.id, ["Sue"]),
    ]
    assert (
        await reminders(db, parse_policy({"care": {"enabled": False}}), later + timedelta(days=9))
        == []
    )


async def test_the_customer_card(db: Db, policy: Policy) -> None:
    cid = await customer(db, "K1", "VIP", care_score_ref=75.0)
    async with db.sessions() as s, s.begin():
        for i in range(4):
            s.add(
                Order(
                    order_id=f"o{i}",
                    external_id="K1",
                    amount_cents=1000 * (i + 1),
                    ordered_at=NOW - timedelta(days=i),
                )
            )
        s.add(
            Survey(
                kind="csat",
                customer_id=cid,
                status="answered",
                score=2,
                due_at=NOW,
                created_at=NOW,
                answered_at=NOW,
            )
        )
        cu = await s.get(Customer, cid)
        assert cu is not None
        opened = await cases.open_by_customer(s, cu, "delivery", "late", NOW, policy)
        # (the complaint rescored them; the card shows what is stored)
        await s.execute(
            update(Customer).where(Customer.id == cid).values(score=64.0, below_count=1)
        )
    async with db.sessions() as s:
        c = await card.card(s, cid)
        assert await card.card(s, 999) is None
    assert c is not None
    assert (c.score, c.peak, c.below_count) == (64.0, 75.0, 1)
    assert [o.order_id for o in c.orders] == ["o0", "o1", "o2"]
    assert c.last_csat is not None and c.last_csat.score == 2
    assert [x.id for x in c.open_complaints] == [opened.complaint.id]
