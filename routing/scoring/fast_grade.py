"""The model's arithmetic for a million rows: ``routing.scoring.model`` with the policy hoisted.

A full rescore grades every customer, and in the steady state almost none of them changes
tier. Per customer, the reference path (``facts_from_row`` -> ``dimension_values`` ->
``total`` -> ``model_grade`` -> ``decide``) builds four frozen dataclasses, formats a reason
string nobody reads and looks the same policy attributes up again; at a million customers
that was most of the rescore's time. ``FastGrader`` computes the same score and the same tier
decision from the raw ``facts_query`` row with the policy's constants read once, and builds
nothing. It answers only the common case, "no tier change": when the decision is a change
(initial grading, upgrade, downgrade, override) it returns ``None`` and the caller runs the
reference path for that customer, so every reason, explanation and notice still comes from
``routing.scoring.model`` itself.

The arithmetic is the model's, operation for operation (same operands, same order, the same
``sum`` over the same products, the same ``round``), so the floats are bit-identical, not
merely close; ``tests/integration/test_rescore.py`` checks it against the per-customer model
on random data sets and policies, on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import mul
from typing import Any

from routing.policy.root import Policy
from routing.scoring.facts import (
    BELOW_COUNT,
    BELOW_SINCE,
    CATEGORIES,
    COMPLAINTS,
    COMPLAINTS_DAYS,
    EVALUATED,
    FIRST_DAYS,
    LAST_DAYS,
    ORDERS,
    ORDERS_TOTAL,
    OVERRIDE,
    SATISFACTION,
    SPEND_CENTS,
    TIER,
)
from routing.scoring.model import SCORE_DECIMALS

# (score, spend, tier, below_count, below_since, has_data): an unchanged customer's new state.
Unchanged = tuple[float, float, str, int, datetime | None, bool]


class FastGrader:
    """Grades ``facts_query`` rows (thresholds or percentile mode) for one run."""

    def __init__(
        self,
        policy: Policy,
        now: datetime,
        now_days: float,
        cutoffs: Sequence[float | None] = (),
    ) -> None:
        s = policy.scoring
        n = s.normalise
        w = s.weights
        self.now = now
        self.now_days = now_days
        self.half_life = n.complaints_half_life_days
        self.log_full_spend = math.log1p(n.value_full_spend)
        self.full_orders = n.frequency_full_orders
        self.full_categories = n.breadth_full_categories
        self.full_recency = n.recency_full_days
        self.full_tenure = n.tenure_full_days
        self.full_repeat = n.repeat_full_orders
        self.full_complaints = n.complaints_full
        self.neutral = s.satisfaction.neutral
        self.weights = (w.value, w.frequency, w.breadth, w.recency, w.loyalty, w.satisfaction)
        self.positive = sum(self.weights)
        self.complaints_weight = w.complaints
        tiers = policy.tiers
        self.names = tuple(t.name for t in tiers)
        self.rank: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self.rank.setdefault(name, i)  # Policy.rank: the first tier of that name
        self.bands = tuple((t.min_spend, t.min_score) for t in tiers)
        self.min_scores = tuple(t.min_score for t in tiers)
        self.percentile = s.mode == "percentile"
        self.cutoffs = tuple(cutoffs)
        self.raise_hf = s.raise_for_high_frequency
        self.raise_mc = s.raise_for_multi_category
        self.hf_orders = s.high_frequency_orders
        self.mc_min = s.multi_category_min
        self.raise_grades = s.raise_grades
        self.ceiling = 0 if s.raise_ceiling is None else policy.rank(s.raise_ceiling)
        self.downgrade_after = s.downgrade_after
        self.grace = timedelta(days=s.downgrade_grace_days)

    def score(self, row: Sequence[Any]) -> tuple[float, float, int, int, float]:
        """(score, spend, orders, categories, complaints) of a ``facts_query`` row:
        ``facts_from_row`` + ``dimension_values`` + ``total``."""
        now_days = self.now_days
        complaints = 0.0
        count = row[COMPLAINTS]
        # facts_from_row, then model.decayed (0 for a count <= 0).
        if count and row[COMPLAINTS_DAYS] is not None and count > 0:
            age = max(now_days - row[COMPLAINTS_DAYS], 0.0)
            complaints = float(count * 0.5 ** (age / self.half_life))
        spend = int(row[SPEND_CENTS]) / 100
        orders = int(row[ORDERS])
        categories = int(row[CATEGORIES])
        last, first = row[LAST_DAYS], row[FIRST_DAYS]
        value = min(math.log1p(max(spend, 0.0)) / self.log_full_spend, 1.0)
        frequency = min(orders / self.full_orders, 1.0)
        breadth = min(categories / self.full_categories, 1.0)
        if last is None:
            recency = 0.0
        else:
            recency = max(1.0 - max(now_days - last, 0.0) / self.full_recency, 0.0)
        if first is None:
            loyalty = 0.0
        else:
            tenure = min(max(now_days - first, 0.0) / self.full_tenure, 1.0)
            total_orders = int(row[ORDERS_TOTAL] or 0)
            repeat = min(max(total_orders - 1, 0) / self.full_repeat, 1.0)
            loyalty = (tenure + repeat) / 2
        sat = row[SATISFACTION]
        if sat is None:
            sat = self.neutral
        penalty = min(max(complaints, 0.0) / self.full_complaints, 1.0)
        # model.total: the same sum over the same six products, then the penalty.
        raw = (
            sum(map(mul, self.weights, (value, frequency, breadth, recency, loyalty, sat)))
            - self.complaints_weight * penalty
        )
        score = round(min(max(100.0 * raw / self.positive, 0.0), 100.0), SCORE_DECIMALS)
        return score, spend, orders, categories, complaints

    def model_rank(self, score: float, spend: float, orders: int, categories: int) -> int:
        """The rank of ``model.model_grade``'s tier."""
        if self.percentile:
            for i, cut in enumerate(self.cutoffs[: len(self.names)]):
                if cut is not None and score >= cut:
                    return i
            return len(self.names) - 1
        bands = self.bands
        base = len(bands) - 1
        for i, (min_spend, min_score) in enumerate(bands):
            if spend >= min_spend and score >= min_score:
                base = i
                break
        if self.raise_grades and (
            (self.raise_hf and orders > self.hf_orders)
            or (self.raise_mc and categories >= self.mc_min)
        ):
            target = max(base - self.raise_grades, self.ceiling)
            while target < base and score < self.min_scores[target]:
                target += 1
            if target < base:
                base = target
        return base

    def unchanged(
        self, row: Sequence[Any], model_rank: int
    ) -> tuple[str, int, datetime | None] | None:
        """``model.decide`` when it keeps the tier: (tier, below_count, below_since); ``None``
        when it changes it (the caller then asks the model itself, for the reason)."""
        tier = row[TIER]
        model_tier = self.names[model_rank]
        override = row[OVERRIDE]
        if override and override in self.rank:
            return (override, 0, None) if override == tier else None
        have = self.rank.get(tier)
        if not row[EVALUATED] or have is None:
            return (model_tier, 0, None) if model_tier == tier else None
        want = self.rank[model_tier]
        if want < have:
            return None
        if want == have:
            return (tier, 0, None)
        count = row[BELOW_COUNT] + 1
        since = row[BELOW_SINCE] or self.now
        if count >= self.downgrade_after and self.now - since >= self.grace:
            return None
        return (tier, count, since)
