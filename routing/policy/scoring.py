"""The ``[scoring]`` section: weights, normalisation, satisfaction and the tier-change messages."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from routing.policy.base import Strict
from routing.policy.check import (
    check_cron,
    check_zone,
)


class WeightsPolicy(Strict):
    """How much each dimension counts. Positive dimensions add; complaints subtract."""

    value: float = Field(default=0.35, ge=0)
    frequency: float = Field(default=0.15, ge=0)
    breadth: float = Field(default=0.10, ge=0)
    recency: float = Field(default=0.10, ge=0)
    loyalty: float = Field(default=0.10, ge=0)
    satisfaction: float = Field(default=0.20, ge=0)
    complaints: float = Field(default=0.15, ge=0)

    @model_validator(mode="after")
    def _some_positive(self) -> WeightsPolicy:
        positive = (
            self.value + self.frequency + self.breadth + self.recency + self.loyalty
        ) + self.satisfaction
        if positive <= 0:
            raise ValueError("at least one of the positive weights must be above 0")
        return self


class NormalisePolicy(Strict):
    """Where each dimension reaches its full mark (1.0)."""

    # value = log(1 + spend) / log(1 + value_full_spend), capped at 1.
    value_full_spend: float = Field(default=500_000, gt=0)
    frequency_full_orders: float = Field(default=24, gt=0)
    breadth_full_categories: float = Field(default=5, gt=0)
    # recency = 1 - days since the last order / recency_full_days, floored at 0.
    recency_full_days: float = Field(default=365, gt=0)
    tenure_full_days: float = Field(default=1095, gt=0)
    repeat_full_orders: float = Field(default=10, gt=0)
    # complaints penalty = decayed complaint count / complaints_full, capped at 1.
    complaints_full: float = Field(default=3, gt=0)
    complaints_half_life_days: float = Field(default=180, gt=0)


class SatisfactionPolicy(Strict):
    # Weight of the newest answer in the exponentially weighted average.
    alpha: float = Field(default=0.3, gt=0, le=1)
    # The satisfaction of a customer with no answers yet (0-1), and the average's start.
    neutral: float = Field(default=0.5, ge=0, le=1)
    # Answers at or below these count as detractors (a complaint). CSAT is 1-5, NPS 0-10.
    csat_detractor_max: int = Field(default=2, ge=0, le=5)
    nps_detractor_max: int = Field(default=6, ge=0, le=10)


def _upgrade_texts() -> dict[str, str]:
    return {
        "en": "Good news, {name}: you are now a {tier} customer. Thank you for your loyalty!",
        "de": "Gute Nachrichten, {name}: Sie sind jetzt {tier}-Kunde. Danke für Ihre Treue!",
        "zh": "好消息，{name}：您已升级为 {tier} 客户。感谢您的支持！",
    }


def _vip_up_texts() -> dict[str, str]:
    return {"en": "Your customer {name} ({external_id}) is now {to_tier} (was {from_tier})."}


def _vip_down_texts() -> dict[str, str]:
    return {"en": "Your customer {name} ({external_id}) is no longer {from_tier}: now {to_tier}."}


_MESSAGE_FIELDS = {
    "name": "N",
    "tier": "T",
    "external_id": "X",
    "from_tier": "F",
    "to_tier": "T",
    "score": 1.0,
}


class MessagesPolicy(Strict):
    """Tier notices, per language (the customer's language, else ``default_language``).

    Placeholders: {name} {tier} {external_id} {from_tier} {to_tier} {score}.
    An empty dict switches that notice off.
    """

    default_language: str = "en"
    upgrade: dict[str, str] = Field(default_factory=_upgrade_texts)
    manager_vip_upgrade: dict[str, str] = Field(default_factory=_vip_up_texts)
    manager_vip_downgrade: dict[str, str] = Field(default_factory=_vip_down_texts)

    @field_validator("upgrade", "manager_vip_upgrade", "manager_vip_downgrade")
    @classmethod
    def _formats(cls, texts: dict[str, str]) -> dict[str, str]:
        for lang, t in texts.items():
            try:
                t.format(**_MESSAGE_FIELDS)
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
                raise ValueError(f"{lang}: bad placeholder {exc}") from None
        return texts


class ScoringPolicy(Strict):
    window_days: int = Field(default=365, ge=1)
    # thresholds: spend bands (tiers[].min_spend, optionally min_score), raised for
    # high-frequency / multi-category buyers. percentile: tiers[].share of customers by score.
    mode: Literal["thresholds", "percentile"] = "thresholds"
    # More than this many orders in the window makes a high-frequency buyer.
    high_frequency_orders: int = Field(default=10, ge=0)
    # At least this many distinct categories in the window makes a multi-category buyer.
    multi_category_min: int = Field(default=3, ge=1)
    raise_for_high_frequency: bool = True
    raise_for_multi_category: bool = True
    # Grades a qualifying buyer is raised by (thresholds mode), and the highest tier a raise
    # can reach (None: any).
    raise_grades: int = Field(default=1, ge=0)
    raise_ceiling: str | None = None
    # Hysteresis: a downgrade waits until the model has said "lower" this many consecutive
    # evaluations AND for at least downgrade_grace_days since it first did.
    downgrade_after: int = Field(default=2, ge=1)
    downgrade_grace_days: float = Field(default=0, ge=0)
    # Orders with these statuses do not count (case-sensitive, as imported).
    exclude_statuses: tuple[str, ...] = ("cancelled", "refunded")
    # Rescoring cron (crontab: minute hour day month day-of-week) in ``timezone``; "" = off.
    # Checked with APScheduler's own parser, as the running bot reads it.
    schedule: str = "0 3 1 * *"
    # An IANA name; also the scheduler's time zone.
    timezone: str = "UTC"
    weights: WeightsPolicy = WeightsPolicy()
    normalise: NormalisePolicy = NormalisePolicy()
    satisfaction: SatisfactionPolicy = SatisfactionPolicy()
    messages: MessagesPolicy = Field(default_factory=MessagesPolicy)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value) if value.strip() else ""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)
