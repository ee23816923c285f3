"""Tier grading: pure functions of a customer's figures and the policy.

The one place that knows how a customer's tier follows from their data. No I/O here, so the
set-based rescoring (``routing.customers.rescore``) and any per-customer check agree by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.policy import Policy


@dataclass(frozen=True, slots=True)
class Grade:
    tier: str
    reason: str


def grade_by_spend(spend_12m: float, policy: Policy) -> Grade:
    """The highest tier whose ``min_spend`` the trailing-window spend reaches."""
    for tier in policy.tiers:
        if spend_12m >= tier.min_spend:
            return Grade(tier.name, f"spend {spend_12m:,.2f} >= {tier.min_spend:,.0f}")
    # Unreachable with a validated policy (lowest min_spend is 0), but never crash on it.
    return Grade(policy.lowest_tier, "below every band")


def effective_grade(spend_12m: float, tier_override: str | None, policy: Policy) -> Grade:
    """The model's grade, unless a valid manual override pins the tier."""
    if tier_override and tier_override in policy.tier_names:
        return Grade(tier_override, "manual override")
    return grade_by_spend(spend_12m, policy)
