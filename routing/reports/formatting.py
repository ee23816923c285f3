"""How figures read in the table and the HTML page: durations, shares, money, scores.

Missing figures (nothing to measure: no answered chat, no survey) read ``-``.
"""

from __future__ import annotations

__all__ = ["MISSING", "duration", "money", "number", "percent", "points", "score"]

MISSING = "-"


def duration(seconds: float | None) -> str:
    """``45s``, ``4m 05s``, ``2h 03m``, ``3d 04h``."""
    if seconds is None:
        return MISSING
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def percent(share: float | None) -> str:
    return MISSING if share is None else f"{share:.1%}"


def points(nps: float | None) -> str:
    """An NPS score, in points (-100..100)."""
    return MISSING if nps is None else f"{nps:+.1f}"


def score(average: float | None) -> str:
    return MISSING if average is None else f"{average:.2f}"


def money(amount: float) -> str:
    return f"{amount:,.0f}"


def number(value: int) -> str:
    return f"{value:,}"
