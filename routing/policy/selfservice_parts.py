"""The parts of the ``[selfservice]`` section: FAQ entries, menu and action nodes, per-tier
access with business hours, and the search settings; their defaults live in
:mod:`routing.policy.selfservice`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
)

from routing.policy.base import Strict
from routing.policy.check import check_zone


def _canonical_key(key: str) -> str:
    parts = key.replace("-", "_").split("_")
    head = parts[0].lower()
    tail = [p.title() if len(p) == 4 else p.upper() for p in parts[1:]]
    return "_".join([head, *tail])


def _norm_text_keys(value: Any) -> Any:
    # Accept zh-Hans / zh_hans spellings in the file; keep locale names as catalogs spell them.
    if isinstance(value, dict):
        return {_canonical_key(str(k)): v for k, v in value.items()}
    return value


# The menu item that hands the customer over to a person.
HUMAN = "human"


ACTIONS = ("my_orders", "order_status", "my_tier", "complaint")


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_HOURS_RE = re.compile(
    r"^(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))?\s+(?P<h1>\d{2}):(?P<m1>\d{2})-(?P<h2>\d{2}):(?P<m2>\d{2})$"
)


def normalise_language(code: str | None, available: Iterable[str]) -> str | None:
    """Map a language tag (``zh``, ``zh-CN``, ``zh-Hans``, ``en-GB``, ``pt_BR``) to an
    available locale name (``zh_Hans``, ``en``), or None if none fits.

    Chinese of any region is served in Simplified Chinese, the only Chinese catalog shipped:
    closer for a Traditional reader than falling back to English.
    """
    if not code:
        return None
    avail = {a.lower(): a for a in available}
    parts = code.strip().replace("-", "_").split("_")
    lang = parts[0].lower()
    if not lang:
        return None
    exact = "_".join([lang, *parts[1:]]).lower()
    if exact in avail:
        return avail[exact]
    if lang == "zh" and "zh_hans" in avail:
        return avail["zh_hans"]
    if lang in avail:
        return avail[lang]
    return next((a for low, a in avail.items() if low.split("_")[0] == lang), None)


class FaqEntry(Strict):
    """A question and its answer: a menu leaf and a free-text search target."""

    id: NodeId
    question: LocalText
    answer: LocalText
    # Extra words customers use for this topic (search only), per language or for all.
    keywords: Annotated[
        dict[str, tuple[str, ...]] | tuple[str, ...], BeforeValidator(_norm_text_keys)
    ] = ()
    link: str | None = Field(default=None, pattern=r"^https?://\S+$")
    image: str | None = None
    # Tiers that see this entry (empty: everyone).
    tiers: tuple[str, ...] = ()


class MenuNode(Strict):
    title: LocalText  # the button that opens this menu
    text: LocalText  # shown above the menu's buttons
    items: tuple[str, ...] = Field(min_length=1)
    tiers: tuple[str, ...] = ()


class ActionNode(Strict):
    title: LocalText
    action: Action
    tiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenSpan:
    day: int  # 0 = Monday
    start: time
    end: time | None  # None: until midnight


class TierAccess(Strict):
    # The menu this tier starts from (default: selfservice.root).
    menu: str | None = None
    # How the tier reaches a person: any time (/human, menu button), only after self-service
    # (an answer shown or a question asked this session), or never.
    human: HumanAccess = "always"
    # When people answer this tier's chats, e.g. ["mon-fri 09:00-18:00", "sat 10:00-14:00"]
    # in ``timezone``. Empty: 24/7.
    hours: tuple[str, ...] = ()
    timezone: str = "UTC"
    benefits: LocalText = ""

    @field_validator("hours")
    @classmethod
    def _hours(cls, hours: tuple[str, ...]) -> tuple[str, ...]:
        for h in hours:
            parse_hours(h)
        return hours

    @field_validator("timezone")
    @classmethod
    def _tz(cls, tz: str) -> str:
        return check_zone(tz)

    def spans(self) -> list[OpenSpan]:
        return [s for h in self.hours for s in parse_hours(h)]

    def is_open(self, now: datetime) -> bool:
        if not self.hours:
            return True
        local = now.astimezone(ZoneInfo(self.timezone))
        t = local.time().replace(tzinfo=None)
        return any(
            s.day == local.weekday() and s.start <= t and (s.end is None or t < s.end)
            for s in self.spans()
        )


def parse_hours(text: str) -> list[OpenSpan]:
    """``"mon-fri 09:00-18:00"`` -> one span per day. ``24:00`` means midnight."""
    m = _HOURS_RE.match(text.strip().lower())
    if not m or m["d1"] not in _DAYS or (m["d2"] and m["d2"] not in _DAYS):
        raise ValueError(
            f"hours {text!r}: expected e.g. 'mon-fri 09:00-18:00' or 'sat 10:00-14:00'"
        )
    h1, m1, h2, m2 = (int(m[k]) for k in ("h1", "m1", "h2", "m2"))
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"hours {text!r}: not a time of day")
    start = time(h1, m1)
    end = None if h2 == 24 else time(h2, m2)
    if end is not None and end <= start:
        raise ValueError(f"hours {text!r}: the end must be after the start (same day)")
    d1 = _DAYS.index(m["d1"])
    d2 = _DAYS.index(m["d2"]) if m["d2"] else d1
    days = range(d1, d2 + 1) if d2 >= d1 else [*range(d1, 7), *range(0, d2 + 1)]
    return [OpenSpan(d, start, end) for d in days]


class SearchPolicy(Strict):
    # A match scoring at least this (0-1: how much of the question it covers) is answered
    # straight away with "did this help?"; below, the best few are offered as buttons.
    confident: float = Field(default=0.6, gt=0, le=1)
    # Matches scoring below this are not offered at all.
    minimum: float = Field(default=0.25, ge=0, le=1)
    # How many next-best answers to offer after "no" or without a confident match.
    suggestions: int = Field(default=3, ge=1, le=8)
    # Groups of words that mean the same to customers (any language), e.g.
    # ["delivery", "shipping", "ship", "parcel"].
    synonyms: tuple[tuple[str, ...], ...] = Field(default_factory=lambda: _default_synonyms())


NodeId = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
]


# A text the customer sees: one string (the same in every language) or a table of
# language -> text that must cover every language in ``selfservice.languages``.
LocalText = Annotated[str | dict[str, str], BeforeValidator(_norm_text_keys)]


# complaint: file a complaint (category, then description), as /complaint does.
Action = Literal["my_orders", "order_status", "my_tier", "complaint"]


HumanAccess = Literal["always", "after_selfservice", "never"]


def _default_synonyms() -> tuple[tuple[str, ...], ...]:
    return (
        ("delivery", "shipping", "ship", "shipped", "deliver", "parcel", "package"),
        ("refund", "reimburse", "reimbursement", "money"),
        ("return", "returns", "exchange"),
        ("hours", "open", "opening", "closed"),
        ("pay", "payment", "paying", "card"),
        ("快递", "物流", "配送", "发货"),
        ("退款", "退钱"),
    )
