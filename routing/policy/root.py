"""The business's policy: tiers, scoring, queue, self-service, surveys, complaints and care.

Loaded from a TOML file (``CONTACTBOT_CONFIG``) and validated by pydantic so that every error
names the offending key. Everything a business may want to tune lives here, not in code.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from routing.policy.base import Strict
from routing.policy.care import CarePolicy
from routing.policy.check import (
    Problem,
    describe,
    no_such_tier,
    problems,
    raise_problems,
)
from routing.policy.complaints import ComplaintsPolicy
from routing.policy.desk import DeskPolicy
from routing.policy.identification import IdentificationPolicy
from routing.policy.queue import QueuePolicy
from routing.policy.scoring import ScoringPolicy
from routing.policy.selfservice import SelfServicePolicy, default_selfservice
from routing.policy.selfservice_parts import FaqEntry
from routing.policy.surveys import SurveysPolicy


class TierPolicy(Strict):
    name: str = Field(min_length=1, max_length=32)
    # thresholds mode: trailing-window spend needed for this tier.
    min_spend: float = Field(default=0, ge=0)
    human_first: bool = False
    # thresholds mode: the score (0-100) also needed for this tier; 0 = spend alone decides.
    min_score: float = Field(default=0, ge=0, le=100)
    # percentile mode: the share of customers (by score, best first) in this tier.
    share: float | None = Field(default=None, gt=0, le=1)


def _default_tiers() -> tuple[TierPolicy, ...]:
    return (
        TierPolicy(name="VIP", min_spend=500_000, human_first=True, share=0.10),
        TierPolicy(name="A", min_spend=200_000, share=0.15),
        TierPolicy(name="B", min_spend=50_000, share=0.25),
        TierPolicy(name="C", min_spend=0),
    )


class Policy(Strict):
    tiers: tuple[TierPolicy, ...] = Field(default_factory=_default_tiers)
    scoring: ScoringPolicy = ScoringPolicy()
    identification: IdentificationPolicy = IdentificationPolicy()
    queue: QueuePolicy = QueuePolicy()
    selfservice: SelfServicePolicy = Field(default_factory=default_selfservice)
    surveys: SurveysPolicy = Field(default_factory=SurveysPolicy)
    complaints: ComplaintsPolicy = Field(default_factory=ComplaintsPolicy)
    care: CarePolicy = Field(default_factory=CarePolicy)
    desk: DeskPolicy = Field(default_factory=DeskPolicy)

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

    @field_validator("complaints")
    @classmethod
    def _complaint_refs(
        cls, complaints: ComplaintsPolicy, info: ValidationInfo
    ) -> ComplaintsPolicy:
        found = []
        names = _tier_names(info)
        if names is not None:
            found += complaints.tier_problems(names)
        selfservice = info.data.get("selfservice")
        if selfservice is not None:
            found += complaints.language_problems(selfservice.languages)
        raise_problems("complaints", found)
        return complaints

    @field_validator("care")
    @classmethod
    def _care_tiers(cls, care: CarePolicy, info: ValidationInfo) -> CarePolicy:
        names = _tier_names(info)
        if names is not None:
            raise_problems("care", care.tier_problems(names))
        return care

    @field_validator("desk")
    @classmethod
    def _desk_canned(cls, desk: DeskPolicy, info: ValidationInfo) -> DeskPolicy:
        selfservice = info.data.get("selfservice")
        languages = selfservice.languages if selfservice is not None else None
        raise_problems("desk", desk.canned_problems(languages))
        return desk

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
