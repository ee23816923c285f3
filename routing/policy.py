"""The business's policy: tiers, scoring, queue, self-service and surveys.

Loaded from a TOML file (``CONTACTBOT_CONFIG``) and validated by pydantic so that every error
names the offending key. Everything a business may want to tune lives here, not in code.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from routing.policy_check import (
    Problem,
    check_cron,
    check_zone,
    describe,
    no_such_tier,
    problems,
    raise_problems,
)
from routing.queue_policy import QueuePolicy
from routing.selfservice import FaqEntry, SelfServicePolicy, default_selfservice
from routing.survey_policy import SurveysPolicy


class _Strict(BaseModel):
    # Unknown keys are almost always typos; silently ignoring them hides a misconfiguration.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierPolicy(_Strict):
    name: str = Field(min_length=1, max_length=32)
    # thresholds mode: trailing-window spend needed for this tier.
    min_spend: float = Field(default=0, ge=0)
    human_first: bool = False
    # thresholds mode: the score (0-100) also needed for this tier; 0 = spend alone decides.
    min_score: float = Field(default=0, ge=0, le=100)
    # percentile mode: the share of customers (by score, best first) in this tier.
    share: float | None = Field(default=None, gt=0, le=1)


class WeightsPolicy(_Strict):
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


class NormalisePolicy(_Strict):
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


class SatisfactionPolicy(_Strict):
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


class MessagesPolicy(_Strict):
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


class ScoringPolicy(_Strict):
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


class IdentificationPolicy(_Strict):
    # ISO 3166 region for CRM phone numbers written without a country code (e.g. "GB", "CN").
    # None: such numbers are rejected at import as ambiguous.
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # Linking by a typed customer code (the CRM's external id). Codes are guessable, so this
    # is an opt-in; identity otherwise rests on the customer's own shared contact or a
    # one-time invitation (`contactbot customers invite`). A code never takes over an
    # account already linked to another Telegram user.
    allow_code: bool = False
    # Code lookups allowed per Telegram user in a sliding window, and overall (all users).
    # Every failure (unknown, already linked, over a limit) gets the same reply.
    code_attempts_per_user: int = Field(default=5, ge=1, le=1000)
    code_user_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    code_attempts_overall: int = Field(default=60, ge=1, le=100_000)
    code_overall_window_seconds: int = Field(default=60, ge=1, le=24 * 3600)
    # How long an invitation link stays valid when `customers invite` gets no --expires.
    invite_expires_days: int = Field(default=7, ge=1, le=365)


def _default_tiers() -> tuple[TierPolicy, ...]:
    return (
        TierPolicy(name="VIP", min_spend=500_000, human_first=True, share=0.10),
        TierPolicy(name="A", min_spend=200_000, share=0.15),
        TierPolicy(name="B", min_spend=50_000, share=0.25),
        TierPolicy(name="C", min_spend=0),
    )


class Policy(_Strict):
    tiers: tuple[TierPolicy, ...] = Field(default_factory=_default_tiers)
    scoring: ScoringPolicy = ScoringPolicy()
    identification: IdentificationPolicy = IdentificationPolicy()
    queue: QueuePolicy = QueuePolicy()
    selfservice: SelfServicePolicy = Field(default_factory=default_selfservice)
    surveys: SurveysPolicy = Field(default_factory=SurveysPolicy)

    # Tier references: each section is checked against the tiers as soon as both are valid,
    # so one broken section does not hide another's dangling names. Only what the file sets
    # is checked: the shipped defaults name the shipped tiers and simply go unused (or, for
    # the SLA tables and campaigns, apply to no tier) when the tiers are renamed.
    @field_validator("scoring")
    @classmethod
    def _scoring_tiers(cls, scoring: ScoringPolicy, info: ValidationInfo) -> ScoringPolicy:
        names = _tier_names(info)
        ceiling = scoring.raise_ceiling
        if names is not None and ceiling is not None and ceiling not in names:
            raise_problems("scoring", [(("raise_ceiling",), no_such_tier(names, ceiling))])
        return scoring

    @field_validator("queue")
    @classmethod
    def _queue_tiers(cls, queue: QueuePolicy, info: ValidationInfo) -> QueuePolicy:
        names = _tier_names(info)
        if names is not None and "sla" in queue.model_fields_set:
            raise_problems(
                "queue", [(("sla", *loc), m) for loc, m in queue.sla.tier_problems(names)]
            )
        return queue

    @field_validator("selfservice")
    @classmethod
    def _selfservice_tiers(
        cls, selfservice: SelfServicePolicy, info: ValidationInfo
    ) -> SelfServicePolicy:
        names = _tier_names(info)
        if names is not None:
            raise_problems("selfservice", selfservice.tier_problems(names))
        return selfservice

    @field_validator("surveys")
    @classmethod
    def _survey_tiers(cls, surveys: SurveysPolicy, info: ValidationInfo) -> SurveysPolicy:
        names = _tier_names(info)
        if names is not None:
            raise_problems("surveys", surveys.tier_problems(names))
        return surveys

    @model_validator(mode="after")
    def _check_tiers(self) -> Policy:
        raise_problems("Policy", _tier_list_problems(self.tiers, self.scoring.mode))
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
        return self.selfservice.entry(faq_id)


def _tier_names(info: ValidationInfo) -> tuple[str, ...] | None:
    """The defined tier names, or None when the tier list itself is invalid."""
    tiers = info.data.get("tiers")
    return None if tiers is None else tuple(t.name for t in tiers)


def _tier_list_problems(tiers: Sequence[TierPolicy], mode: str) -> list[Problem]:
    if not tiers:
        return [(("tiers",), "at least one tier is required")]
    found: list[Problem] = []
    first: dict[str, int] = {}
    for i, t in enumerate(tiers):
        if t.name in first:
            found.append(
                (
                    ("tiers", i, "name"),
                    f'"{t.name}" again: names must be unique (tier #{first[t.name] + 1} has it)',
                )
            )
        first.setdefault(t.name, i)
    last = len(tiers) - 1
    if mode == "thresholds":
        for i, (above, t) in enumerate(itertools.pairwise(tiers), start=1):
            if t.min_spend >= above.min_spend:
                found.append(
                    (
                        ("tiers", i, "min_spend"),
                        f"{t.min_spend:g} is not below {above.min_spend:g} ({above.name}): "
                        "list tiers from highest to lowest with strictly decreasing min_spend",
                    )
                )
        if tiers[last].min_spend != 0:
            found.append(
                (
                    ("tiers", last, "min_spend"),
                    "the lowest tier must have min_spend = 0 (it holds everyone)",
                )
            )
        if tiers[last].min_score != 0:
            found.append((("tiers", last, "min_score"), "the lowest tier must have min_score = 0"))
    else:
        for i, t in enumerate(tiers[:-1]):
            if t.share is None:
                found.append(
                    (
                        ("tiers", i, "share"),
                        "percentile mode needs a share for every tier but the last",
                    )
                )
        total = sum(t.share or 0 for t in tiers[:-1])
        if total > 1 + 1e-9:
            found.append((("tiers",), f"shares add up to {total:g}, more than 1"))
    return found


class PolicyError(Exception):
    """A policy file that cannot be used.

    ``str()`` is one line naming the file and every problem's key (what ``run`` and every
    command print); ``problems`` holds the same problems one per entry (``policy check``
    prints one per line), each ``[table] key: what is wrong``.
    """

    def __init__(self, summary: str, problems: Sequence[str] = ()) -> None:
        self.summary = summary
        self.problems = tuple(problems)
        line = f"{summary}: {'; '.join(self.problems)}" if self.problems else summary
        super().__init__(" ".join(line.splitlines()))


def _tier_list_problems_besides(data: dict[str, Any], err: ValidationError) -> list[str]:
    """The [[tiers]] problems Policy's model validator would report, when other sections'
    errors kept it from running: so that one run of ``policy check`` lists everything."""
    if "tiers" not in data or any(e["loc"][:1] in ((), ("tiers",)) for e in err.errors()):
        return []  # the defaults are fine; or the tier list's problems are already listed
    scoring = data.get("scoring", {})
    mode = scoring.get("mode", "thresholds") if isinstance(scoring, dict) else None
    if mode not in ("thresholds", "percentile"):
        return []
    try:
        tiers = TypeAdapter(tuple[TierPolicy, ...]).validate_python(data["tiers"])
    except ValidationError:  # pragma: no cover - reported at ("tiers", ...) already
        return []
    return [
        describe(Policy, {"type": "policy", "loc": loc, "msg": msg, "input": None})
        for loc, msg in _tier_list_problems(tiers, mode)
    ]


def parse_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        found = [*_tier_list_problems_besides(data, err), *problems(Policy, err)]
        raise PolicyError(f"{source}: invalid policy", found) from None


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
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{p}: not valid TOML: line {line} is not UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line N, column M)"; it is one line.
        raise PolicyError(f"{p}: not valid TOML: {exc}") from None
    return parse_policy(data, str(p))
