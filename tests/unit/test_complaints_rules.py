"""The pure rules of complaints: policy checks, weights by outcome, SLA levels, remedies and
follow-up texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.complaints import follow_up, remedies, sla
from routing.complaints.weights import case_weight, weight_key
from routing.policy.root import Policy, PolicyError, parse_policy
from routing.scoring.satisfaction import case_contribution
from routing.store.care_models import Complaint

T0 = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def problems(data: dict[str, object]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as err:
        parse_policy(data)
    return err.value.problems


def test_policy_names_the_offending_key() -> None:
    assert problems({"complaints": {"acknowledge": {"Gold": 60}}}) == (
        "[complaints] acknowledge.Gold: no such tier (tiers: VIP, A, B, C)",
    )
    assert problems({"care": {"cadence_days": {"Gold": 30}}}) == (
        "[care] cadence_days.Gold: no such tier (tiers: VIP, A, B, C)",
    )
    assert problems({"complaints": {"weights": {"satisfied": 0.9}}}) == (
        "[complaints.weights] satisfied (0.9) must not weigh more than resolved (0.5)",
    )
    assert problems({"complaints": {"weights": {"reopened": 0.9}}}) == (
        "[complaints.weights] open (1) must not weigh more than reopened (0.9)",
    )
    assert problems({"complaints": {"categories": [{"key": "x", "label": {"en": "X"}}]}}) == (
        "[[complaints.categories]] #1 label: missing translation for zh_Hans",
    )
    assert problems({"complaints": {"follow_up": {"thanks": "thanks {name}"}}}) == (
        "[complaints.follow_up] thanks: bad placeholder 'name' (known: {case} {category})",
    )
    assert problems({"complaints": {"resolve": {"A": 0}}}) == (
        "[complaints] resolve: A: a target must be above 0 seconds",
    )
    assert problems({"care": {"score_drop": 120, "pool": [" "]}}) == (
        "[care] pool: an empty agent name",
        "[care] score_drop: Input should be less than or equal to 100",
    )


def test_renamed_tiers_with_their_own_tables_pass() -> None:
    tiers = [{"name": "Gold", "min_spend": 100, "human_first": True}, {"name": "Rest"}]
    p = parse_policy(
        {
            "tiers": tiers,
            "complaints": {"acknowledge": {"Gold": 60}, "resolve": {"Gold": 3600}},
            "care": {"cadence_days": {"Gold": 14}},
        }
    )
    assert p.complaints.acknowledge_seconds("Gold") == 60
    assert p.complaints.resolve_seconds("Rest") is None
    assert p.care.cadence("Gold") == 14 and p.care.cadence("Rest") is None


def test_weights_order_unresolved_and_reopened_above_resolved_above_satisfied() -> None:
    p = Policy()

    def w(status: str, outcome: str | None = None) -> float:
        return case_weight(status, outcome, 1.5, p)

    assert weight_key("acknowledged", None) == "open"
    assert weight_key("resolved", "unsatisfied") == "unsatisfied"
    assert w("reopened") > w("open") > w("resolved") > w("resolved", "satisfied") > 0
    assert w("resolved", "unsatisfied") > w("resolved")
    assert w("open") == pytest.approx(1.5)  # weight x severity
    # A case's contribution decays from its open, like every complaint.
    half = p.scoring.normalise.complaints_half_life_days
    assert case_contribution(2.0, T0, T0 + timedelta(days=half), p) == pytest.approx(1.0)
    assert case_contribution(-2.0, T0, T0, p) == pytest.approx(-2.0)


def test_sla_warns_before_it_breaches_and_finds_late_answers() -> None:
    ack, res = sla.due_dates("B", T0, Policy())
    assert (ack, res) == (T0 + timedelta(hours=4), T0 + timedelta(days=5))
    assert sla.due_dates("Gold", T0, Policy()) == (None, None)

    def levels(now: datetime, acked: datetime | None = None) -> list[tuple[str, str, bool]]:
        checks = sla.evaluate(T0, ack, res, acked, None, now, 0.8)
        return [(c.target, c.level, c.late) for c in checks]

    assert levels(T0 + timedelta(hours=3)) == []
    assert levels(T0 + timedelta(hours=3, minutes=12)) == [("acknowledge", "warn", False)]
    assert levels(T0 + timedelta(hours=4)) == [("acknowledge", "breach", False)]
    # Acknowledged late, found after the fact: a breach on record, nobody to page.
    late = T0 + timedelta(hours=5)
    assert levels(T0 + timedelta(days=4, hours=1), late) == [
        ("acknowledge", "breach", True),
        ("resolve", "warn", False),
    ]
    assert levels(T0 + timedelta(hours=3, minutes=30), T0 + timedelta(hours=1)) == []


def test_remedy_parsing() -> None:
    p = Policy()
    assert remedies.parse_remedy("voucher", p) == remedies.Remedy("voucher")
    assert remedies.parse_remedy("REFUND 25", p) == remedies.Remedy("refund", 2500)
    assert remedies.parse_remedy("refund 12.5 partial", p) == remedies.Remedy(
        "refund", 1250, "partial"
    )
    assert remedies.parse_remedy("apology sent 2 flowers", p) == remedies.Remedy(
        "apology", None, "sent 2 flowers"
    )
    with pytest.raises(remedies.RemedyError, match='no remedy kind "cash"'):
        remedies.parse_remedy("cash 10", p)
    with pytest.raises(remedies.RemedyError, match="which remedy"):
        remedies.parse_remedy("  ", p)
    assert remedies.parse_amount("1,234") is None and remedies.format_amount(2550) == "25.50"


def test_follow_up_texts_in_the_customer_language() -> None:
    case = Complaint(id=12, category="billing")
    en = follow_up.texts(case, "en", Policy())
    assert en["question"] == (
        "Your complaint #12 (Billing or refund) was resolved. Was it resolved to your satisfaction?"
    )
    zh = follow_up.texts(case, "zh_Hans", Policy())
    assert "#12" in zh["rating"] and "账单或退款" in zh["question"]
    assert follow_up.texts(case, "fr", Policy()) == en  # the default language
