"""What a complaint case weighs in the score: by severity and outcome, decayed, explained
case by case in ``customers show``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.complaints import follow_up, remedies
from routing.policy.root import Policy
from routing.scoring.report import customer_report
from routing.scoring.rescoring import rescore_customer
from routing.store.models import Customer, Order
from tests.conftest import Db
from tests.integration.test_complaints_lifecycle import NOW, agent, customer, open_case


async def buyer(db: Db, ext: str) -> int:
    """A B customer with the same orders as every other buyer here."""
    cid = await customer(db, "B", ext)
    async with db.sessions() as s, s.begin():
        for i in range(5):
            s.add(
                Order(
                    order_id=f"{ext}-{i}",
                    external_id=ext,
                    amount_cents=2_000_000,
                    category="shoes",
                    ordered_at=NOW - timedelta(days=30 * (i + 1)),
                    status="paid",
                )
            )
    return cid


async def score_of(db: Db, cid: int) -> tuple[float, float]:
    async with db.sessions() as s:
        c = await s.get(Customer, cid)
        assert c is not None
        return c.score, c.complaints


async def test_unresolved_and_reopened_weigh_more_than_resolved_more_than_satisfied(
    db: Db, policy: Policy
) -> None:
    aid = await agent(db)
    states = ("reopened", "open", "resolved", "satisfied", "none")
    ids = {state: await buyer(db, f"K{i + 1}") for i, state in enumerate(states)}
    at = NOW + timedelta(hours=1)
    for state, cid in ids.items():
        if state == "none":  # no complaint: scored as the others are
            async with db.sessions() as s, s.begin():
                await rescore_customer(s, cid, policy, at)
            continue
        case = (await open_case(db, policy, cid, "billing")).complaint.id
        if state == "open":
            continue
        async with db.sessions() as s, s.begin():
            await remedies.resolve(s, case, at, policy, agent_id=aid)
        if state in ("satisfied", "reopened"):
            async with db.sessions() as s, s.begin():
                await follow_up.record_follow_up(s, case, state == "satisfied", at, policy)
    scores = {state: (await score_of(db, cid)) for state, cid in ids.items()}
    # billing severity 1.5 x the weight of the state (decayed for the hour since open).
    assert scores["open"][1] == pytest.approx(1.5, rel=1e-3)
    assert scores["resolved"][1] == pytest.approx(0.75, rel=1e-3)
    assert scores["satisfied"][1] == pytest.approx(0.3, rel=1e-3)
    assert scores["reopened"][1] == pytest.approx(2.25, rel=1e-3)
    order = [scores[s][0] for s in ("reopened", "open", "resolved", "satisfied")]
    assert order == sorted(order) and len(set(order)) == 4
    assert scores["satisfied"][0] < scores["none"][0]


async def test_the_explanation_lists_each_case_and_decay_applies(db: Db, policy: Policy) -> None:
    aid = await agent(db)
    cid = await buyer(db, "K1")
    half = policy.scoring.normalise.complaints_half_life_days
    old_at = NOW - timedelta(days=half)
    old = (await open_case(db, policy, cid, "delivery", at=old_at)).complaint.id
    new = (await open_case(db, policy, cid, "other", at=NOW)).complaint.id
    # The old case: 1.0 at open, half of it now; resolving it now takes off half the
    # difference (0.5 x (1.0 - 0.5)), as if it had weighed 0.5 from the start.
    async with db.sessions() as s, s.begin():
        await remedies.resolve(s, old, NOW, policy, agent_id=aid)
    async with db.sessions() as s:
        report = await customer_report(s, "K1", policy, NOW)
    assert [(c.id, c.category, c.status, c.outcome) for c in report.cases] == [
        (new, "other", "open", None),
        (old, "delivery", "resolved", None),
    ]
    assert [round(c.weight, 6) for c in report.cases] == [0.5, 0.5]
    assert [round(c.counts, 6) for c in report.cases] == [0.5, 0.25]
    # The complaints dimension is the sum of the cases' counts (no detractor answers here).
    dim = next(d for d in report.explanation.dimensions if d.name == "complaints")
    assert report.facts.complaints == pytest.approx(0.75)
    assert "0.75 complaints" in dim.note
