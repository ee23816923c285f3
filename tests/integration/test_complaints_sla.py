"""The complaint SLA sweep: warning before breach, each once per target and cycle (also with
two sweeps at once), the account manager for a breached human_first case."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from routing.complaints import cases, follow_up, remedies, sla
from routing.policy.root import Policy
from routing.store.models import Agent, Customer
from tests.conftest import Db
from tests.integration.test_complaints_lifecycle import agent, customer, kinds, open_case

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


async def sweep(db: Db, policy: Policy, at: datetime) -> list[tuple[int, str, str]]:
    async with db.sessions() as s, s.begin():
        alerts = await sla.sweep(s, policy, at)
    return [(a.complaint.id, a.target, a.level) for a in alerts]


async def test_warn_then_breach_once_per_cycle(db: Db, policy: Policy) -> None:
    cid = await customer(db, "B")
    aid = await agent(db)
    case = (await open_case(db, policy, cid)).complaint.id
    # B: acknowledge within 4 h (warn at 80 %: 3 h 12 min), resolve within 5 days.
    assert await sweep(db, policy, NOW + timedelta(hours=3)) == []
    warn_at = NOW + timedelta(hours=3, minutes=13)
    assert await sweep(db, policy, warn_at) == [(case, "acknowledge", "warn")]
    assert await sweep(db, policy, warn_at + timedelta(minutes=1)) == []
    assert await sweep(db, policy, NOW + timedelta(hours=4)) == [(case, "acknowledge", "breach")]
    assert await sweep(db, policy, NOW + timedelta(hours=5)) == []
    # Acknowledged late: the breach is on record already, nothing new.
    async with db.sessions() as s, s.begin():
        assert await cases.acknowledge(s, case, aid, NOW + timedelta(hours=6), policy)
    assert await sweep(db, policy, NOW + timedelta(days=4, hours=1)) == [(case, "resolve", "warn")]
    await_breach = NOW + timedelta(days=5)
    assert await sweep(db, policy, await_breach) == [(case, "resolve", "breach")]
    assert await sweep(db, policy, await_breach + timedelta(hours=1)) == []
    # Resolved, then reopened by a "no": a new cycle, its own warnings and breaches.
    async with db.sessions() as s, s.begin():
        await remedies.resolve(s, case, await_breach + timedelta(hours=2), policy, agent_id=aid)
    reopened = await_breach + timedelta(hours=3)
    async with db.sessions() as s, s.begin():
        assert (await follow_up.record_follow_up(s, case, False, reopened, policy)).reopened
    assert await sweep(db, policy, reopened + timedelta(hours=3, minutes=13)) == [
        (case, "acknowledge", "warn")
    ]
    assert await sweep(db, policy, reopened + timedelta(hours=4)) == [
        (case, "acknowledge", "breach")
    ]
    assert await kinds(db, case) == [
        "opened",
        "warn",
        "breach",
        "acknowledged",
        "warn",
        "breach",
        "resolved",
        "follow_up",
        "reopened",
        "warn",
        "breach",
    ]


async def test_a_sweep_after_downtime_breaches_without_a_late_warning(
    db: Db, policy: Policy
) -> None:
    cid = await customer(db, "C")
    case = (await open_case(db, policy, cid)).complaint.id
    assert await sweep(db, policy, NOW + timedelta(days=2)) == [(case, "acknowledge", "breach")]
    assert await sweep(db, policy, NOW + timedelta(days=2, minutes=1)) == []


async def test_two_sweeps_at_once_alert_once(db: Db, policy: Policy) -> None:
    for i in range(3):
        await open_case(db, policy, await customer(db, "A", f"K{i + 1}"))
    at = NOW + timedelta(hours=2)
    both = await asyncio.gather(sweep(db, policy, at), sweep(db, policy, at))
    assert sorted(both[0] + both[1]) == [(i, "acknowledge", "breach") for i in (1, 2, 3)]


async def test_a_breached_vip_case_pages_the_account_manager(db: Db, policy: Policy) -> None:
    aid = await agent(db, 901, "Mia")
    await agent(db, 902, "Sup")
    vip = await customer(db, "VIP", "K1", account_manager="mia")
    b = await customer(db, "B", "K2", account_manager="mia")
    v_case = (await open_case(db, policy, vip)).complaint.id
    b_case = (await open_case(db, policy, b)).complaint.id
    async with db.sessions() as s, s.begin():
        warn = await sla.sweep(s, policy, NOW + timedelta(minutes=13))
        assert [(a.complaint.id, a.level, a.manager) for a in warn] == [(v_case, "warn", None)]
        breach = await sla.sweep(s, policy, NOW + timedelta(hours=5))
        by_case = {a.complaint.id: a for a in breach}
        assert set(by_case) == {v_case, b_case}
        manager = by_case[v_case].manager
        assert isinstance(manager, Agent) and manager.id == aid
        assert by_case[v_case].page and by_case[b_case].manager is None
        assert isinstance(by_case[v_case].customer, Customer)
