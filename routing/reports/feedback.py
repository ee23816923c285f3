"""NPS, self-service deflection and complaints of the period, by tier and by agent.

NPS
    the NPS answers given in the period (``answered_at`` in ``[since, until)``). Tier: the
    campaign's tier (a campaign asks one tier), else the customer's tier now. Agent: the
    customer's account manager (``routing.store.managers``), who owns the relationship an
    NPS answer is about; customers without one count for no agent.
Self-service deflection
    self-service sessions started in the period, by their tier, ended as
    ``routing.selfservice.deflection`` ends them: a session quiet for ``[selfservice]
    session_minutes`` at the report's ``now`` counts as expired (an answer was shown) or
    abandoned (none was), without writing anything. Deflected = resolved + expired; the
    rate is deflected over ended sessions. No agent is involved, so none per agent.
Complaints
    opened: cases opened in the period; resolved: cases with a ``resolved`` event in the
    period; breached: cases with an SLA ``breach`` event (acknowledge or resolve target) in
    the period; each case counted once per figure. Tier: the case's (frozen at open);
    agent: the case's handling agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped

from routing.complaints import events
from routing.policy.root import Policy
from routing.reports.period import Period
from routing.reports.stats import Nps, ratio
from routing.scoring.model import NPS
from routing.selfservice.deflection import (
    ABANDONED,
    EXPIRED,
    HANDOFF,
    RESOLVED,
    Deflection,
)
from routing.store.care_models import Complaint, ComplaintEvent
from routing.store.managers import find_manager
from routing.store.models import Agent, Customer, SelfServiceSession, Survey, SurveyCampaign

__all__ = ["ComplaintCounts", "Grouped", "complaints", "deflection", "deflection_rate", "nps"]

T = TypeVar("T")


@dataclass
class Grouped(Generic[T]):
    """One figure overall, per tier and per agent id."""

    overall: T
    by_tier: dict[str, T] = field(default_factory=dict)
    by_agent: dict[int, T] = field(default_factory=dict)


def _in(column: Mapped[datetime] | Mapped[datetime | None], period: Period) -> ColumnElement[bool]:
    """``column`` in ``[since, until)``."""
    return and_(column >= period.since, column < period.until)


async def nps(session: AsyncSession, policy: Policy, period: Period) -> Grouped[Nps]:
    detractor_max = policy.scoring.satisfaction.nps_detractor_max
    tier = func.coalesce(SurveyCampaign.tier, Customer.tier)
    rows = (
        await session.execute(
            select(tier, Customer.account_manager, Survey.score, func.count())
            .join(Customer, Customer.id == Survey.customer_id)
            .outerjoin(SurveyCampaign, SurveyCampaign.key == Survey.campaign)
            .where(Survey.kind == NPS, Survey.score.is_not(None), _in(Survey.answered_at, period))
            .group_by(tier, Customer.account_manager, Survey.score)
        )
    ).all()
    agents = list((await session.execute(select(Agent))).scalars())
    managers = {m: find_manager(agents, m) for m in {r[1] for r in rows}}
    out = Grouped(Nps())
    for tier_name, manager, score, n in rows:
        one = Nps.of([(int(score or 0), int(n))], detractor_max)
        out.overall += one
        out.by_tier[tier_name] = out.by_tier.get(tier_name, Nps()) + one
        agent = managers[manager]
        if agent is not None:
            out.by_agent[agent.id] = out.by_agent.get(agent.id, Nps()) + one
    return out


def _deflection(counts: dict[str, int]) -> Deflection:
    resolved, expired, handoff, abandoned, live = (
        counts.get(k, 0) for k in (RESOLVED, EXPIRED, HANDOFF, ABANDONED, "")
    )
    return Deflection(resolved + expired + handoff + abandoned, resolved, expired, handoff,
                      abandoned, live)  # fmt: skip


def deflection_rate(d: Deflection) -> float | None:
    return ratio(d.deflected, d.ended)


async def deflection(session: AsyncSession, policy: Policy, period: Period) -> Grouped[Deflection]:
    stale_before = period.now - timedelta(minutes=policy.selfservice.session_minutes)
    s = SelfServiceSession
    # The outcome as routing.selfservice.deflection would settle it now ("" = still live).
    outcome = case(
        (s.outcome.is_not(None), s.outcome),
        (s.last_at >= stale_before, ""),
        (s.answers > 0, EXPIRED),
        else_=ABANDONED,
    )
    rows = (
        await session.execute(
            select(s.tier, outcome, func.count())
            .where(_in(s.started_at, period))
            .group_by(s.tier, outcome)
        )
    ).all()
    per_tier: dict[str, dict[str, int]] = {}
    overall: dict[str, int] = {}
    for tier, kind, n in rows:
        per_tier.setdefault(tier, {})[kind] = per_tier.get(tier, {}).get(kind, 0) + int(n)
        overall[kind] = overall.get(kind, 0) + int(n)
    return Grouped(_deflection(overall), {t: _deflection(c) for t, c in per_tier.items()})


@dataclass(frozen=True)
class ComplaintCounts:
    opened: int = 0
    resolved: int = 0
    breached: int = 0

    def __add__(self, other: ComplaintCounts) -> ComplaintCounts:
        return ComplaintCounts(
            self.opened + other.opened,
            self.resolved + other.resolved,
            self.breached + other.breached,
        )


async def complaints(session: AsyncSession, period: Period) -> Grouped[ComplaintCounts]:
    found: list[tuple[str, int | None, ComplaintCounts]] = []
    opened = await session.execute(
        select(Complaint.tier, Complaint.agent_id, func.count())
        .where(_in(Complaint.opened_at, period))
        .group_by(Complaint.tier, Complaint.agent_id)
    )
    found += [(t, a, ComplaintCounts(opened=int(n))) for t, a, n in opened.all()]
    for kind in (events.RESOLVED, events.BREACH):
        rows = await session.execute(
            select(Complaint.tier, Complaint.agent_id, func.count(func.distinct(Complaint.id)))
            .join(ComplaintEvent, ComplaintEvent.complaint_id == Complaint.id)
            .where(ComplaintEvent.kind == kind, _in(ComplaintEvent.at, period))
            .group_by(Complaint.tier, Complaint.agent_id)
        )
        for t, a, n in rows.all():
            one = ComplaintCounts(resolved=int(n)) if kind == events.RESOLVED else (
                ComplaintCounts(breached=int(n)))  # fmt: skip
            found.append((t, a, one))
    out = Grouped(ComplaintCounts())
    for tier, agent_id, counts in found:
        out.overall += counts
        out.by_tier[tier] = out.by_tier.get(tier, ComplaintCounts()) + counts
        if agent_id is not None:
            out.by_agent[agent_id] = out.by_agent.get(agent_id, ComplaintCounts()) + counts
    return out


def tier_order(policy: Policy, seen: Sequence[str]) -> list[str]:
    """The policy's tiers, highest first, then any other tier name the data holds."""
    names = list(policy.tier_names)
    return names + sorted(set(seen) - set(names))
