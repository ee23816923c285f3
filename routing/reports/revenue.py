"""Customers and money: the tier distribution now, movements between tiers in the period,
revenue concentration (the Pareto view) and revenue at risk.

Customers are the CRM's records: guests (people who reached the bot but match no record)
are left out of the distribution and the concentration, and counted apart.

Tier distribution
    customers per tier now, with their 12-month spend (``spend_12m``).
Movements
    the tier changes recorded in the period (``tier_changes.changed_at``), per (from, to):
    up or down by the policy's tier order; *new* for a first grade.
Revenue concentration
    customers ordered by 12-month spend, highest first (ties by id); the top 20% are the
    first ceil(20% x customers); their share is their spend over everyone's. The Pareto
    curve: after each of up to 100 equal slices of that order (SQL ``ntile``), the share of
    customers so far and the share of spend they hold, from (0, 0) to (1, 1).
Revenue at risk
    the 12-month spend, now, of the customers who gave a detractor answer (an NPS answer in
    the period at or below ``[scoring.satisfaction] nps_detractor_max``, or a CSAT answer
    about one of the period's conversations at or below ``csat_detractor_max``), and of the
    customers whose conversation of the period in a ``human_first`` tier missed its
    first-response or resolution target. The total counts a customer in both lists once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.reports.conversations import ConversationRow
from routing.reports.period import Period
from routing.reports.stats import ratio
from routing.scoring.model import NPS
from routing.store.models import Customer, Survey, TierChange

__all__ = [
    "AtRisk",
    "Concentration",
    "Movement",
    "TierCount",
    "at_risk",
    "concentration",
    "distribution",
    "movements",
]

TOP_SHARE = 0.2
CURVE_POINTS = 100


@dataclass(frozen=True)
class TierCount:
    tier: str
    customers: int
    spend: float


async def distribution(session: AsyncSession, policy: Policy) -> tuple[list[TierCount], int]:
    """Customers per tier now (the policy's tiers first, highest first), and the guests."""
    rows = (
        await session.execute(
            select(Customer.tier, func.count(), func.coalesce(func.sum(Customer.spend_12m), 0))
            .where(Customer.is_guest.is_(False))
            .group_by(Customer.tier)
        )
    ).all()
    found = {t: (int(n), float(s)) for t, n, s in rows}
    names = list(policy.tier_names) + sorted(set(found) - set(policy.tier_names))
    guests = await session.scalar(
        select(func.count()).select_from(Customer).where(Customer.is_guest.is_(True))
    )
    return [TierCount(t, *found.get(t, (0, 0.0))) for t in names], int(guests or 0)


@dataclass(frozen=True)
class Movement:
    from_tier: str | None
    to_tier: str
    customers: int  # tier changes, strictly: a customer moving twice counts twice
    direction: str  # up | down | new | same


def direction(policy: Policy, from_tier: str | None, to_tier: str) -> str:
    if from_tier is None:
        return "new"
    before, after = policy.rank(from_tier), policy.rank(to_tier)
    return "up" if after < before else "down" if after > before else "same"


async def movements(session: AsyncSession, policy: Policy, period: Period) -> list[Movement]:
    rows = (
        await session.execute(
            select(TierChange.from_tier, TierChange.to_tier, func.count())
            .where(TierChange.changed_at >= period.since, TierChange.changed_at < period.until)
            .group_by(TierChange.from_tier, TierChange.to_tier)
        )
    ).all()
    out = [Movement(f, t, int(n), direction(policy, f, t)) for f, t, n in rows]
    out.sort(key=lambda m: (-1 if m.from_tier is None else policy.rank(m.from_tier),
                            policy.rank(m.to_tier), m.from_tier or "", m.to_tier))  # fmt: skip
    return out


@dataclass(frozen=True)
class Concentration:
    customers: int
    total_spend: float
    top_customers: int
    top_spend: float
    # (share of customers, share of spend), cumulative, from (0, 0).
    curve: tuple[tuple[float, float], ...]

    @property
    def top_share(self) -> float | None:
        return ratio(self.top_spend, self.total_spend) if self.total_spend > 0 else None


async def concentration(session: AsyncSession) -> Concentration:
    record = Customer.is_guest.is_(False)
    n, total = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Customer.spend_12m), 0)).where(record)
        )
    ).one()
    n, total = int(n), float(total)
    top_n = (n * round(TOP_SHARE * 100) + 99) // 100
    top = (
        select(Customer.spend_12m.label("spend"))
        .where(record)
        .order_by(Customer.spend_12m.desc(), Customer.id)
        .limit(top_n)
        .subquery()
    )
    top_spend = float(await session.scalar(select(func.coalesce(func.sum(top.c.spend), 0))) or 0)
    sliced = select(
        Customer.spend_12m.label("spend"),
        func.ntile(CURVE_POINTS)
        .over(order_by=(Customer.spend_12m.desc(), Customer.id))
        .label("slice"),
    ).where(record).subquery()  # fmt: skip
    slices = (
        await session.execute(
            select(sliced.c.slice, func.count(), func.sum(sliced.c.spend))
            .group_by(sliced.c.slice)
            .order_by(sliced.c.slice)
        )
    ).all()
    curve = [(0.0, 0.0)]
    people = spend = 0.0
    for _, count, amount in slices:
        people += int(count)
        spend += float(amount or 0)
        curve.append((people / n, spend / total if total > 0 else 0.0))
    return Concentration(n, total, top_n, top_spend, tuple(curve))


@dataclass(frozen=True)
class AtRisk:
    detractors: int
    detractor_spend: float
    breached: int  # customers with a human_first chat of the period that missed a target
    breach_spend: float
    customers: int  # either (a customer in both lists counts once)
    spend: float


async def at_risk(
    session: AsyncSession, policy: Policy, period: Period, rows: Sequence[ConversationRow]
) -> AtRisk:
    s = policy.scoring.satisfaction
    spend_of: dict[int, float] = {}
    nps = await session.execute(
        select(Customer.id, Customer.spend_12m)
        .join(Survey, Survey.customer_id == Customer.id)
        .where(
            Survey.kind == NPS,
            Survey.score <= s.nps_detractor_max,
            Survey.answered_at >= period.since,
            Survey.answered_at < period.until,
        )
        .distinct()
    )
    found = nps.all()
    detractors = {int(i) for i, _ in found}
    spend_of.update({int(i): float(x) for i, x in found})
    detractors |= {
        r.customer_id for r in rows if r.csat is not None and r.csat <= s.csat_detractor_max
    }
    breached = {r.customer_id for r in rows if policy.is_human_first(r.tier) and r.breached}
    spend_of.update({r.customer_id: r.spend_12m for r in rows})

    def total(ids: set[int]) -> float:
        return sum(spend_of[i] for i in ids)

    either = detractors | breached
    return AtRisk(
        len(detractors), total(detractors), len(breached), total(breached), len(either),
        total(either),
    )  # fmt: skip
