"""The bulk rescore's fast path (``routing.scoring.fast_grade``) against the model itself.

Random data sets (orders with refunds, cancellations, missing statuses and categories;
survey averages, complaints; customers held above their band, overridden, never evaluated,
on a tier the policy no longer has) under random policies (both modes, raises, ceilings,
score floors, hysteresis, grace periods), on every backend:

* on the same SQL rows, ``FastGrader`` gives bit-identical scores and spends and the same
  decision as ``facts_from_row`` -> ``dimension_values`` -> ``total`` -> ``model_grade`` ->
  ``decide``, and says "changed" exactly when ``decide`` does;
* a full ``rescore`` stores, for every customer, what the model's pure per-customer
  computation over ORM objects gives: tier, score, spend, hysteresis state, the evaluated
  mark, and the tier-change log (kind, reason, notice, details).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from routing.policy.root import Policy, parse_policy
from routing.scoring import facts, rescoring
from routing.scoring import model as scoring
from routing.scoring.fast_grade import FastGrader
from routing.store.models import Customer, Order, TierChange
from tests.conftest import Db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CATS = ("books", "toys", "garden", "food", "tools", None)
STATUSES = ("paid", "paid", "paid", "refunded", "cancelled", None)
SEEDS = (1, 2, 3, 4)


def _policy(rng: random.Random) -> Policy:
    mode = rng.choice(["thresholds", "percentile"])
    tiers: list[dict[str, Any]] = [
        {"name": "VIP", "min_spend": 500_000, "share": 0.10},
        {"name": "A", "min_spend": 200_000, "share": 0.15},
        {"name": "B", "min_spend": 50_000, "share": 0.25},
        {"name": "C", "min_spend": 0},
    ]
    if mode == "thresholds" and rng.random() < 0.5:
        tiers[0]["min_score"] = rng.choice([30, 45, 60])
        tiers[1]["min_score"] = rng.choice([0, 20, 35])
    scoring_: dict[str, Any] = {
        "mode": mode,
        "raise_for_high_frequency": rng.random() < 0.7,
        "raise_for_multi_category": rng.random() < 0.7,
        "high_frequency_orders": rng.choice([3, 5, 10]),
        "multi_category_min": rng.choice([2, 3]),
        "raise_grades": rng.choice([0, 1, 2]),
        "raise_ceiling": rng.choice([None, "A", "B"]),
        "downgrade_after": rng.choice([1, 2, 3]),
        "downgrade_grace_days": rng.choice([0, 0, 20]),
        "exclude_statuses": rng.choice([("cancelled", "refunded"), ("refunded",), ()]),
    }
    return parse_policy({"tiers": tiers, "scoring": scoring_})


async def _seed(db: Db, rng: random.Random, n: int = 150) -> None:
    async with db.sessions() as s, s.begin():
        for i in range(n):
            evaluated = rng.random() < 0.7
            c = Customer(
                external_id=f"C{i:04d}",
                name=f"cust {i}",
                tier=rng.choice(["VIP", "A", "B", "C", "C", "retired"]),
                score=rng.choice([0.0, 12.5]),
                spend_12m=0.0,
                below_count=rng.choice([0, 0, 1, 2]),
                below_since=rng.choice([None, NOW - timedelta(days=rng.randint(0, 60))]),
                scored_at=NOW - timedelta(days=30) if evaluated else None,
                created_at=NOW,
                updated_at=NOW,
            )
            if rng.random() < 0.3:
                c.satisfaction = rng.random()
            if rng.random() < 0.2:
                c.complaints = rng.choice([0.0, 1.0, 3.0])
                c.complaints_at = rng.choice([None, NOW - timedelta(days=rng.randint(0, 500))])
            if rng.random() < 0.08:
                c.tier_override = rng.choice(["VIP", "B", "gone"])
            s.add(c)
        s.add(Customer(name="guest", tier="C", is_guest=True, created_at=NOW, updated_at=NOW))
        k = 0
        for i in range(n):
            wealth = rng.choice([300, 5_000, 30_000, 90_000, 250_000])
            for _ in range(rng.choice([0, 0, 1, 2, 4, 7, 12])):
                k += 1
                s.add(
                    Order(
                        order_id=f"O{k:05d}",
                        external_id=f"C{i:04d}",
                        amount_cents=int(wealth * rng.uniform(0.1, 2.0)) * 100 + rng.randint(0, 99),
                        category=rng.choice(CATS),
                        ordered_at=NOW - timedelta(days=rng.uniform(0, 900)),
                        status=rng.choice(STATUSES),
                    )
                )


@pytest.mark.parametrize("seed", SEEDS)
async def test_fast_grader_is_the_model_on_the_same_rows(db: Db, seed: int) -> None:
    rng = random.Random(seed)
    policy = _policy(rng)
    await _seed(db, rng)
    now_days = facts.to_epoch_days(NOW)
    async with db.sessions() as s:
        rows = (await s.execute(facts.facts_query(policy, NOW).order_by(facts._C.c.id))).all()
    f_list = [facts.facts_from_row(r, now_days, policy) for r in rows]
    scores = [scoring.score(f, policy) for f in f_list]
    cutoffs = scoring.cutoffs_from_sorted(sorted(scores, reverse=True), policy)
    fast = FastGrader(policy, NOW, now_days, cutoffs)
    changes = kept = 0
    for row, f, score in zip(rows, f_list, scores, strict=True):
        s_, spend, orders, categories, complaints = fast.score(row)
        assert (s_, spend, orders, categories, complaints) == (
            score,
            f.spend,
            f.orders,
            f.categories,
            f.complaints,
        )
        model = scoring.model_grade(f, score, policy, cutoffs)
        assert fast.names[fast.model_rank(s_, spend, orders, categories)] == model.tier
        d = scoring.decide(facts._state(row), model, policy, NOW)
        got = fast.unchanged(row, fast.model_rank(s_, spend, orders, categories))
        if d.kind is None:
            kept += 1
            assert got == (d.tier, d.below_count, d.below_since)
        else:
            changes += 1
            assert got is None
    # The data set exercises both answers.
    assert changes > 5 and kept > 5


def _reference_facts(c: Customer, orders: list[Order], policy: Policy) -> scoring.Facts:
    """The model's inputs for one customer, the obvious way in Python."""
    excluded = policy.scoring.exclude_statuses
    counted = [o for o in orders if o.external_id == c.external_id and o.status not in excluded]
    since = NOW - timedelta(days=policy.scoring.window_days)
    window = [o for o in counted if o.ordered_at >= since]

    def days(t: datetime) -> float:
        return (NOW - t).total_seconds() / 86400

    complaints = 0.0
    if c.complaints and c.complaints_at is not None:
        complaints = scoring.decayed(
            c.complaints, days(c.complaints_at), policy.scoring.normalise.complaints_half_life_days
        )
    return scoring.Facts(
        spend=sum(o.amount_cents for o in window) / 100,
        orders=len(window),
        categories=len({o.category for o in window if o.category is not None}),
        days_since_last=min((days(o.ordered_at) for o in counted), default=None),
        tenure_days=max((days(o.ordered_at) for o in counted), default=None),
        orders_total=len(counted),
        satisfaction=c.satisfaction,
        complaints=complaints,
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_full_rescore_stores_the_per_customer_model(
    db: Db, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rescoring, "BATCH", 13)  # many keyset batches, the last one short
    rng = random.Random(seed)
    policy = _policy(rng)
    await _seed(db, rng)
    async with db.sessions() as s:
        customers = list(await s.scalars(select(Customer).where(Customer.is_guest.is_(False))))
        orders = list(await s.scalars(select(Order)))
    before = {c.id: c for c in customers}
    f_of = {c.id: _reference_facts(c, orders, policy) for c in customers}
    score_of = {i: scoring.score(f, policy) for i, f in f_of.items()}
    cutoffs = scoring.cutoffs_from_sorted(sorted(score_of.values(), reverse=True), policy)
    expected: dict[int, tuple[Any, ...]] = {}
    expected_log: dict[int, tuple[Any, ...]] = {}
    percentile = policy.scoring.mode == "percentile"
    for i, c in before.items():
        f, score = f_of[i], score_of[i]
        state = scoring.TierState(
            tier=c.tier,
            override=c.tier_override,
            below_count=c.below_count,
            below_since=c.below_since,
            evaluated=c.scored_at is not None,
        )
        d = scoring.decide(state, scoring.model_grade(f, score, policy, cutoffs), policy, NOW)
        if percentile:  # pass two reads "has data" from the table (any order at all)
            has_data = (
                any(o.external_id == c.external_id for o in orders)
                or c.satisfaction is not None
                or bool(c.complaints and c.complaints > 0)
            )
        else:
            has_data = f.orders_total > 0 or f.satisfaction is not None or f.complaints > 0
        evaluated = c.scored_at is not None or has_data
        expected[i] = (d.tier, d.below_count, d.below_since, evaluated, f.spend, score)
        if d.kind is not None:
            values = scoring.dimension_values(f, policy)
            expected_log[i] = (
                c.tier,
                d.tier,
                d.kind,
                d.reason,
                rescoring.notice_for(d.kind, c.tier, d.tier, policy),
                None if percentile else facts._details(values),
            )

    async with db.sessions() as s, s.begin():
        result = await rescoring.rescore(s, policy, NOW)
    async with db.sessions() as s:
        after = {c.id: c for c in await s.scalars(select(Customer))}
        log = list(await s.scalars(select(TierChange).order_by(TierChange.id)))

    assert result.customers == len(expected)
    assert result.change_count == len(expected_log) == len(log)
    for i, (tier, count, since, evaluated, spend, score) in expected.items():
        c = after[i]
        assert (c.tier, c.below_count, c.below_since) == (tier, count, since), c.external_id
        assert (c.scored_at is not None) == evaluated, c.external_id
        assert c.spend_12m == spend, c.external_id
        # SQL measures days with julianday/EXTRACT, Python with timedelta: the same to 1e-9.
        assert c.score == pytest.approx(score, abs=1e-3), c.external_id
    for t in log:
        from_tier, to_tier, kind, reason, notice, details = expected_log[t.customer_id]
        assert (t.from_tier, t.to_tier, t.kind, t.notice) == (from_tier, to_tier, kind, notice)
        assert t.reason == reason[:200]
        if details is not None:
            assert t.details is not None
            got, want = json.loads(t.details), json.loads(details)
            assert got.keys() == want.keys()
            for k in want:
                assert got[k] == pytest.approx(want[k], abs=1e-3), k
    # The random states reach every kind of decision across the seeds; at least two here.
    assert len({t.kind for t in log}) >= 2
