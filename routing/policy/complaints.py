"""The ``[complaints]`` section: categories, remedy kinds, SLA targets per tier, how a case
weighs in the score by its outcome, and the follow-up after resolution.

Kept apart from ``routing.policy.root`` (which only holds the field and cross-checks tier
names and languages); the rules that use these numbers live in ``routing.complaints``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator, model_validator

from routing.policy.base import Strict
from routing.policy.check import Problem, no_such_tier
from routing.policy.selfservice_parts import LocalText, NodeId

# Placeholders the follow-up texts may use; anything else would fail at send time.
_TEXT_FIELDS = {"case": 1, "category": "C"}


def local_text(value: LocalText, language: str | None, default_language: str) -> str:
    """One language of a text the file gives as a string or a language -> text table."""
    if isinstance(value, str):
        return value
    if language and language in value:
        return value[language]
    return value.get(default_language) or next(iter(value.values()), "")


def _texts_of(value: LocalText) -> list[str]:
    return [value] if isinstance(value, str) else list(value.values())


class CategoryPolicy(Strict):
    # The stable name agents type (``/complaint delivery``) and reports show.
    key: NodeId
    # What the customer sees on the category button.
    label: LocalText
    # How much one complaint of this category counts in the score (times the outcome weight).
    severity: float = Field(default=1.0, gt=0, le=10)


def _default_categories() -> tuple[CategoryPolicy, ...]:
    def cat(key: str, en: str, zh: str, severity: float) -> CategoryPolicy:
        return CategoryPolicy(key=key, label={"en": en, "zh_Hans": zh}, severity=severity)

    return (
        cat("delivery", "Delivery (late, lost, damaged)", "配送（延误、丢失、损坏）", 1.0),
        cat("product", "Product quality", "商品质量", 1.0),
        cat("billing", "Billing or refund", "账单或退款", 1.5),
        cat("service", "Our service", "服务态度", 1.0),
        cat("other", "Something else", "其他问题", 0.5),
    )


def _acknowledge() -> dict[str, float]:
    return {"VIP": 900, "A": 3600, "B": 14400, "C": 86400}


def _resolve() -> dict[str, float]:
    return {"VIP": 86400, "A": 259200, "B": 432000, "C": 604800}


class WeightsPolicy(Strict):
    """How much a case counts against the score by where it stands (times its severity).

    An unresolved or reopened case must weigh at least as much as a resolved one, and a
    resolved one at least as much as one the customer confirmed resolved to satisfaction.
    """

    open: float = Field(default=1.0, ge=0)  # not yet resolved (open or acknowledged)
    resolved: float = Field(default=0.5, ge=0)  # resolved, the customer has not answered
    satisfied: float = Field(default=0.2, ge=0)  # the customer said it was resolved well
    unsatisfied: float = Field(default=1.0, ge=0)  # resolved, but the customer said no
    reopened: float = Field(default=1.5, ge=0)  # reopened and not yet resolved again

    @model_validator(mode="after")
    def _ordered(self) -> WeightsPolicy:
        for low, high in (
            ("satisfied", "resolved"),
            ("resolved", "open"),
            ("resolved", "unsatisfied"),
            ("open", "reopened"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low):g}) must not weigh more than {high} "
                    f"({getattr(self, high):g})"
                )
        return self


def _question() -> dict[str, str]:
    return {
        "en": "Your complaint #{case} ({category}) was resolved. "
        "Was it resolved to your satisfaction?",
        "zh_Hans": "您的投诉 #{case}（{category}）已处理完毕。您对处理结果满意吗？",
    }


def _rating() -> dict[str, str]:
    return {
        "en": "How would you rate how we handled complaint #{case}? (1 = poor, 5 = excellent)",
        "zh_Hans": "您如何评价我们对投诉 #{case} 的处理？（1 = 很差，5 = 很好）",
    }


def _thanks() -> dict[str, str]:
    return {"en": "Thank you for your feedback.", "zh_Hans": "感谢您的反馈。"}


def _reopened() -> dict[str, str]:
    return {
        "en": "We are sorry. Complaint #{case} is open again; a person will contact you shortly.",
        "zh_Hans": "很抱歉。投诉 #{case} 已重新受理，我们的工作人员会尽快与您联系。",
    }


class FollowUpTexts(Strict):
    """What the customer is asked after resolution. Placeholders: {case} {category}."""

    question: LocalText = Field(default_factory=_question)  # yes / no buttons
    rating: LocalText = Field(default_factory=_rating)  # 1-5 buttons, after either answer
    thanks: LocalText = Field(default_factory=_thanks)
    reopened: LocalText = Field(default_factory=_reopened)  # after "no": the case reopened

    @field_validator("question", "rating", "thanks", "reopened")
    @classmethod
    def _formats(cls, value: LocalText) -> LocalText:
        for text in _texts_of(value):
            if not text.strip():
                raise ValueError("empty text")
            try:
                text.format(**_TEXT_FIELDS)
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
                raise ValueError(f"bad placeholder {exc} (known: {{case}} {{category}})") from None
        return value


def _remedies() -> tuple[str, ...]:
    return ("refund", "replacement", "apology", "voucher")


class ComplaintsPolicy(Strict):
    enabled: bool = True
    categories: tuple[CategoryPolicy, ...] = Field(default_factory=_default_categories)
    # Remedy kinds an agent may record (``/remedy KIND [amount] [note]``).
    remedies: tuple[NodeId, ...] = Field(default_factory=_remedies)
    # A complaint's chat is queued as if the customer's tier were this many ranks higher.
    priority_boost: int = Field(default=1, ge=0)
    # The self-service "this did not help" path offers to file a complaint.
    selfservice_not_helped: bool = True
    # Seconds from open (or reopen) to the first agent message, and to resolution, per tier.
    # A tier missing from a table has no target of that kind.
    acknowledge: dict[str, float] = Field(default_factory=_acknowledge)
    resolve: dict[str, float] = Field(default_factory=_resolve)
    # Warn (page supervisors) when this fraction of a target has passed.
    warn_at: float = Field(default=0.8, gt=0, lt=1)
    # How often the complaint SLA sweep runs.
    sweep_seconds: float = Field(default=30, gt=0)
    weights: WeightsPolicy = WeightsPolicy()
    # The follow-up ("resolved to your satisfaction?") falls due this long after resolution,
    # through the survey outbox (caps, quiet hours, opt-out apply) and expires unanswered.
    follow_up_delay_minutes: float = Field(default=60, ge=0)
    follow_up_expiry_hours: float = Field(default=72, gt=0)
    # A "no" reopens the case at most this many times; after that it stays resolved with
    # the unsatisfied weight.
    max_reopens: int = Field(default=3, ge=0)
    follow_up: FollowUpTexts = Field(default_factory=FollowUpTexts)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: tuple[CategoryPolicy, ...]) -> tuple[CategoryPolicy, ...]:
        if not value:
            raise ValueError("at least one category")
        keys = [c.key for c in value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"category key {', '.join(twice)} given twice")
        for c in value:
            if not all(t.strip() for t in _texts_of(c.label)):
                raise ValueError(f"category {c.key!r}: empty label")
        return value

    @field_validator("remedies")
    @classmethod
    def _remedy_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one remedy kind")
        if len(set(value)) != len(value):
            raise ValueError("a remedy kind is listed twice")
        return value

    @field_validator("acknowledge", "resolve")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for tier, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"{tier}: a target must be above 0 seconds")
        return value

    def tier_problems(self, tiers: Sequence[str]) -> list[Problem]:
        """Tier names in the SLA tables the file sets that ``tiers`` does not define."""
        return [
            ((table, name), no_such_tier(tiers))
            for table in ("acknowledge", "resolve")
            if table in self.model_fields_set
            for name in getattr(self, table)
            if name not in tiers
        ]

    def language_problems(self, languages: Sequence[str]) -> list[Problem]:
        """Table-form texts missing one of ``languages`` (``selfservice.languages``), or
        naming a language the bot does not speak."""
        found: list[Problem] = []
        texts: list[tuple[tuple[str | int, ...], LocalText]] = [
            (("categories", i, "label"), c.label) for i, c in enumerate(self.categories)
        ]
        texts += [
            (("follow_up", k), getattr(self.follow_up, k)) for k in FollowUpTexts.model_fields
        ]
        for loc, text in texts:
            if isinstance(text, str):
                continue
            missing = [lang for lang in languages if not text.get(lang, "").strip()]
            extra = sorted(set(text) - set(languages))
            if missing:
                found.append((loc, f"missing translation for {', '.join(missing)}"))
            if extra:
                found.append((loc, f"language {', '.join(extra)} is not in selfservice.languages"))
        return found

    # --- lookups --------------------------------------------------------------------
    def category(self, key: str) -> CategoryPolicy | None:
        return next((c for c in self.categories if c.key == key), None)

    def acknowledge_seconds(self, tier: str) -> float | None:
        return self.acknowledge.get(tier)

    def resolve_seconds(self, tier: str) -> float | None:
        return self.resolve.get(tier)
