"""The care domain the bot carries out, on SQLite and PostgreSQL: a reminder's lease and its
confirmation, the immediate claim of a new task, *Start chat* pressed twice at once, and an
agent's agenda."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from routing.care import agenda, outreach, reminding, tasks
from routing.care.outreach import Start
from routing.policy.root import Policy, parse_policy
from routing.store.care_models import CareTask
from routing.store.models import Agent, Conversation, Customer
from tests.conftest import Db
from tests.integration.test_care_tasks import as_agent, task_for
from tests.integration.test_care_triggers import NOW, agent, customer

LEASE = timedelta(minutes=30)


async def _reminded_at(db: Db, task_id: int) -> object:
    async with db.sessions() as s:
        return await s.scalar(select(CareTask.reminded_at).where(CareTask.id == task_id))


async def test_a_reminder_claim_is_a_lease_until_confirmed(db: Db, policy: Policy) -> None:
    await agent(db, 901, "Mia")
    vip = await customer(db, "K1", "VIP", account_manager="Mia")
    tid = await task_for(db, vip)
    async with db.sessions() as s, s.begin():
        (r,) = await reminding.claim_due(s, NOW, policy, LEASE)
    assert [a.name for a in r.recipients] == ["Mia"]
    assert await _reminded_at(db, tid) == NOW - timedelta(hours=24) + LEASE
    # Not confirmed (the send failed, the process died): nothing within the lease...
    async with db.sessions() as s, s.begin():
        assert await reminding.claim_due(s, NOW + LEASE - timedelta(seconds=1), policy, LEASE) == []
    # ...and claimed again when it ends; this time confirmed: the next after 24 h.
    later = NOW + LEASE
    async with db.sessions() as s, s.begin():
        assert [x.task.id for x in await reminding.claim_due(s, later, policy, LEASE)] == [tid]
        assert await reminding.confirm(s, [tid], later, policy, LEASE) == 1
    assert await _reminded_at(db, tid) == later
    async with db.sessions() as s, s.begin():
        assert await reminding.claim_due(s, later + timedelta(hours=23), policy, LEASE) == []
        # A stale confirmation (of the first claim) changes nothing.
        assert await reminding.confirm(s, [tid], NOW, policy, LEASE) == 0


async def test_a_snooze_that_ended_is_reminded_once_under_the_lease(db: Db, policy: Policy) -> None:
    mia = await as_agent(db, await agent(db, 901, "Mia"))
    vip = await customer(db, "K1", "VIP", account_manager="Mia")
    tid = await task_for(db, vip)
    async with db.sessions() as s, s.begin():
        await tasks.snooze(s, tid, mia, NOW, policy)
    woke = NOW + timedelta(hours=24, minutes=1)
    async with db.sessions() as s, s.begin():
        assert len(await reminding.claim_due(s, woke, policy, LEASE)) == 1
    async with db.sessions() as s, s.begin():
        # In flight: the next sweep does not send it again.
        assert await reminding.claim_due(s, woke + timedelta(minutes=15), policy, LEASE) == []


async def test_a_new_task_is_claimed_at_once_and_only_once(db: Db, policy: Policy) -> None:
    await agent(db, 909, "Sue", "supervisor")
    a = await customer(db, "K2", "A")  # no manager, no pool: the supervisors
    tid = await task_for(db, a)
    async with db.sessions() as s, s.begin():
        r = await reminding.claim_new(s, tid, NOW, policy, LEASE)
        assert r is not None and [x.name for x in r.recipients] == ["Sue"]
        assert await reminding.claim_new(s, tid, NOW, policy, LEASE) is None
        assert await reminding.claim_due(s, NOW, policy, LEASE) == []
    off = parse_policy({"care": {"enabled": False}})
    async with db.sessions() as s, s.begin():
        assert await reminding.claim_new(s, tid, NOW, off, LEASE) is None


async def test_start_chat_pressed_by_two_agents_at_once_opens_one_chat(
    db: Db, policy: Policy
) -> None:
    pool = parse_policy({"care": {"pool": ["Ann", "Bob"]}})
    ann = await as_agent(db, await agent(db, 901, "Ann"))
    bob = await as_agent(db, await agent(db, 902, "Bob"))
    a = await customer(db, "K2", "A")
    tid = await task_for(db, a)

    async def press(who: Agent) -> Start:
        async with db.sessions() as s, s.begin():
            result = await outreach.start_chat(s, tid, who, pool, NOW, delivery_now=NOW)
            return result.how

    # The first takes the pool task; to the second it is then another agent's.
    outcomes = sorted(await asyncio.gather(press(ann), press(bob)))
    assert outcomes == sorted([Start.OPENED, Start.NOT_YOURS])
    async with db.sessions() as s:
        convs = list((await s.execute(select(Conversation))).scalars())
        task = await s.get(CareTask, tid)
    assert len(convs) == 1 and task is not None
    (conv,) = convs
    assert (conv.status, conv.origin, conv.agent_id) == ("assigned", "care", task.agent_id)
    assert task.conversation_id == conv.id and task.status == "started"


async def test_start_chat_refusals_change_nothing(db: Db, policy: Policy) -> None:
    mia = await as_agent(db, await agent(db, 901, "Mia"))
    bob = await as_agent(db, await agent(db, 902, "Bob"))
    vip = await customer(db, "K1", "VIP", account_manager="Mia")
    tid = await task_for(db, vip)

    async def press(who: Agent, task_id: int = tid) -> Start:
        async with db.sessions() as s, s.begin():
            return (await outreach.start_chat(s, task_id, who, policy, NOW, delivery_now=NOW)).how

    assert await press(bob) is Start.NOT_YOURS
    assert await press(mia, 12345) is Start.UNKNOWN
    async with db.sessions() as s, s.begin():
        row = await s.get(Agent, mia.id)
        assert row is not None
        row.max_chats = 0
    mia.max_chats = 0
    assert await press(mia) is Start.AT_CAPACITY
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, vip)
        assert cu is not None
        cu.telegram_id = None
    assert await press(mia) is Start.NO_CHAT
    async with db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 0
        task = await s.get(CareTask, tid)
    assert task is not None and task.status == "open"


async def test_the_agenda_puts_overdue_first(db: Db, policy: Policy) -> None:
    mia = await as_agent(db, await agent(db, 901, "Mia"))
    sue = await as_agent(db, await agent(db, 909, "Sue", "supervisor"))
    k1 = await customer(db, "K1", "VIP", account_manager="Mia")
    k3 = await customer(db, "K3", "VIP", account_manager="Mia")
    k2 = await customer(db, "K2", "A")
    async with db.sessions() as s, s.begin():
        made = {}
        rows = [(k1, 1, "a"), (k3, -2, "b"), (k2, -5, "c")]
        for cid, days, key in rows:
            cu = await s.get(Customer, cid)
            assert cu is not None
            due = NOW + timedelta(days=days)
            t = await tasks.create(s, cu, tasks.CADENCE, due_at=due, dedupe_key=key, now=NOW)
            assert t is not None
            made[key] = t.id
    async with db.sessions() as s:
        mine = await agenda.agenda(s, mia, NOW, policy)
        everyone = await agenda.agenda(s, sue, NOW, policy)
        first = await agenda.agenda(s, sue, NOW, policy, limit=1)
    assert [e.task.id for e in mine.entries] == [made["b"], made["a"]]
    assert (mine.total, mine.overdue) == (2, 1)
    assert [e.overdue for e in mine.entries] == [True, False]
    assert [e.task.id for e in everyone.entries] == [made["c"], made["b"], made["a"]]
    assert [e.assignee.name if e.assignee else None for e in everyone.entries] == [
        None,
        "Mia",
        "Mia",
    ]
    assert (len(first.entries), first.total, first.overdue) == (1, 3, 2)
