"""The business's policy: tiers, scoring, queue, self-service and surveys.

Loaded from a TOML file (``CONTACTBOT_CONFIG``) and validated by pydantic so that every error
names the offending key. Everything a business may want to tune lives here, not in code.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    # Unknown keys are almost always typos; silently ignoring them hides a misconfiguration.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierPolicy(_Strict):
    name: str = Field(min_length=1, max_length=32)
    min_spend: float = Field(ge=0)
    human_first: bool = False


class ScoringPolicy(_Strict):
    window_days: int = Field(default=365, ge=1)


class IdentificationPolicy(_Strict):
    # ISO 3166 region for CRM phone numbers written without a country code (e.g. "GB", "CN").
    # None: such numbers are rejected at import as ambiguous.
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class QueuePolicy(_Strict):
    # How many waiting chats /queue shows at once (Telegram caps a keyboard's size).
    queue_page_size: int = Field(default=10, ge=1, le=50)


class FaqEntry(_Strict):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    question: str = Field(min_length=1, max_length=64)
    answer: str = Field(min_length=1, max_length=4000)


class SelfServicePolicy(_Strict):
    greeting: str = "Hello! Pick a topic below, or talk to a person."
    faq: tuple[FaqEntry, ...] = ()

    @field_validator("faq")
    @classmethod
    def _unique_ids(cls, faq: tuple[FaqEntry, ...]) -> tuple[FaqEntry, ...]:
        seen: set[str] = set()
        for entry in faq:
            if entry.id in seen:
                raise ValueError(f"duplicate faq id {entry.id!r}")
            seen.add(entry.id)
        return faq


class CsatPolicy(_Strict):
    delay_seconds: int = Field(default=600, ge=0)


class SurveysPolicy(_Strict):
    csat: CsatPolicy = CsatPolicy()


def _default_tiers() -> tuple[TierPolicy, ...]:
    return (
        TierPolicy(name="VIP", min_spend=500_000, human_first=True),
        TierPolicy(name="A", min_spend=200_000),
        TierPolicy(name="B", min_spend=50_000),
        TierPolicy(name="C", min_spend=0),
    )


def _default_selfservice() -> SelfServicePolicy:
    return SelfServicePolicy(
        faq=(
            FaqEntry(
                id="hours",
                question="Opening hours",
                answer="Our team answers chats Monday to Friday, 9:00-18:00.",
            ),
            FaqEntry(
                id="delivery",
                question="Delivery times",
                answer="Orders ship within 2 business days; delivery takes 3-5 days.",
            ),
            FaqEntry(
                id="returns",
                question="Returns",
                answer="You can return any item within 30 days of delivery.",
            ),
        )
    )


class Policy(_Strict):
    tiers: tuple[TierPolicy, ...] = Field(default_factory=_default_tiers)
    scoring: ScoringPolicy = ScoringPolicy()
    identification: IdentificationPolicy = IdentificationPolicy()
    queue: QueuePolicy = QueuePolicy()
    selfservice: SelfServicePolicy = Field(default_factory=_default_selfservice)
    surveys: SurveysPolicy = SurveysPolicy()

    @model_validator(mode="after")
    def _check_tiers(self) -> Policy:
        if not self.tiers:
            raise ValueError("tiers: at least one tier is required")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tiers: names must be unique, got {names}")
        spends = [t.min_spend for t in self.tiers]
        if any(a <= b for a, b in itertools.pairwise(spends)):
            raise ValueError(
                "tiers: list tiers from highest to lowest with strictly decreasing min_spend"
            )
        if spends[-1] != 0:
            raise ValueError("tiers: the lowest tier must have min_spend = 0 (it holds everyone)")
        return self

    # Tier helpers. Rank 0 is the highest tier; the queue orders by rank.
    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    @property
    def lowest_tier(self) -> str:
        return self.tiers[-1].name

    def tier(self, name: str) -> TierPolicy:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def rank(self, tier_name: str) -> int:
        """Queue rank of a tier: 0 for the highest. Unknown names rank below every tier."""
        for i, t in enumerate(self.tiers):
            if t.name == tier_name:
                return i
        return len(self.tiers)

    def is_human_first(self, tier_name: str) -> bool:
        return any(t.name == tier_name and t.human_first for t in self.tiers)

    def faq(self, faq_id: str) -> FaqEntry | None:
        return next((f for f in self.selfservice.faq if f.id == faq_id), None)


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the file and the keys."""


def _format_validation(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid policy"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def parse_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        raise PolicyError(_format_validation(source, err)) from None


def load_policy(path: str | Path | None) -> Policy:
    """Load the policy file, or the built-in defaults when ``path`` is None."""
    if path is None:
        return Policy()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read policy file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{p}: not valid TOML: {exc}") from None
    return parse_policy(data, str(p))
