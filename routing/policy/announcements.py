"""``[care.announcements]``: the caps on tier announcements (``contactbot broadcast``).

Announcements go through the survey outbox and its sender, so ``[surveys.quiet_hours]`` and
``[surveys.sender]`` apply to them too; the caps here are their own, apart from the
surveys' ``frequency_cap_days`` (an announcement does not hold back a survey, nor the
reverse). The rules that use these numbers live in ``surveys/broadcasts.py`` and
``surveys/news.py``.
"""

from __future__ import annotations

from pydantic import Field

from routing.policy.base import Strict


class AnnouncementPolicy(Strict):
    # Nobody is sent more than one announcement within this many days: a later one due
    # inside the cap is skipped for them ("frequency cap"). 0: no cap.
    frequency_cap_days: float = Field(default=7, ge=0)
    # An announcement still unsent this many hours after its time is not sent any more
    # (quiet hours, a long outage): "not sent in time".
    expiry_hours: float = Field(default=48, gt=0)
