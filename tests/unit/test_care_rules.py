"""The pure care checks: cadence, score drop, pending downgrade, who is at risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from routing.care import triggers
from routing.policy.root import Policy, parse_policy

T0 = datetime(2026, 12, 10, tzinfo=UTC)


def test_cadence_per_tier() -> None:
    p = Policy()
    assert (p.care.cadence("VIP"), p.care.cadence("A"), p.care.cadence("C")) == (30, 90, None)
    assert triggers.cadence_due(T0, 30) == T0 + timedelta(days=30)


def test_score_drop_only_for_human_first_tiers_and_only_past_the_threshold() -> None:
    p = Policy()
    assert triggers.score_dropped("VIP", 80.0, 70.0, p)
    assert not triggers.score_dropped("VIP", 80.0, 70.5, p)
    assert not triggers.score_dropped("VIP", None, 10.0, p)
    assert not triggers.score_dropped("A", 80.0, 10.0, p)
    assert not triggers.score_dropped("VIP", 80.0, 10.0, parse_policy({"care": {"score_drop": 0}}))


def test_pending_downgrade_detractor_and_complaint() -> None:
    p = Policy()
    assert triggers.downgrade_pending("VIP", 1, None, p)
    assert not triggers.downgrade_pending("VIP", 0, None, p)
    assert not triggers.downgrade_pending("VIP", 2, "VIP", p)  # pinned: goes nowhere
    assert not triggers.downgrade_pending("B", 2, None, p)
    assert triggers.at_risk_on_answer("VIP", p) and not triggers.at_risk_on_answer("A", p)
    assert not triggers.at_risk_on_answer("VIP", parse_policy({"care": {"enabled": False}}))
    assert triggers.at_risk_on_complaint("VIP", p)
    assert not triggers.at_risk_on_complaint("VIP", parse_policy({"care": {"complaint": False}}))
