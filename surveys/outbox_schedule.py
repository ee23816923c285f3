"""When a survey may be sent and how long it lives: quiet hours, the frequency cap, expiry.

These are the time rules the outbox applies to a row, apart from the mechanics of claiming
and sending it (:mod:`surveys.outbox_claims`):

* :func:`expiry_for`: how long a survey of a kind stays open (``policy.surveys.csat`` /
  ``nps.expiry_hours``); campaigns and the journal of outcomes set ``expires_at`` from it,
  and :func:`surveys.outbox.expire` ends the rows past it;
* quiet hours: :func:`zone_of` picks the customer's time zone (the business's when theirs is
  unknown) and :func:`quiet_until` says when the quiet period ``now`` falls in ends; a
  claimed row inside it is put back, due at that moment;
* the frequency cap: :func:`capped_customers` finds the customers who were sent a survey
  within ``frequency_cap_days`` (or have one being sent), whose rows are skipped;
  announcements (kind ``news``) have their own cap (``[care.announcements]``), and the two
  do not count towards each other.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints.follow_up import KIND as COMPLAINT
from routing.policy.root import Policy
from routing.scoring.model import CSAT
from routing.store.models import Survey
from surveys.news import NEWS
from surveys.outbox_states import SENDING

__all__ = ["capped_customers", "expiry_for", "quiet_until", "zone_of"]

log = logging.getLogger(__name__)


def expiry_for(kind: str, policy: Policy) -> timedelta:
    if kind == COMPLAINT:
        return timedelta(hours=policy.complaints.follow_up_expiry_hours)
    if kind == NEWS:
        return timedelta(hours=policy.care.announcements.expiry_hours)
    hours = policy.surveys.csat.expiry_hours if kind == CSAT else policy.surveys.nps.expiry_hours
    return timedelta(hours=hours)


# ------------------------------------------------------------------------ quiet hours


class _Zoned(Protocol):
    id: int
    timezone: str | None


def zone_of(customer: _Zoned | None, policy: Policy) -> ZoneInfo:
    name = customer.timezone if customer is not None and customer.timezone else None
    if name:
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            log.warning("customer #%s has an unknown time zone %r", customer and customer.id, name)
    return ZoneInfo(policy.surveys.timezone)


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """The end of the quiet period ``now`` falls in (aware), or None outside quiet hours."""
    if start == end:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        quiet = start <= t < end
    else:  # wraps midnight, e.g. 21:00-09:00
        quiet = t >= start or t < end
        if t >= start:
            day += timedelta(days=1)
    if not quiet:
        return None
    return datetime.combine(day, end, tzinfo=zone)


# ------------------------------------------------------------------------ frequency cap


async def capped_customers(
    session: AsyncSession,
    policy: Policy,
    now: datetime,
    customer_ids: Collection[int],
    claimed_ids: Collection[int],
    *,
    news: bool = False,
) -> set[int]:
    """Which of ``customer_ids`` the frequency cap holds back: sent a survey within the last
    ``frequency_cap_days``, or with another one being sent. ``claimed_ids`` (the rows being
    decided) do not count. ``news``: the same for announcements, under their own cap
    (``[care.announcements] frequency_cap_days``); surveys and announcements do not count
    towards each other's cap. Empty when the cap is off."""
    if news:
        cap_days = policy.care.announcements.frequency_cap_days
    else:
        cap_days = policy.surveys.frequency_cap_days
    if cap_days <= 0 or not customer_ids:
        return set()
    t = Survey.__table__.c
    cutoff = now - timedelta(days=cap_days)
    return set(
        (
            await session.execute(
                select(t.customer_id)
                .where(
                    t.customer_id.in_(customer_ids),
                    t.id.not_in(claimed_ids),
                    t.kind == NEWS if news else t.kind != NEWS,
                    or_(
                        t.sent_at >= cutoff,
                        # Live claims (orphans were reconciled before this sweep).
                        t.status == SENDING,
                    ),
                )
                .distinct()
            )
        ).scalars()
    )
