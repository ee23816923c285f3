"""The ``[care]`` section: follow-up visits per tier, who does them, at-risk triggers, and the
announcement caps (``[care.announcements]``, in ``routing.policy.announcements``).

Kept apart from ``routing.policy.root`` (which cross-checks the tier names); the rules that
use these numbers live in ``routing.care``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from routing.policy.announcements import AnnouncementPolicy
from routing.policy.base import Strict
from routing.policy.check import Problem, no_such_tier


def _cadence() -> dict[str, float]:
    return {"VIP": 30, "A": 90}


class CarePolicy(Strict):
    enabled: bool = True
    # Days between follow-up visits per tier, counted from the last done care task or the
    # last agent message to the customer, whichever is later. A tier not listed: no visits.
    cadence_days: dict[str, float] = Field(default_factory=_cadence)
    # Agents (names or Telegram ids) who take the tasks of customers without a registered
    # account manager. Empty: the supervisors are reminded of those tasks.
    pool: tuple[str, ...] = ()
    # A human_first customer whose score fell this many points (0-100 scale) below the
    # highest seen since their last score-drop task gets a task at once; 0 = off.
    score_drop: float = Field(default=10, ge=0, le=100)
    # Other at-risk triggers for human_first customers: a downgrade is pending (the model has
    # put them below their tier at least once), a detractor survey answer, a complaint.
    downgrade_pending: bool = True
    detractor: bool = True
    complaint: bool = True
    # A cadence task is created this many days before it is due (visible as "due soon").
    due_soon_days: float = Field(default=3, ge=0)
    # *Snooze* postpones a task by this many hours.
    snooze_hours: float = Field(default=24, gt=0)
    # A due task not done is reminded again every this many hours.
    remind_every_hours: float = Field(default=24, gt=0)
    # How often the care sweep (cadence, at-risk triggers, reminders) runs.
    sweep_minutes: float = Field(default=15, gt=0)
    # Tier announcements (contactbot broadcast): their caps.
    announcements: AnnouncementPolicy = Field(default_factory=AnnouncementPolicy)

    @field_validator("cadence_days")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for tier, days in value.items():
            if days <= 0:
                raise ValueError(f"{tier}: a cadence must be above 0 days (leave a tier out)")
        return value

    @field_validator("pool")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name.strip():
                raise ValueError("an empty agent name")
        return tuple(n.strip() for n in value)

    def tier_problems(self, tiers: Sequence[str]) -> list[Problem]:
        """Cadence tiers the file sets that ``tiers`` does not define."""
        if "cadence_days" not in self.model_fields_set:
            return []
        return [
            (("cadence_days", name), no_such_tier(tiers))
            for name in self.cadence_days
            if name not in tiers
        ]

    def cadence(self, tier: str) -> float | None:
        return self.cadence_days.get(tier)
