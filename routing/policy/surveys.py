"""The ``[surveys]`` section of the policy file (CSAT, NPS campaigns, limits, the sender).

Kept apart from ``routing.policy.root`` so that the survey machinery's knobs live in one place;
``routing.policy.root.Policy`` only holds the field. Pure pydantic: no survey code is imported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time

from pydantic import Field, field_validator

from routing.policy.base import Strict
from routing.policy.check import Problem, check_cron, check_zone, no_such_tier

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class CsatPolicy(Strict):
    # When a chat closes, its survey row is written due this many seconds later.
    delay_seconds: int = Field(default=600, ge=0)
    # A sent survey not answered within this many hours expires (its buttons stop working);
    # an unsent one this late after its due time is expired without being sent.
    expiry_hours: float = Field(default=24, gt=0)


class NpsCampaign(Strict):
    tier: str = Field(min_length=1, max_length=32)
    # Crontab (minute hour day month day-of-week) in ``surveys.timezone``.
    schedule: str
    # Share of the tier's reachable customers asked on each run (deterministic per run).
    sample_ratio: float = Field(default=1.0, gt=0, le=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)


def _default_campaigns() -> tuple[NpsCampaign, ...]:
    return (
        NpsCampaign(tier="VIP", schedule="0 11 1 * *", sample_ratio=1.0),
        NpsCampaign(tier="A", schedule="0 11 1 1,4,7,10 *", sample_ratio=0.5),
        NpsCampaign(tier="B", schedule="0 11 1 1,4,7,10 *", sample_ratio=0.2),
        NpsCampaign(tier="C", schedule="0 11 1 1,4,7,10 *", sample_ratio=0.1),
    )


class NpsPolicy(Strict):
    expiry_hours: float = Field(default=72, gt=0)
    # A run missed while the bot was down is still started if its fire time is at most
    # this many hours ago (later than that, the next run is awaited).
    catch_up_hours: float = Field(default=24, ge=0)
    campaigns: tuple[NpsCampaign, ...] = Field(default_factory=_default_campaigns)

    @field_validator("campaigns")
    @classmethod
    def _one_per_tier(cls, campaigns: tuple[NpsCampaign, ...]) -> tuple[NpsCampaign, ...]:
        tiers = [c.tier for c in campaigns]
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"one campaign per tier, got {tiers}")
        return campaigns


class QuietHoursPolicy(Strict):
    # No survey is pushed from ``start`` to ``end`` (local time: the customer's time zone when
    # known, else ``surveys.timezone``); it is deferred to ``end``. start == end: no quiet hours.
    start: str = "21:00"
    end: str = "09:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"a time as HH:MM (24 h), got {value!r}")
        return value

    def times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class SenderPolicy(Strict):
    # Telegram allows a bot about 30 messages/s overall and 1/s per chat.
    global_rate: float = Field(default=25, gt=0)
    per_chat_interval: float = Field(default=1.0, ge=0)
    # Calls per push that may fail with an unexpected error (a bug, not Telegram's answer).
    # Telegram's transient answers (5xx, network errors, 429) are retried by time instead:
    max_attempts: int = Field(default=5, ge=1)
    # the first retry waits about this long, doubling per retry (with jitter) up to
    # backoff_max_seconds;
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=60, gt=0)
    # a push still failing this long after its first failure goes back to the outbox, due
    # again backoff_max_seconds later, until the survey's expiry; only then is it failed.
    retry_window_seconds: float = Field(default=300, ge=0)
    # Sends in flight; Telegram may see global_rate + concurrency in one second after a stall.
    concurrency: int = Field(default=8, ge=1, le=256)


class SurveysPolicy(Strict):
    csat: CsatPolicy = CsatPolicy()
    nps: NpsPolicy = Field(default_factory=NpsPolicy)
    # Nobody gets more than one survey of any kind within this many days (0: no cap).
    frequency_cap_days: float = Field(default=14, ge=0)
    quiet_hours: QuietHoursPolicy = QuietHoursPolicy()
    # The business time zone: quiet hours and the campaign crons.
    timezone: str = "UTC"
    sender: SenderPolicy = SenderPolicy()
    # Seconds between sweeps of due surveys; rows are claimed claim_batch at a time.
    sweep_seconds: float = Field(default=5, gt=0)
    claim_batch: int = Field(default=100, ge=1, le=5000)
    # Minutes after an answer during which the customer's next text counts as the comment.
    comment_minutes: float = Field(default=30, ge=0)
    # A detractor's service-recovery chat is queued as if the tier were this many ranks higher.
    recovery_priority_boost: int = Field(default=1, ge=0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    def tier_problems(self, tiers: Sequence[str]) -> list[Problem]:
        """Campaigns the file sets for tiers that ``tiers`` does not define."""
        if "nps" not in self.model_fields_set or "campaigns" not in self.nps.model_fields_set:
            return []
        return [
            (("nps", "campaigns", i, "tier"), no_such_tier(tiers, c.tier))
            for i, c in enumerate(self.nps.campaigns)
            if c.tier not in tiers
        ]
