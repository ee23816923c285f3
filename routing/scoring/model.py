"""Customer scoring and tiers: pure functions of a customer's figures and the policy.

The one place that knows how a customer's score and tier follow from their data. No I/O here:
the set-based rescoring (``routing.scoring.rescoring.rescore``) feeds SQL aggregates into these
same
functions, so it and any per-customer computation agree by construction.

The model:

* Seven dimensions, each normalised to 0..1 and explained (``explain``): value (trailing
  spend, log scale), frequency (orders in the window), breadth (distinct categories), recency
  (days since the last order), loyalty (tenure and repeat purchase), satisfaction (survey
  average, neutral when unknown) and complaints (decayed count; counts against).
* The score is 0..100: the weighted mean of the positive dimensions, less the weighted
  complaints penalty, clamped.
* A model grade: ``grade_thresholds`` (spend bands, optional score floors, a raise for
  high-frequency or multi-category buyers) or ``grade_percentile`` (shares of customers by
  score, through ``cut_positions``/``cutoffs_from_sorted``).
* ``decide`` applies a manual override and hysteresis to the model grade: up at once, down only
  after ``downgrade_after`` consecutive evaluations below (and the grace period).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from routing.policy.root import Policy

DIMENSIONS = (
    "value",
    "frequency",
    "breadth",
    "recency",
    "loyalty",
    "satisfaction",
    "complaints",
)
SCORE_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Facts:
    """What the model knows about one customer, as of one evaluation."""

    spend: float = 0.0  # trailing-window spend, currency units
    orders: int = 0  # orders in the window
    categories: int = 0  # distinct categories bought in the window
    days_since_last: float | None = None  # since the last order (any time); None: no orders
    tenure_days: float | None = None  # since the first order; None: no orders
    orders_total: int = 0  # all-time orders
    satisfaction: float | None = None  # survey average 0..1; None: no answers yet
    complaints: float = 0.0  # complaint count, decayed to now


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    value: float  # normalised 0..1
    weight: float
    points: float  # contribution to the score (negative for complaints)
    note: str  # what the value is made of, for people


@dataclass(frozen=True, slots=True)
class Explanation:
    score: float
    dimensions: tuple[Dimension, ...]


@dataclass(frozen=True, slots=True)
class Grade:
    tier: str
    reason: str


def decayed(count: float, age_days: float, half_life_days: float) -> float:
    """A count that halves every ``half_life_days``."""
    if count <= 0:
        return 0.0
    return float(count * 0.5 ** (max(age_days, 0.0) / half_life_days))


def normalise_csat(score: int) -> float:
    return min(max((score - 1) / 4, 0.0), 1.0)


def normalise_nps(score: int) -> float:
    return min(max(score / 10, 0.0), 1.0)


def is_high_frequency(f: Facts, policy: Policy) -> bool:
    return f.orders > policy.scoring.high_frequency_orders


def is_multi_category(f: Facts, policy: Policy) -> bool:
    return f.categories >= policy.scoring.multi_category_min


def dimension_values(f: Facts, policy: Policy) -> tuple[float, ...]:
    """The seven normalised dimensions, in ``DIMENSIONS`` order."""
    n = policy.scoring.normalise
    value = min(math.log1p(max(f.spend, 0.0)) / math.log1p(n.value_full_spend), 1.0)
    frequency = min(f.orders / n.frequency_full_orders, 1.0)
    breadth = min(f.categories / n.breadth_full_categories, 1.0)
    if f.days_since_last is None:
        recency = 0.0
    else:
        recency = max(1.0 - max(f.days_since_last, 0.0) / n.recency_full_days, 0.0)
    if f.tenure_days is None:
        loyalty = 0.0
    else:
        tenure = min(max(f.tenure_days, 0.0) / n.tenure_full_days, 1.0)
        repeat = min(max(f.orders_total - 1, 0) / n.repeat_full_orders, 1.0)
        loyalty = (tenure + repeat) / 2
    sat = policy.scoring.satisfaction.neutral if f.satisfaction is None else f.satisfaction
    complaints = min(max(f.complaints, 0.0) / n.complaints_full, 1.0)
    return (value, frequency, breadth, recency, loyalty, sat, complaints)


def total(values: Sequence[float], policy: Policy) -> float:
    w = policy.scoring.weights
    weights = (w.value, w.frequency, w.breadth, w.recency, w.loyalty, w.satisfaction)
    positive = sum(weights)
    raw = sum(wi * vi for wi, vi in zip(weights, values, strict=False)) - w.complaints * values[6]
    return round(min(max(100.0 * raw / positive, 0.0), 100.0), SCORE_DECIMALS)


def score(f: Facts, policy: Policy) -> float:
    """The customer's score, 0..100 (the fast path of ``explain``)."""
    return total(dimension_values(f, policy), policy)


def explain(f: Facts, policy: Policy) -> Explanation:
    """The score broken down by dimension, with a note on what each is made of."""
    values = dimension_values(f, policy)
    w = policy.scoring.weights
    weights = (
        w.value,
        w.frequency,
        w.breadth,
        w.recency,
        w.loyalty,
        w.satisfaction,
        w.complaints,
    )
    positive = sum(weights[:6])
    window = policy.scoring.window_days
    notes = (
        f"spend {f.spend:,.2f} in {window} d",
        f"{f.orders} orders in {window} d"
        + (" (high-frequency)" if is_high_frequency(f, policy) else ""),
        f"{f.categories} categories in {window} d"
        + (" (multi-category)" if is_multi_category(f, policy) else ""),
        "no orders" if f.days_since_last is None else f"last order {f.days_since_last:.0f} d ago",
        "no orders"
        if f.tenure_days is None
        else f"customer for {f.tenure_days:.0f} d, {f.orders_total} orders in all",
        "no survey answers (neutral)"
        if f.satisfaction is None
        else f"survey average {f.satisfaction:.2f}",
        f"{f.complaints:.2f} complaints (decayed)",
    )
    dims = []
    for i, name in enumerate(DIMENSIONS):
        sign = -1.0 if name == "complaints" else 1.0
        points = sign * 100.0 * weights[i] * values[i] / positive
        dims.append(Dimension(name, values[i], weights[i], points, notes[i]))
    return Explanation(total(values, policy), tuple(dims))


# --- The model's grade -----------------------------------------------------------------


def grade_thresholds(f: Facts, score_: float, policy: Policy) -> Grade:
    """Spend bands (and score floors), raised for high-frequency or multi-category buyers."""
    tiers = policy.tiers
    base = len(tiers) - 1
    for i, t in enumerate(tiers):
        if f.spend >= t.min_spend and score_ >= t.min_score:
            base = i
            break
    t = tiers[base]
    reason = f"spend {f.spend:,.2f} >= {t.min_spend:,.0f}"
    if t.min_score:
        reason += f", score {score_:.1f} >= {t.min_score:g}"
    s = policy.scoring
    why = []
    if s.raise_for_high_frequency and is_high_frequency(f, policy):
        why.append(f"high-frequency ({f.orders} orders)")
    if s.raise_for_multi_category and is_multi_category(f, policy):
        why.append(f"multi-category ({f.categories})")
    if why and s.raise_grades:
        ceiling = 0 if s.raise_ceiling is None else policy.rank(s.raise_ceiling)
        target = max(base - s.raise_grades, ceiling)
        # A raised tier still needs its score floor.
        while target < base and score_ < tiers[target].min_score:
            target += 1
        if target < base:
            reason += f"; raised to {tiers[target].name}: " + ", ".join(why)
            base = target
    return Grade(tiers[base].name, reason)


def cut_positions(n: int, policy: Policy) -> tuple[int | None, ...]:
    """Percentile mode: for each tier but the last, the 1-based position (best first) of the
    lowest-scoring customer it takes among ``n``; None when it takes nobody."""
    out: list[int | None] = []
    cum = 0.0
    for t in policy.tiers[:-1]:
        cum += t.share or 0.0
        k = math.ceil(cum * n - 1e-9)
        out.append(min(k, n) if k > 0 else None)
    return tuple(out)


def cutoffs_from_sorted(scores_desc: Sequence[float], policy: Policy) -> tuple[float | None, ...]:
    """Percentile mode: the minimum score of each tier but the last, from all scores sorted
    best first. A customer is in the first tier whose cutoff their score reaches, so customers
    with equal scores always share a tier."""
    return tuple(
        None if k is None else scores_desc[k - 1] for k in cut_positions(len(scores_desc), policy)
    )


def grade_percentile(score_: float, cutoffs: Sequence[float | None], policy: Policy) -> Grade:
    cum = 0.0
    for t, cut in zip(policy.tiers, cutoffs, strict=False):
        cum += t.share or 0.0
        if cut is not None and score_ >= cut:
            return Grade(t.name, f"score {score_:.1f} in the top {100 * cum:g}% (>= {cut:.1f})")
    return Grade(policy.lowest_tier, f"score {score_:.1f} below every share")


def model_grade(
    f: Facts, score_: float, policy: Policy, cutoffs: Sequence[float | None] = ()
) -> Grade:
    if policy.scoring.mode == "percentile":
        return grade_percentile(score_, cutoffs, policy)
    return grade_thresholds(f, score_, policy)


def grade_by_spend(spend_12m: float, policy: Policy) -> Grade:
    """The highest tier whose ``min_spend`` the trailing-window spend reaches."""
    for tier in policy.tiers:
        if spend_12m >= tier.min_spend:
            return Grade(tier.name, f"spend {spend_12m:,.2f} >= {tier.min_spend:,.0f}")
    return Grade(policy.lowest_tier, "below every band")


# --- Override and hysteresis -----------------------------------------------------------

INITIAL = "initial"
UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class TierState:
    """A customer's tier bookkeeping before an evaluation."""

    tier: str
    override: str | None = None
    below_count: int = 0
    below_since: datetime | None = None
    evaluated: bool = True  # False before the first evaluation: the model's tier applies


@dataclass(frozen=True, slots=True)
class Decision:
    tier: str
    below_count: int
    below_since: datetime | None
    kind: str | None  # INITIAL | UPGRADE | DOWNGRADE | OVERRIDE, None when unchanged
    reason: str

    @property
    def changed(self) -> bool:
        return self.kind is not None


def decide(state: TierState, model: Grade, policy: Policy, now: datetime) -> Decision:
    """The tier a customer holds after this evaluation."""
    if state.override and state.override in policy.tier_names:
        kind = None if state.override == state.tier else OVERRIDE
        return Decision(state.override, 0, None, kind, "manual override")
    if not state.evaluated or state.tier not in policy.tier_names:
        kind = None if model.tier == state.tier else INITIAL
        return Decision(model.tier, 0, None, kind, model.reason)
    have, want = policy.rank(state.tier), policy.rank(model.tier)
    if want < have:
        return Decision(model.tier, 0, None, UPGRADE, model.reason)
    if want == have:
        return Decision(state.tier, 0, None, None, model.reason)
    s = policy.scoring
    count = state.below_count + 1
    since = state.below_since or now
    if count >= s.downgrade_after and now - since >= timedelta(days=s.downgrade_grace_days):
        reason = f"{model.reason}; below {state.tier} for {count} evaluations"
        return Decision(model.tier, 0, None, DOWNGRADE, reason)
    held = f"{model.reason}; holding {state.tier} ({count}/{s.downgrade_after} below)"
    return Decision(state.tier, count, since, None, held)


def effective_grade(spend_12m: float, tier_override: str | None, policy: Policy) -> Grade:
    """Spend bands alone, unless a valid manual override pins the tier (kept for callers of
    the walking skeleton; rescoring uses the full model)."""
    if tier_override and tier_override in policy.tier_names:
        return Grade(tier_override, "manual override")
    return grade_by_spend(spend_12m, policy)


# --- Survey feedback -------------------------------------------------------------------

CSAT = "csat"
NPS = "nps"


def normalise_answer(kind: str, answer: int) -> float:
    """A survey answer on 0..1: CSAT 1-5, NPS 0-10."""
    if kind == CSAT:
        return normalise_csat(answer)
    if kind == NPS:
        return normalise_nps(answer)
    raise ValueError(f"unknown survey kind {kind!r}")


def is_detractor(kind: str, answer: int, policy: Policy) -> bool:
    s = policy.scoring.satisfaction
    return answer <= (s.csat_detractor_max if kind == CSAT else s.nps_detractor_max)


def ewma(previous: float | None, answer: float, policy: Policy) -> float:
    """The satisfaction average after one more answer; it starts from ``neutral``, so one
    answer moves a new customer only part of the way."""
    s = policy.scoring.satisfaction
    base = s.neutral if previous is None else previous
    return s.alpha * answer + (1 - s.alpha) * base
