"""Claiming due survey rows and deciding, at send time, which of them may go out.

Step 2 of a sweep (:mod:`surveys.outbox`). :func:`claim_due` takes a small batch of due
``scheduled`` rows for one sweep (one conditional ``UPDATE ... RETURNING``, ``SKIP LOCKED``
on PostgreSQL, so the rows become ``sending`` under the sweep's token) and decides each:

* settled with a reason (:mod:`surveys.outbox_states`): past its expiry, a guest, no
  Telegram chat, opted out, unreachable, or held back by the frequency cap;
* deferred: inside the customer's quiet hours, back to ``scheduled`` and due when they end
  (the time rules are in :mod:`surveys.outbox_schedule`);
* or handed on as a :class:`~surveys.push_transport.Push` whose payload is a
  :class:`SurveyPush`, what the bot needs to render the survey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.store.models import Customer, Survey
from surveys.outbox_schedule import capped_customers, quiet_until, zone_of
from surveys.outbox_states import (
    EXPIRED,
    R_CAP,
    R_GUEST,
    R_LATE,
    R_NO_CHAT,
    R_OPTED_OUT,
    R_QUIET,
    R_UNREACHABLE,
    SCHEDULED,
    SENDING,
    SKIPPED,
)
from surveys.push_transport import Push

__all__ = ["Claim", "SurveyPush", "claim_due"]

_T: Table = Survey.__table__  # type: ignore[assignment]
_C: Table = Customer.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class SurveyPush:
    """What the bot needs to render one survey (``Push.payload``)."""

    survey_id: int
    kind: str
    customer_id: int
    language: str | None


# ------------------------------------------------------------------------ claim


@dataclass
class Claim:
    claimed: int = 0
    pushes: list[Push] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped/expired
    deferred: int = 0


async def claim_due(
    session: AsyncSession, policy: Policy, now: datetime, token: str, limit: int
) -> Claim:
    """Claim up to ``limit`` due rows for ``token`` and decide which may be sent now.

    Core statements and only the customer columns the decision needs: a claim holds the
    database's write lock, and every send of a running campaign waits for it to stamp its
    row, so a claim's length is a gap in the sending (ORM objects made it 40-90 ms)."""
    t, c = _T.c, _C.c
    pick = (
        select(t.id)
        .where(t.status == SCHEDULED, t.due_at <= now)
        .order_by(t.due_at, t.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = (
        await session.execute(
            update(_T)
            .where(t.id.in_(pick.scalar_subquery()))
            .values(status=SENDING, claim_token=token, claimed_at=now, attempted_at=None)
            .returning(t.id, t.kind, t.customer_id, t.due_at, t.expires_at)
        )
    ).all()
    claim = Claim(claimed=len(claimed))
    if not claimed:
        return claim
    rows = sorted(claimed, key=lambda r: (r.due_at, r.id))
    ids = [r.id for r in rows]
    cids = {r.customer_id for r in rows}
    wanted = (c.id, c.is_guest, c.telegram_id, c.surveys_opt_out, c.unreachable_at, c.timezone,
              c.language)  # fmt: skip
    customers = {r.id: r for r in await session.execute(select(*wanted).where(c.id.in_(cids)))}
    capped = await capped_customers(session, policy, now, cids, ids)
    cap_days = policy.surveys.frequency_cap_days
    start, end = policy.surveys.quiet_hours.times()
    zones: dict[str | None, ZoneInfo] = {}
    changes: list[dict[str, Any]] = []
    for r in rows:
        cu = customers.get(r.customer_id)
        reason: str | None = None
        status = SKIPPED
        if r.expires_at is not None and r.expires_at <= now:
            status, reason = EXPIRED, R_LATE
        elif cu is None or cu.is_guest:
            reason = R_GUEST
        elif cu.telegram_id is None:
            reason = R_NO_CHAT
        elif cu.surveys_opt_out:
            reason = R_OPTED_OUT
        elif cu.unreachable_at is not None:
            reason = R_UNREACHABLE
        elif cu.id in capped:
            reason = R_CAP
        if reason is not None:
            changes.append({"_id": r.id, "status": status, "reason": reason, "claim_token": None})
            claim.settled[reason] = claim.settled.get(reason, 0) + 1
            continue
        assert cu is not None and cu.telegram_id is not None
        zone = zones.get(cu.timezone)
        if zone is None:
            zone = zones[cu.timezone] = zone_of(cu, policy)
        until = quiet_until(now, zone, start, end)
        if until is not None:
            # Back to the queue, due when the quiet period ends; not counted as a survey.
            changes.append(
                {
                    "_id": r.id,
                    "status": SCHEDULED,
                    "due_at": until,
                    "reason": R_QUIET,
                    "claim_token": None,
                    "claimed_at": None,
                }
            )
            claim.deferred += 1
            continue
        if cap_days > 0:
            capped.add(cu.id)  # a second row for the same customer in this batch waits 14 days
        changes.append({"_id": r.id, "chat_id": cu.telegram_id})
        claim.pushes.append(
            Push(r.id, cu.telegram_id, SurveyPush(r.id, r.kind, cu.id, cu.language))
        )
    # One executemany UPDATE by primary key per set of columns.
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for ch in changes:
        by_keys.setdefault(tuple(sorted(ch)), []).append(ch)
    for keys, group in by_keys.items():
        stmt = (
            update(_T)
            .where(t.id == bindparam("_id"))
            .values({k: bindparam(k) for k in keys if k != "_id"})
        )
        await session.execute(stmt, group)
    return claim
