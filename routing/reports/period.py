"""The period a report covers, ``[since, until)``, from the command line's words.

``--since`` is a duration back from the end (``30d``, ``12h``, ``2w``, ``90m``) or a date or
instant; ``--until`` a date or instant (default: now). A date means midnight UTC at its start,
and ``until`` is exclusive: ``--until 2026-12-01`` ends with the last moment of November 30.
An instant without a zone is UTC. Every error is one line that says what to type instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

__all__ = ["DEFAULT_SINCE", "Period", "parse_duration", "parse_instant", "period"]

DEFAULT_SINCE = "30d"
_DURATION_RE = re.compile(r"\s*(\d{1,6})\s*([mhdw])\s*", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Ten years: a longer look back is a typo (and datetime arithmetic stays in range).
_LONGEST = timedelta(days=3660)


@dataclass(frozen=True)
class Period:
    """``[since, until)``; ``now`` is when the report is made: chats still open and
    self-service sessions still live are judged as of then."""

    since: datetime
    until: datetime
    now: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.since <= instant < self.until


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``2w`` -> a positive timedelta (at most ten years)."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad duration {text!r}: use a number and m, h, d or w (e.g. 30d)")
    span = timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
    if not timedelta(0) < span <= _LONGEST:
        raise ValueError(f"bad duration {text!r}: between 1 minute and 3660 days")
    return span


def parse_instant(text: str) -> datetime:
    """``2026-11-30`` (midnight UTC) or ``2026-11-30T08:00[+02:00]`` -> an aware datetime."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC unless a zone is given)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def period(since: str | None, until: str | None, now: datetime) -> Period:
    """The period the options name; ValueError (one line) when they make no sense."""
    end = parse_instant(until) if until else now
    words = since or DEFAULT_SINCE
    # A date starts with its four-digit year; anything else is read as a duration.
    is_date = re.match(r"\s*\d{4}-", words) is not None
    start = parse_instant(words) if is_date else end - parse_duration(words)
    if start >= end:
        raise ValueError(
            f"--since {words!r} is not before --until {end:%Y-%m-%d %H:%M} UTC: "
            "the period would be empty"
        )
    return Period(start, end, now)
