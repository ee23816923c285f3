"""The pure scoring model: dimensions, both grading modes, override, hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from routing.policy.root import Policy, PolicyError, parse_policy
from routing.scoring import model as scoring
from routing.scoring.model import Facts, Grade, TierState

NOW = datetime(2026, 11, 1, tzinfo=UTC)
P = Policy()


def dims(f: Facts, policy: Policy = P) -> dict[str, float]:
    return dict(zip(scoring.DIMENSIONS, scoring.dimension_values(f, policy), strict=True))


def pol(**scoring_keys: Any) -> Policy:
    return parse_policy({"scoring": scoring_keys})


# --- dimensions --------------------------------------------------------------------------


def test_value_is_log_scaled_and_capped() -> None:
    assert dims(Facts(spend=0))["value"] == 0
    assert dims(Facts(spend=500_000))["value"] == pytest.approx(1.0)
    assert dims(Facts(spend=5_000_000))["value"] == 1.0
    assert 0.5 < dims(Facts(spend=5_000))["value"] < dims(Facts(spend=50_000))["value"] < 1


def test_frequency_and_breadth_saturate() -> None:
    assert dims(Facts(orders=12))["frequency"] == pytest.approx(0.5)
    assert dims(Facts(orders=100))["frequency"] == 1.0
    assert dims(Facts(categories=2))["breadth"] == pytest.approx(0.4)
    assert dims(Facts(categories=9))["breadth"] == 1.0


def test_recency() -> None:
    assert dims(Facts())["recency"] == 0  # no orders
    assert dims(Facts(days_since_last=0))["recency"] == 1
    assert dims(Facts(days_since_last=182.5))["recency"] == pytest.approx(0.5)
    assert dims(Facts(days_since_last=800))["recency"] == 0


def test_loyalty_is_tenure_and_repeat_purchase() -> None:
    assert dims(Facts())["loyalty"] == 0
    one_new_order = Facts(tenure_days=0, orders_total=1)
    assert dims(one_new_order)["loyalty"] == 0
    assert dims(Facts(tenure_days=1095, orders_total=11))["loyalty"] == pytest.approx(1.0)
    assert dims(Facts(tenure_days=1095, orders_total=1))["loyalty"] == pytest.approx(0.5)


def test_satisfaction_is_neutral_when_unknown() -> None:
    assert dims(Facts())["satisfaction"] == 0.5
    assert dims(Facts(satisfaction=0.9))["satisfaction"] == 0.9
    assert dims(Facts(), pol(satisfaction={"neutral": 0.7}))["satisfaction"] == 0.7


def test_complaints_count_against_and_decay() -> None:
    calm = scoring.score(Facts(spend=100_000, complaints=0), P)
    angry = scoring.score(Facts(spend=100_000, complaints=3), P)
    assert dims(Facts(complaints=1.5))["complaints"] == pytest.approx(0.5)
    assert angry == pytest.approx(calm - 15.0)  # weight 0.15 of a positive total of 1.0
    assert scoring.decayed(2, 180, 180) == pytest.approx(1.0)
    assert scoring.decayed(2, 0, 180) == 2
    assert scoring.decayed(0, 10, 180) == 0


def test_score_is_the_weighted_mean_and_explained() -> None:
    f = Facts(
        spend=250_000,
        orders=14,
        categories=3,
        days_since_last=30,
        tenure_days=700,
        orders_total=40,
        satisfaction=0.8,
        complaints=1,
    )
    e = scoring.explain(f, P)
    assert e.score == scoring.score(f, P)
    assert 0 < e.score < 100
    assert sum(d.points for d in e.dimensions) == pytest.approx(e.score, abs=1e-3)
    by = {d.name: d for d in e.dimensions}
    assert by["complaints"].points < 0
    assert "14 orders in 365 d (high-frequency)" in by["frequency"].note
    assert "3 categories in 365 d (multi-category)" in by["breadth"].note
    assert "spend 250,000.00" in by["value"].note
    assert "survey average 0.80" in by["satisfaction"].note
    assert "neutral" in scoring.explain(Facts(), P).dimensions[5].note


def test_score_is_clamped_and_weights_are_configurable() -> None:
    assert scoring.score(Facts(complaints=100), P) == 0
    only_value = pol(
        weights={
            "value": 1,
            "frequency": 0,
            "breadth": 0,
            "recency": 0,
            "loyalty": 0,
            "satisfaction": 0,
            "complaints": 0,
        }
    )
    assert scoring.score(Facts(spend=500_000, complaints=9), only_value) == 100


# --- thresholds mode ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        (600_000, "VIP"),
        (500_000, "VIP"),
        (499_999.99, "A"),
        (200_000, "A"),
        (50_000, "B"),
        (0, "C"),
    ],
)
def test_spend_bands(spend: float, tier: str) -> None:
    assert scoring.grade_thresholds(Facts(spend=spend), 50, P).tier == tier


def test_high_frequency_raises_one_grade() -> None:
    ten = Facts(spend=60_000, orders=10)
    eleven = Facts(spend=60_000, orders=11)
    assert scoring.grade_thresholds(ten, 50, P).tier == "B"
    g = scoring.grade_thresholds(eleven, 50, P)
    assert g.tier == "A" and "high-frequency (11 orders)" in g.reason


def test_multi_category_raises_one_grade_and_raises_do_not_stack() -> None:
    assert scoring.grade_thresholds(Facts(spend=60_000, categories=3), 50, P).tier == "A"
    both = Facts(spend=60_000, orders=20, categories=4)
    assert scoring.grade_thresholds(both, 50, P).tier == "A"


def test_raises_follow_the_policy() -> None:
    f = Facts(spend=250_000, orders=20, categories=4)
    assert scoring.grade_thresholds(f, 50, P).tier == "VIP"
    assert scoring.grade_thresholds(f, 50, pol(raise_ceiling="A")).tier == "A"
    assert scoring.grade_thresholds(f, 50, pol(raise_grades=0)).tier == "A"
    off = pol(raise_for_high_frequency=False, raise_for_multi_category=False)
    assert scoring.grade_thresholds(f, 50, off).tier == "A"
    assert (
        scoring.grade_thresholds(Facts(spend=60_000, orders=20), 50, pol(raise_grades=2)).tier
        == "VIP"
    )


def test_min_score_floor() -> None:
    p = parse_policy(
        {
            "tiers": [
                {"name": "VIP", "min_spend": 500_000, "min_score": 60},
                {"name": "A", "min_spend": 200_000},
                {"name": "C", "min_spend": 0},
            ]
        }
    )
    rich = Facts(spend=900_000)
    assert scoring.grade_thresholds(rich, 61, p).tier == "VIP"
    assert scoring.grade_thresholds(rich, 59, p).tier == "A"


def test_configurable_names_and_number_of_tiers() -> None:
    p = parse_policy(
        {
            "tiers": [
                {"name": "platinum", "min_spend": 1_000_000, "human_first": True},
                {"name": "gold", "min_spend": 300_000},
                {"name": "silver", "min_spend": 100_000},
                {"name": "iron", "min_spend": 10_000},
                {"name": "lead", "min_spend": 0},
            ]
        }
    )
    assert scoring.grade_thresholds(Facts(spend=150_000), 50, p).tier == "silver"
    assert scoring.grade_thresholds(Facts(spend=5), 50, p).tier == "lead"


# --- percentile mode ---------------------------------------------------------------------


def test_percentile_cut_positions_and_cutoffs() -> None:
    p = pol(mode="percentile")  # VIP 10%, A 15%, B 25%, C the rest
    assert scoring.cut_positions(100, p) == (10, 25, 50)
    assert scoring.cut_positions(5, p) == (1, 2, 3)
    assert scoring.cut_positions(0, p) == (None, None, None)
    scores = sorted((float(i) for i in range(100)), reverse=True)
    cuts = scoring.cutoffs_from_sorted(scores, p)
    assert cuts == (90.0, 75.0, 50.0)
    tiers = [scoring.grade_percentile(s, cuts, p).tier for s in scores]
    assert [tiers.count(t) for t in ("VIP", "A", "B", "C")] == [10, 15, 25, 50]


def test_percentile_ties_share_a_tier() -> None:
    p = pol(mode="percentile")
    scores = [90.0] * 3 + [50.0] * 17
    cuts = scoring.cutoffs_from_sorted(scores, p)
    assert {scoring.grade_percentile(s, cuts, p).tier for s in scores[:3]} == {"VIP"}


def test_percentile_policy_needs_shares() -> None:
    with pytest.raises(PolicyError, match="needs a share"):
        parse_policy(
            {
                "scoring": {"mode": "percentile"},
                "tiers": [{"name": "top", "min_spend": 10}, {"name": "rest"}],
            }
        )
    with pytest.raises(PolicyError, match="more than 1"):
        parse_policy(
            {
                "scoring": {"mode": "percentile"},
                "tiers": [{"name": "a", "share": 0.7}, {"name": "b", "share": 0.6}, {"name": "c"}],
            }
        )
    ok = parse_policy(
        {
            "scoring": {"mode": "percentile"},
            "tiers": [{"name": "gold", "share": 0.2}, {"name": "iron"}],
        }
    )
    assert scoring.cut_positions(10, ok) == (2,)


def test_policy_rejects_bad_scoring_keys() -> None:
    with pytest.raises(PolicyError, match="raise_ceiling"):
        pol(raise_ceiling="Diamond")
    with pytest.raises(PolicyError, match="bad placeholder"):
        pol(messages={"upgrade": {"en": "hi {nam}"}})
    with pytest.raises(PolicyError, match="schedule"):
        pol(schedule="monthly")
    with pytest.raises(PolicyError, match="weigth"):
        pol(weigth={})


# --- override and hysteresis -------------------------------------------------------------


def grade(tier: str) -> Grade:
    return Grade(tier, f"model says {tier}")


def test_override_wins_over_the_model() -> None:
    d = scoring.decide(TierState("B", override="VIP"), grade("C"), P, NOW)
    assert (d.tier, d.kind) == ("VIP", scoring.OVERRIDE)
    same = scoring.decide(TierState("VIP", override="VIP"), grade("C"), P, NOW)
    assert same.tier == "VIP" and not same.changed


def test_upgrade_takes_effect_at_once() -> None:
    d = scoring.decide(TierState("B", below_count=1, below_since=NOW), grade("VIP"), P, NOW)
    assert (d.tier, d.kind, d.below_count, d.below_since) == ("VIP", scoring.UPGRADE, 0, None)


def test_downgrade_only_after_n_consecutive_evaluations() -> None:
    state = TierState("VIP")
    d1 = scoring.decide(state, grade("B"), P, NOW)
    assert (d1.tier, d1.changed, d1.below_count) == ("VIP", False, 1)
    assert "holding VIP (1/2 below)" in d1.reason
    state = TierState("VIP", below_count=d1.below_count, below_since=d1.below_since)
    d2 = scoring.decide(state, grade("B"), P, NOW + timedelta(days=30))
    assert (d2.tier, d2.kind, d2.below_count) == ("B", scoring.DOWNGRADE, 0)


def test_back_in_band_resets_the_count() -> None:
    d = scoring.decide(TierState("VIP", below_count=1, below_since=NOW), grade("VIP"), P, NOW)
    assert (d.tier, d.below_count, d.below_since, d.changed) == ("VIP", 0, None, False)


def test_downgrade_grace_period() -> None:
    p = pol(downgrade_after=1, downgrade_grace_days=30)
    d1 = scoring.decide(TierState("A"), grade("C"), p, NOW)
    assert d1.tier == "A" and d1.below_since == NOW
    s = TierState("A", below_count=1, below_since=NOW)
    assert scoring.decide(s, grade("C"), p, NOW + timedelta(days=29)).tier == "A"
    assert scoring.decide(s, grade("C"), p, NOW + timedelta(days=30)).tier == "C"


def test_first_evaluation_takes_the_model_grade_either_way() -> None:
    d = scoring.decide(TierState("C", evaluated=False), grade("A"), P, NOW)
    assert (d.tier, d.kind) == ("A", scoring.INITIAL)
    gone = scoring.decide(TierState("Gold"), grade("B"), P, NOW)  # tier renamed in policy
    assert gone.tier == "B"


# --- survey feedback ---------------------------------------------------------------------


def test_survey_answers_normalise_and_average() -> None:
    assert scoring.normalise_answer("csat", 5) == 1 and scoring.normalise_answer("csat", 1) == 0
    assert scoring.normalise_answer("nps", 7) == pytest.approx(0.7)
    assert scoring.ewma(None, 0.0, P) == pytest.approx(0.35)  # from neutral 0.5, alpha 0.3
    assert scoring.ewma(0.35, 1.0, P) == pytest.approx(0.545)
    assert scoring.is_detractor("csat", 2, P) and not scoring.is_detractor("csat", 3, P)
    assert scoring.is_detractor("nps", 6, P) and not scoring.is_detractor("nps", 7, P)
    with pytest.raises(ValueError):
        scoring.normalise_answer("ces", 3)
