"""The ``[queue]`` policy section: ordering, routing mode, SLAs, inactivity, position updates.

Every number that shapes how the human queue behaves lives here (docs/queue.md explains the
rules; docs/policy.md lists the keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from routing.policy.base import Strict
from routing.policy.check import Problem, no_such_tier


def _first_response() -> dict[str, float]:
    return {"VIP": 60, "A": 300, "B": 900, "C": 3600}


def _resolution() -> dict[str, float]:
    return {"VIP": 3600, "A": 14400, "B": 28800, "C": 86400}


class SlaPolicy(Strict):
    # Per tier name, seconds. A tier missing from a table has no target of that kind.
    first_response_seconds: dict[str, float] = Field(default_factory=_first_response)
    resolution_seconds: dict[str, float] = Field(default_factory=_resolution)
    # Warn (page supervisors, re-announce) when this fraction of the target has passed.
    warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    # The share of chats that must meet the target (the simulator's --recommend uses it).
    service_level: float = Field(default=0.9, gt=0, le=1)

    @field_validator("first_response_seconds", "resolution_seconds")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for tier, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"{tier}: a target must be above 0 seconds")
        return value

    def tier_problems(self, tiers: Sequence[str]) -> list[Problem]:
        """Tier names in the tables the file sets that ``tiers`` does not define."""
        return [
            ((table, name), no_such_tier(tiers))
            for table in ("first_response_seconds", "resolution_seconds")
            if table in self.model_fields_set
            for name in getattr(self, table)
            if name not in tiers
        ]

    def first_response(self, tier: str) -> float | None:
        return self.first_response_seconds.get(tier)

    def resolution(self, tier: str) -> float | None:
        return self.resolution_seconds.get(tier)


class InactivityPolicy(Strict):
    # A chat whose customer has not answered the agent for this long is closed; 0 = never.
    close_after_seconds: float = Field(default=1800, ge=0)
    # The customer is warned this many seconds before that close.
    warn_before_seconds: float = Field(default=300, ge=0)
    # An agent who has said nothing for this long while a customer waits on them is treated
    # as gone: set offline, their chats back to the front of their tier; 0 = never.
    agent_silence_seconds: float = Field(default=900, ge=0)


class PositionPolicy(Strict):
    # A queued customer is told their position again when it moved by at least this much,
    # when it reaches the top few (<= top), or when the estimated wait changes bucket.
    min_step: int = Field(default=3, ge=1)
    top: int = Field(default=3, ge=1)
    # The estimate uses the mean handle time of the last this-many closed chats...
    handle_window: int = Field(default=50, ge=1)
    # ...or this when there are none yet.
    default_handle_seconds: float = Field(default=300, gt=0)


class QueuePolicy(Strict):
    # How many waiting chats /queue shows at once (Telegram caps a keyboard's size).
    queue_page_size: int = Field(default=10, ge=1, le=50)
    # Aging: a chat that has waited this many seconds longer than a chat one tier higher
    # outranks it (two tiers: twice as long). 0 = strict tier order.
    aging_outrank_seconds: float = Field(default=900, ge=0)
    # claim: agents pull (/next, Claim buttons). offer: the bot offers each chat to the
    # least-loaded eligible online agent, who accepts or lets it pass to the next one.
    routing_mode: Literal["claim", "offer"] = "claim"
    offer_timeout_seconds: float = Field(default=30, gt=0)
    # A VIP's chat waits this long for their online account manager (with capacity) alone.
    manager_window_seconds: float = Field(default=30, ge=0)
    # Without a manager, a returning customer goes first to the agent who served them
    # within this many days (for the same window); 0 = off.
    sticky_days: float = Field(default=7, ge=0)
    # How often the queue sweep runs (offers, windows, SLAs, inactivity, positions).
    sweep_seconds: float = Field(default=5, gt=0)
    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    inactivity: InactivityPolicy = InactivityPolicy()
    position: PositionPolicy = PositionPolicy()
