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

Announcement rows (kind ``news``) are decided the same way with their own opt-out, cap and
payload (:mod:`surveys.news`).
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
from surveys import news
from surveys.complaint_follow_up import CAP_EXEMPT, with_questions
from surveys.news import NEWS, R_NO_BROADCAST, NewsPush
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
            .returning(t.id, t.kind, t.customer_id, t.due_at, t.expires_at, t.campaign)
        )
    ).all()
    claim = Claim(claimed=len(claimed))
    if not claimed:
        return claim
    rows = sorted(claimed, key=lambda r: (r.due_at, r.id))
    ids = [r.id for r in rows]
    cids = {r.customer_id for r in rows}
    wanted = (c.id, c.is_guest, c.telegram_id, c.surveys_opt_out, c.unreachable_at, c.timezone,
              c.language, c.news_opt_out)  # fmt: skip
    customers = {r.id: r for r in await session.execute(select(*wanted).where(c.id.in_(cids)))}
    news_rows = [r for r in rows if r.kind == NEWS]
    survey_cids = {r.customer_id for r in rows if r.kind != NEWS}
    capped = await capped_customers(session, policy, now, survey_cids, ids)
    cap_days = policy.surveys.frequency_cap_days
    # Announcements: their own cap, and their texts.
    news_cids = {r.customer_id for r in news_rows}
    news_capped = await capped_customers(session, policy, now, news_cids, ids, news=True)
    news_cap_days = policy.care.announcements.frequency_cap_days
    texts = await news.texts_of(session, {r.campaign for r in news_rows if r.campaign})
    start, end = policy.surveys.quiet_hours.times()
    zones: dict[str | None, ZoneInfo] = {}
    changes: list[dict[str, Any]] = []
    for r in rows:
        cu = customers.get(r.customer_id)
        is_news = r.kind == NEWS
        reason: str | None = None
        status = SKIPPED
        if r.expires_at is not None and r.expires_at <= now:
            status, reason = EXPIRED, R_LATE
        elif cu is None or cu.is_guest:
            reason = R_GUEST
        elif cu.telegram_id is None:
            reason = R_NO_CHAT
        elif cu.news_opt_out if is_news else cu.surveys_opt_out:
            reason = R_OPTED_OUT
        elif cu.unreachable_at is not None:
            reason = R_UNREACHABLE
        elif cu.id in (news_capped if is_news else capped):
            reason = R_CAP
        elif is_news and r.campaign not in texts:
            reason = R_NO_BROADCAST
        if reason == R_CAP and r.kind in CAP_EXEMPT:
            reason = None  # a complaint's follow-up (surveys.complaint_follow_up.CAP_EXEMPT)
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
        changes.append({"_id": r.id, "chat_id": cu.telegram_id})
        if is_news:
            if news_cap_days > 0:
                news_capped.add(cu.id)  # a second announcement in this batch is capped
            language, text = texts[r.campaign].pick(cu.language)
            payload: SurveyPush | NewsPush = NewsPush(r.id, r.kind, cu.id, language, text)
        else:
            if cap_days > 0:
                capped.add(cu.id)  # a second row for the same customer in this batch waits
            payload = SurveyPush(r.id, r.kind, cu.id, cu.language)
        claim.pushes.append(Push(r.id, cu.telegram_id, payload))
    # A complaint's follow-up carries its question (surveys.complaint_follow_up).
    claim.pushes = await with_questions(session, policy, claim.pushes)
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
