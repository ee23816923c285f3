"""Set-based rescoring against the database, on every backend.

The centrepiece is the equivalence test: the SQL path (aggregates in SQL, keyset batches, raw
executemany) gives the same scores and tiers as a straightforward per-customer computation
of the same pure model over ORM objects.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from routing.policy.root import Policy, parse_policy
from routing.scoring import facts, report, rescoring
from routing.scoring import model as scoring
from routing.scoring.satisfaction import record_answer, record_complaint, update_satisfaction
from routing.store.models import Customer, Order, ScoringRun, Survey, TierChange
from tests.conftest import Db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CATS = ("books", "toys", "garden", "food", "tools", None)
STATUSES = ("paid", "paid", "paid", "refunded", "cancelled", None)


async def _seed(db: Db, n: int = 80, seed: int = 7) -> None:
    rng = random.Random(seed)
    async with db.sessions() as s, s.begin():
        for i in range(n):
            c = Customer(
                external_id=f"C{i:03d}",
                name=f"cust {i}",
                tier="C",
                created_at=NOW,
                updated_at=NOW,
            )
            if i % 5 == 0:
                c.satisfaction = rng.random()
            if i % 7 == 0:
                c.complaints = rng.choice([1.0, 2.0, 4.0])
                c.complaints_at = NOW - timedelta(days=rng.randint(0, 400))
            if i % 17 == 3:
                c.tier_override = "VIP"
            s.add(c)
        s.add(Customer(name="guest", tier="C", is_guest=True, created_at=NOW, updated_at=NOW))
        k = 0
        for i in range(n):
            wealth = rng.choice([500, 5_000, 30_000, 90_000, 200_000])
            for _ in range(rng.choice([0, 1, 2, 5, 12, 20])):
                k += 1
                s.add(
                    Order(
                        order_id=f"O{k:05d}",
                        external_id=f"C{i:03d}",
                        amount_cents=int(wealth * rng.uniform(0.2, 1.8)) * 100 + rng.randint(0, 99),
                        category=rng.choice(CATS),
                        ordered_at=NOW - timedelta(days=rng.uniform(0, 1000)),
                        status=rng.choice(STATUSES),
                    )
                )
        # Orders for an external id with no customer row are ignored.
        s.add(
            Order(
                order_id="ORPHAN",
                external_id="NOPE",
                amount_cents=1,
                ordered_at=NOW,
                status="paid",
            )
        )


def _reference_facts(c: Customer, orders: list[Order], policy: Policy) -> scoring.Facts:
    """The model's inputs for one customer, computed the obvious way in Python."""
    counted = [
        o
        for o in orders
        if o.external_id == c.external_id and o.status not in policy.scoring.exclude_statuses
    ]
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


async def _reference(db: Db, policy: Policy) -> dict[str, tuple[float, str]]:
    async with db.sessions() as s:
        customers = list(await s.scalars(select(Customer).where(Customer.is_guest.is_(False))))
        orders = list(await s.scalars(select(Order)))
    scores = {}
    facts = {}
    for c in customers:
        assert c.external_id is not None
        facts[c.external_id] = _reference_facts(c, orders, policy)
        scores[c.external_id] = scoring.score(facts[c.external_id], policy)
    cutoffs = scoring.cutoffs_from_sorted(sorted(scores.values(), reverse=True), policy)
    out = {}
    for c in customers:
        assert c.external_id is not None
        ext = c.external_id
        model = scoring.model_grade(facts[ext], scores[ext], policy, cutoffs)
        tier = c.tier_override if c.tier_override else model.tier
        out[ext] = (scores[ext], tier)
    return out


async def _stored(db: Db) -> dict[str, tuple[float, str]]:
    async with db.sessions() as s:
        rows = await s.execute(
            select(Customer.external_id, Customer.score, Customer.tier).where(
                Customer.is_guest.is_(False)
            )
        )
        return {str(ext): (score, tier) for ext, score, tier in rows}


@pytest.mark.parametrize("mode", ["thresholds", "percentile"])
async def test_set_based_rescore_equals_per_customer_computation(
    db: Db, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rescoring, "BATCH", 7)  # several keyset batches, one short
    policy = parse_policy({"scoring": {"mode": mode}})
    await _seed(db)
    async with db.sessions() as s, s.begin():
        result = await rescoring.rescore(s, policy, NOW)
    expected = await _reference(db, policy)
    stored = await _stored(db)
    assert result.customers == len(expected) == 80
    assert {k: v[1] for k, v in stored.items()} == {k: v[1] for k, v in expected.items()}
    for ext, (score, _) in expected.items():
        assert stored[ext][0] == pytest.approx(score, abs=1e-3), ext
    # A spread of tiers, so the comparison means something.
    assert len({t for _, t in expected.values()}) >= 3
    assert sum(result.distribution.values()) == 80


async def test_initial_grading_then_upgrade_at_once_and_downgrade_after_two(
    db: Db, policy: Policy
) -> None:
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id="X", name="Xena", tier="C", created_at=NOW, updated_at=NOW))
        s.add(
            Order(order_id="o1", external_id="X", amount_cents=6_000_000, ordered_at=NOW)
        )  # 60,000: band B
    async with db.sessions() as s, s.begin():
        r = await rescoring.rescore(s, policy, NOW)
    assert [(c.from_tier, c.to_tier, c.kind) for c in r.changes] == [("C", "B", "initial")]

    async with db.sessions() as s, s.begin():
        s.add(Order(order_id="o2", external_id="X", amount_cents=50_000_000, ordered_at=NOW))
    later = NOW + timedelta(days=1)
    async with db.sessions() as s, s.begin():
        r = await rescoring.rescore(s, policy, later)
    assert [(c.from_tier, c.to_tier, c.kind) for c in r.changes] == [("B", "VIP", "upgrade")]

    # A year on, both orders fall out of the window: the model says C.
    for n, days in enumerate((400, 430, 460), start=1):
        async with db.sessions() as s, s.begin():
            r = await rescoring.rescore(s, policy, NOW + timedelta(days=days))
            x = (await s.execute(select(Customer).where(Customer.external_id == "X"))).scalar_one()
        if n == 1:
            assert r.changes == [] and x.tier == "VIP" and x.below_count == 1
        elif n == 2:
            assert [(c.from_tier, c.to_tier, c.kind) for c in r.changes] == [
                ("VIP", "C", "downgrade")
            ]
            assert x.tier == "C" and x.below_count == 0
        else:
            assert r.changes == []

    async with db.sessions() as s:
        log = list(await s.scalars(select(TierChange).order_by(TierChange.id)))
        runs = await s.scalar(select(func.count()).select_from(ScoringRun))
    assert [(t.from_tier, t.to_tier, t.kind, t.notice) for t in log] == [
        ("C", "B", "initial", "none"),
        ("B", "VIP", "upgrade", "pending"),
        ("VIP", "C", "downgrade", "pending"),
    ]
    assert log[1].score is not None and log[1].score > 0
    assert "spend 560,000.00 >= 500,000" in log[1].reason
    assert set(json.loads(log[1].details or "{}")) == set(scoring.DIMENSIONS)
    assert "below VIP for 2 evaluations" in log[2].reason
    assert runs == 5


async def test_override_pins_the_tier_and_release_applies_the_model(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id="P", name="Pat", tier="C", created_at=NOW, updated_at=NOW))
    async with db.sessions() as s, s.begin():
        r = await report.set_override(
            s, "P", "VIP", by="mia", reason="board member", policy=policy, now=NOW
        )
        assert [(c.to_tier, c.kind) for c in r.changes] == [("VIP", "override")]
    async with db.sessions() as s, s.begin():
        r = await rescoring.rescore(s, policy, NOW + timedelta(days=40))
        assert r.changes == []  # the model says C; the override wins
        rep = await report.customer_report(s, "P", policy, NOW)
        assert rep.customer.tier == "VIP"
        assert (rep.customer.tier_override_by, rep.customer.tier_override_reason) == (
            "mia",
            "board member",
        )
    async with db.sessions() as s, s.begin():
        r = await report.set_override(s, "P", None, by=None, reason=None, policy=policy, now=NOW)
        assert [(c.from_tier, c.to_tier, c.kind) for c in r.changes] == [("VIP", "C", "override")]
        assert "override released" in r.changes[0].reason
    with pytest.raises(ValueError, match="unknown tier"):
        async with db.sessions() as s, s.begin():
            await report.set_override(s, "P", "Gold", by="x", reason="y", policy=policy, now=NOW)


async def test_customer_report_explains_by_dimension(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id="E", name="Eve", tier="C", created_at=NOW, updated_at=NOW))
        for i, cat in enumerate(("books", "toys", "garden")):
            s.add(
                Order(
                    order_id=f"e{i}",
                    external_id="E",
                    amount_cents=10_000_000,
                    category=cat,
                    ordered_at=NOW - timedelta(days=10 * (i + 1)),
                )
            )
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, policy, NOW)
        rep = await report.customer_report(s, "E", policy, NOW)
    assert rep.customer.tier == "VIP"  # 300,000 is band A, raised one grade: 3 categories
    assert "raised to VIP: multi-category (3)" in rep.model.reason
    by = {d.name: d for d in rep.explanation.dimensions}
    assert by["breadth"].note == "3 categories in 365 d (multi-category)"
    assert by["recency"].note == "last order 10 d ago"
    assert rep.explanation.score == pytest.approx(rep.customer.score, abs=1e-3)
    assert [(h.from_tier, h.to_tier) for h in rep.history] == [("C", "VIP")]


async def test_open_conversation_keeps_its_priority(db: Db, policy: Policy) -> None:
    from routing.queue.conversations import open_conversation

    async with db.sessions() as s, s.begin():
        c = Customer(external_id="Q", name="Quinn", tier="C", created_at=NOW, updated_at=NOW)
        s.add(c)
        await s.flush()
        conv, _ = await open_conversation(s, c, policy, "customer_request", NOW)
        s.add(Order(order_id="q1", external_id="Q", amount_cents=90_000_000, ordered_at=NOW))
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, policy, NOW)
    async with db.sessions() as s:
        cust = (await s.execute(select(Customer).where(Customer.external_id == "Q"))).scalar_one()
        from routing.store.models import Conversation

        frozen = await s.get(Conversation, conv.id)
    assert cust.tier == "VIP"
    assert frozen is not None and (frozen.tier, frozen.priority) == ("C", policy.rank("C"))


# --- survey answers into the score ---------------------------------------------------------


async def _borderline(db: Db) -> tuple[Policy, int]:
    """A VIP by spend whose score is just above the VIP score floor."""
    async with db.sessions() as s, s.begin():
        c = Customer(external_id="S", name="Sam", tier="C", created_at=NOW, updated_at=NOW)
        s.add(c)
        s.add(Order(order_id="s1", external_id="S", amount_cents=60_000_000, ordered_at=NOW))
        await s.flush()
        cid = c.id
    base = Policy()
    async with db.sessions() as s:
        row = (await s.execute(facts.facts_query(base, NOW).where(Customer.id == cid))).one()
    score_now = scoring.score(facts.facts_from_row(row, facts.to_epoch_days(NOW), base), base)
    policy = parse_policy(
        {
            "tiers": [
                {"name": "VIP", "min_spend": 500_000, "min_score": round(score_now - 1, 2)},
                {"name": "A", "min_spend": 200_000},
                {"name": "B", "min_spend": 50_000},
                {"name": "C", "min_spend": 0},
            ]
        }
    )
    async with db.sessions() as s, s.begin():
        r = await rescoring.rescore(s, policy, NOW)
        assert [c.to_tier for c in r.changes] == ["VIP"]
    return policy, cid


async def test_low_csat_lowers_satisfaction_and_moves_a_borderline_customer_down(
    db: Db,
) -> None:
    policy, cid = await _borderline(db)
    async with db.sessions() as s, s.begin():
        s.add_all(
            Survey(kind="csat", customer_id=cid, status="sent", due_at=NOW, created_at=NOW)
            for _ in range(2)
        )
    async with db.sessions() as s:
        survey_ids = list(await s.scalars(select(Survey.id).order_by(Survey.id)))

    async with db.sessions() as s, s.begin():
        u = await record_answer(s, survey_ids[0], 1, NOW + timedelta(hours=1), policy)
        cust = await s.get(Customer, cid)
        assert cust is not None
        # Satisfaction from neutral 0.5 towards 0: a detractor, so a complaint too.
        assert u.satisfaction == pytest.approx(0.35) and u.detractor and u.complaints == 1
        assert cust.satisfaction == pytest.approx(0.35) and cust.satisfaction_answers == 1
        assert cust.tier == "VIP" and cust.below_count == 1  # hysteresis holds it
        assert u.rescore.changes == []
        survey = await s.get(Survey, survey_ids[0])
        assert survey is not None and (survey.status, survey.score) == ("answered", 1)

    async with db.sessions() as s, s.begin():
        u = await record_answer(s, survey_ids[1], 2, NOW + timedelta(hours=2), policy)
        cust = await s.get(Customer, cid)
        assert cust is not None and cust.tier == "A"
        assert [(c.from_tier, c.to_tier, c.kind) for c in u.rescore.changes] == [
            ("VIP", "A", "downgrade")
        ]


async def test_good_answers_keep_the_customer_and_complaints_count_against(db: Db) -> None:
    policy, cid = await _borderline(db)
    async with db.sessions() as s, s.begin():
        u = await update_satisfaction(s, cid, "nps", 10, NOW, policy)
        assert not u.detractor and u.satisfaction == pytest.approx(0.65)
        assert u.rescore.changes == []
        cust = await s.get(Customer, cid)
        assert cust is not None and cust.below_count == 0 and cust.tier == "VIP"
        before = cust.score
        await record_complaint(s, cid, NOW, policy)
        await s.refresh(cust)
        assert cust.complaints == 1 and cust.score < before
    with pytest.raises(ValueError, match="outside"):
        async with db.sessions() as s, s.begin():
            await update_satisfaction(s, cid, "csat", 9, NOW, policy)


async def test_partial_rescore_in_percentile_mode_uses_the_last_runs_cutoffs(db: Db) -> None:
    policy = parse_policy({"scoring": {"mode": "percentile"}})
    await _seed(db, n=40)
    async with db.sessions() as s, s.begin():
        full = await rescoring.rescore(s, policy, NOW)
    async with db.sessions() as s, s.begin():
        stored = json.loads(
            (await s.scalars(select(ScoringRun.cutoffs).order_by(ScoringRun.id.desc()))).first()
            or "[]"
        )
        assert tuple(stored) == full.cutoffs
        cid = (await s.scalars(select(Customer.id).where(Customer.external_id == "C001"))).one()
        one = await rescoring.rescore_customer(s, cid, policy, NOW)
    assert one.customers == 1 and one.cutoffs == full.cutoffs
