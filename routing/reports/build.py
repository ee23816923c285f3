"""The whole report for a period: every figure overall, per tier and per agent, the customer
and revenue views, and one row per conversation. Read-only: one session, nothing written.

The definitions are in the modules that compute them: ``conversations`` (waits, SLA met,
abandonment, handle and resolution time, CSAT), ``feedback`` (NPS, self-service deflection,
complaints), ``revenue`` (tier distribution and movements, concentration, revenue at risk).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.reports import conversations, feedback, revenue
from routing.reports.conversations import ConversationFigures, ConversationRow, WaitSeries
from routing.reports.feedback import ComplaintCounts
from routing.reports.period import Period
from routing.reports.stats import Nps
from routing.selfservice.deflection import Deflection
from routing.store.models import Agent

__all__ = ["OVERALL", "Group", "Report", "build"]

OVERALL = "overall"
TIER = "tier"
AGENT = "agent"


@dataclass(frozen=True)
class Group:
    """The figures of one scope: overall, a tier, or an agent."""

    scope: str  # overall | tier | agent
    name: str  # "all", the tier, or the agent's name
    agent_id: int | None
    conversations: ConversationFigures
    nps: Nps
    complaints: ComplaintCounts
    deflection: Deflection | None  # None for an agent: self-service involves none


@dataclass(frozen=True)
class Report:
    period: Period
    overall: Group
    tiers: tuple[Group, ...]
    agents: tuple[Group, ...]
    waits: WaitSeries
    distribution: tuple[revenue.TierCount, ...]
    guests: int
    movements: tuple[revenue.Movement, ...]
    concentration: revenue.Concentration
    at_risk: revenue.AtRisk
    rows: tuple[ConversationRow, ...]


async def build(session: AsyncSession, policy: Policy, period: Period) -> Report:
    rows = await conversations.fetch(session, policy, period)
    nps = await feedback.nps(session, policy, period)
    complaints = await feedback.complaints(session, period)
    deflection = await feedback.deflection(session, policy, period)
    by_tier: dict[str, list[ConversationRow]] = defaultdict(list)
    by_agent: dict[int, list[ConversationRow]] = defaultdict(list)
    for r in rows:
        by_tier[r.tier].append(r)
        if r.agent_id is not None:
            by_agent[r.agent_id].append(r)
    tier_names = feedback.tier_order(
        policy, [*by_tier, *nps.by_tier, *complaints.by_tier, *deflection.by_tier]
    )
    tiers = tuple(
        Group(
            TIER,
            t,
            None,
            conversations.figures(by_tier.get(t, [])),
            nps.by_tier.get(t, Nps()),
            complaints.by_tier.get(t, ComplaintCounts()),
            deflection.by_tier.get(t, Deflection(0, 0, 0, 0, 0, 0)),
        )
        for t in tier_names
    )
    agent_ids = set(by_agent) | set(nps.by_agent) | set(complaints.by_agent)
    names = {
        a.id: a.name
        for a in (await session.execute(select(Agent).where(Agent.id.in_(agent_ids)))).scalars()
    }
    agents = sorted(
        (
            Group(
                AGENT,
                names.get(i, f"#{i}"),
                i,
                conversations.figures(by_agent.get(i, [])),
                nps.by_agent.get(i, Nps()),
                complaints.by_agent.get(i, ComplaintCounts()),
                None,
            )
            for i in agent_ids
        ),
        key=lambda g: (g.name.casefold(), g.agent_id),
    )
    overall = Group(
        OVERALL, "all", None, conversations.figures(rows), nps.overall, complaints.overall,
        deflection.overall,
    )  # fmt: skip
    distribution, guests = await revenue.distribution(session, policy)
    return Report(
        period=period,
        overall=overall,
        tiers=tiers,
        agents=tuple(agents),
        waits=conversations.waits_over_time(rows, period, tier_names),
        distribution=tuple(distribution),
        guests=guests,
        movements=tuple(await revenue.movements(session, policy, period)),
        concentration=await revenue.concentration(session),
        at_risk=await revenue.at_risk(session, policy, period, rows),
        rows=tuple(rows),
    )
