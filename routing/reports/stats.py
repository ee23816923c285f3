"""The arithmetic of the figures, pure: percentiles, shares, CSAT, NPS.

Percentiles interpolate linearly between the two nearest ranks (PostgreSQL's
``percentile_cont``, numpy's default): p50 of 10, 20, 30, 40 s is 25 s. They are computed
here, on the values the database returned, so SQLite and PostgreSQL give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Csat", "Durations", "Nps", "SlaShare", "percentile", "ratio"]

# NPS: 9 and 10 are promoters by the method's definition; detractors are the answers at or
# below [scoring.satisfaction] nps_detractor_max (6 by default: the standard 0-6).
NPS_PROMOTER_MIN = 9


def ratio(part: int | float, whole: int | float) -> float | None:
    """part / whole, or None when there is nothing to divide by."""
    return part / whole if whole else None


def percentile(ordered: list[float], p: float) -> float | None:
    """The ``p`` (0..1) percentile of ascending ``ordered`` values, linearly interpolated."""
    if not ordered:
        return None
    rank = p * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Durations:
    """A set of durations in seconds: how many, p50, p90, the longest and the mean."""

    count: int
    p50: float | None
    p90: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Durations:
        values = sorted(seconds)
        if not values:
            return cls(0, None, None, None, None)
        return cls(
            len(values),
            percentile(values, 0.5),
            percentile(values, 0.9),
            values[-1],
            math.fsum(values) / len(values),
        )


@dataclass(frozen=True)
class SlaShare:
    """Conversations that met a target, missed it, or are not judged (no target for their
    tier; still within it; or the customer left before it was due)."""

    met: int = 0
    missed: int = 0
    unjudged: int = 0

    @property
    def judged(self) -> int:
        return self.met + self.missed

    @property
    def share(self) -> float | None:
        return ratio(self.met, self.judged)

    @classmethod
    def of(cls, outcomes: Iterable[bool | None]) -> SlaShare:
        met = missed = unjudged = 0
        for outcome in outcomes:
            if outcome is None:
                unjudged += 1
            elif outcome:
                met += 1
            else:
                missed += 1
        return cls(met, missed, unjudged)


@dataclass(frozen=True)
class Csat:
    """CSAT surveys (scores 1-5): sent (reached the customer), answered, their mean."""

    sent: int = 0
    answered: int = 0
    score_sum: int = 0

    @property
    def average(self) -> float | None:
        return ratio(self.score_sum, self.answered)

    @property
    def response_rate(self) -> float | None:
        return ratio(self.answered, self.sent)

    def __add__(self, other: Csat) -> Csat:
        return Csat(
            self.sent + other.sent,
            self.answered + other.answered,
            self.score_sum + other.score_sum,
        )


@dataclass(frozen=True)
class Nps:
    """NPS answers (0-10): promoters (9-10), passives, detractors (<= the policy's maximum);
    the score is the promoters' share minus the detractors', in points (-100..100)."""

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def answered(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        share = ratio(self.promoters - self.detractors, self.answered)
        return None if share is None else 100 * share

    @classmethod
    def of(cls, scores: Iterable[tuple[int, int]], detractor_max: int) -> Nps:
        """From (score, how many answered it) pairs."""
        promoters = passives = detractors = 0
        for score, n in scores:
            if score <= detractor_max:
                detractors += n
            elif score >= NPS_PROMOTER_MIN:
                promoters += n
            else:
                passives += n
        return cls(promoters, passives, detractors)

    def __add__(self, other: Nps) -> Nps:
        return Nps(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )
