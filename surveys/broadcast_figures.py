"""The figures of a broadcast: who a draft would reach (``contactbot broadcast --dry-run``,
and the summary printed when one is created) and how far one has got
(``contactbot broadcast status``). Read-only; the broadcast itself is
:mod:`surveys.broadcasts`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.store.broadcast_models import Broadcast
from routing.store.models import Customer, Survey
from surveys.broadcasts import Draft, in_tiers, reachable
from surveys.news import NEWS, pick_text
from surveys.outbox_states import (
    EXPIRED,
    FAILED,
    R_CAP,
    R_GUEST,
    R_NO_CHAT,
    R_OPTED_OUT,
    R_QUIET,
    R_RETRYING,
    R_UNKNOWN,
    R_UNREACHABLE,
    SCHEDULED,
    SENDING,
    SENT,
    SKIPPED,
)

__all__ = ["Plan", "Progress", "TierPlan", "failure_reason", "plan", "progress"]


# ------------------------------------------------------------------------ who would get it


@dataclass
class TierPlan:
    receive: Counter[str] = field(default_factory=Counter)  # language -> customers
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> customers

    @property
    def receivers(self) -> int:
        return sum(self.receive.values())


@dataclass
class Plan:
    """Who a draft reaches, per tier: receivers by language and the rest by reason. The
    frequency cap is an estimate (decided again when each message is sent)."""

    tiers: dict[str, TierPlan]

    @property
    def receivers(self) -> int:
        return sum(t.receivers for t in self.tiers.values())

    def skipped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for t in self.tiers.values():
            total.update(t.skipped)
        return total


async def plan(session: AsyncSession, draft: Draft, policy: Policy) -> Plan:
    """What ``create`` would do with ``draft``, written nowhere."""
    c = Customer
    no_chat = c.telegram_id.is_(None).label("no_chat")
    unreachable = c.unreachable_at.is_not(None).label("unreachable")
    rows = await session.execute(
        select(c.tier, c.is_guest, no_chat, c.news_opt_out, unreachable, c.language, func.count())
        .where(in_tiers(draft.tiers))
        .group_by(c.tier, c.is_guest, no_chat, c.news_opt_out, unreachable, c.language)
    )
    out = Plan({t: TierPlan() for t in draft.tiers})
    for tier, guest, chatless, opted_out, blocked, language, n in rows.all():
        tp = out.tiers[tier]
        if guest:
            tp.skipped[R_GUEST] += n
        elif chatless:
            tp.skipped[R_NO_CHAT] += n
        elif opted_out:
            tp.skipped[R_OPTED_OUT] += n
        elif blocked:
            tp.skipped[R_UNREACHABLE] += n
        else:
            tp.receive[pick_text(draft.texts, language, draft.default_language)[0]] += n
    for tier, language, n in await _capped_estimate(session, draft, policy):
        lang = pick_text(draft.texts, language, draft.default_language)[0]
        tp = out.tiers[tier]
        tp.receive[lang] -= n
        tp.skipped[R_CAP] += n
    for tp in out.tiers.values():
        tp.receive = +tp.receive  # drop zeros
    return out


async def _capped_estimate(
    session: AsyncSession, draft: Draft, policy: Policy
) -> list[tuple[str, str | None, int]]:
    """Eligible customers the announcement cap would hold back at the fire time: sent one
    within the cap before it, or with another one due by then. (tier, language, count)."""
    days = policy.care.announcements.frequency_cap_days
    if days <= 0:
        return []
    s = Survey
    other = exists().where(
        s.customer_id == Customer.id,
        s.kind == NEWS,
        s.campaign != draft.key,
        or_(
            s.sent_at >= draft.fire_at - timedelta(days=days),
            and_(s.status.in_((SCHEDULED, SENDING)), s.due_at <= draft.fire_at),
        ),
    )
    rows = await session.execute(
        select(Customer.tier, Customer.language, func.count())
        .where(
            in_tiers(draft.tiers),
            reachable(),
            Customer.news_opt_out.is_(False),
            Customer.unreachable_at.is_(None),
            other,
        )
        .group_by(Customer.tier, Customer.language)
    )
    return [(str(t), lang, int(n)) for t, lang, n in rows.all()]


# ------------------------------------------------------------------------ progress


@dataclass
class Progress:
    """One broadcast's figures: its outbox rows by state, the skipped and failed ones by
    reason, and the customers of its tiers who got no row."""

    key: str
    tiers: str
    languages: tuple[str, ...]
    fire_at: datetime
    created_at: datetime
    created_by: str | None
    finished: bool  # every outbox row written
    rows: int = 0
    pending: int = 0  # scheduled or being sent
    quiet: int = 0  # of those, waiting for quiet hours to end
    retrying: int = 0  # of those, waiting after Telegram failed transiently
    sent: int = 0
    expired: int = 0  # not sent in time
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows (and no-row ones)
    failed: Counter[str] = field(default_factory=Counter)  # reason -> rows

    @property
    def done(self) -> int:
        """Rows settled one way or another."""
        return self.rows - self.pending

    @property
    def share_done(self) -> float | None:
        return self.done / self.rows if self.rows else None


def failure_reason(reason: str | None) -> str:
    """A failed row's reason as grouped in the figures."""
    text = reason or "failed"
    if text.startswith(R_UNREACHABLE):
        return R_UNREACHABLE
    if text.startswith(R_UNKNOWN.split(":")[0]):
        return "outcome unknown (not resent)"
    return text[:80]


async def progress(
    session: AsyncSession, key: str | None = None, limit: int = 20
) -> list[Progress]:
    """The figures of broadcast ``key``, or of the latest ``limit`` ones (newest first)."""
    q = select(Broadcast)
    q = q.where(Broadcast.key == key) if key is not None else q
    broadcasts = (
        await session.execute(q.order_by(Broadcast.created_at.desc()).limit(limit))
    ).scalars()
    out: dict[str, Progress] = {}
    for b in broadcasts:
        p = Progress(
            b.key, b.tiers, tuple(json.loads(b.texts)), b.fire_at, b.created_at, b.created_by,
            b.finished_at is not None,
        )  # fmt: skip
        if b.guests:
            p.skipped[R_GUEST] = b.guests
        if b.no_chat:
            p.skipped[R_NO_CHAT] = b.no_chat
        out[b.key] = p
    if not out:
        return []
    rows = await session.execute(
        select(Survey.campaign, Survey.status, Survey.reason, func.count())
        .where(Survey.campaign.in_(list(out)), Survey.kind == NEWS)
        .group_by(Survey.campaign, Survey.status, Survey.reason)
    )
    for campaign, status, reason, n in rows.all():
        p = out[str(campaign)]
        p.rows += n
        if status in (SCHEDULED, SENDING):
            p.pending += n
            if reason == R_QUIET:
                p.quiet += n
            elif reason and reason.startswith(R_RETRYING):
                p.retrying += n
        elif status == SENT:
            p.sent += n
        elif status == EXPIRED:
            p.expired += n
        elif status == SKIPPED:
            p.skipped[reason or "skipped"] += n
        elif status == FAILED:
            p.failed[failure_reason(reason)] += n
    return list(out.values())
