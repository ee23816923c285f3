"""Progress figures: a campaign's (or all surveys') counts, response rate and send rate;
CSAT per agent for supervisors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.scoring.model import CSAT
from routing.store.models import Agent, Survey, SurveyCampaign
from surveys.news import NEWS
from surveys.outbox_states import ANSWERED, FAILED, SCHEDULED, SENDING, SKIPPED

__all__ = ["AgentCsat", "SurveyStatus", "agent_csat", "campaigns", "survey_status"]


@dataclass(frozen=True)
class SurveyStatus:
    key: str | None
    total: int
    by_status: dict[str, int]
    delivered: int  # reached the customer (sent, then answered or expired)
    answered: int
    failed: int
    skipped: int
    pending: int  # scheduled or being sent
    first_sent: datetime | None
    last_sent: datetime | None

    @property
    def response_rate(self) -> float | None:
        return self.answered / self.delivered if self.delivered else None

    @property
    def send_rate(self) -> float | None:
        """Delivered per second between the first and the last delivery."""
        if self.first_sent is None or self.last_sent is None or self.delivered < 2:
            return None
        span = (self.last_sent - self.first_sent).total_seconds()
        return (self.delivered - 1) / span if span > 0 else None


async def survey_status(session: AsyncSession, campaign: str | None = None) -> SurveyStatus:
    # All surveys: announcements are not surveys (``contactbot broadcast status`` has them).
    where = [Survey.kind != NEWS] if campaign is None else [Survey.campaign == campaign]
    by_status = {
        str(status): int(n)
        for status, n in (
            await session.execute(
                select(Survey.status, func.count()).where(*where).group_by(Survey.status)
            )
        ).all()
    }
    delivered, first, last = (
        await session.execute(
            select(func.count(), func.min(Survey.sent_at), func.max(Survey.sent_at)).where(
                *where, Survey.sent_at.is_not(None)
            )
        )
    ).one()
    return SurveyStatus(
        key=campaign,
        total=sum(by_status.values()),
        by_status=by_status,
        delivered=int(delivered),
        answered=by_status.get(ANSWERED, 0),
        failed=by_status.get(FAILED, 0),
        skipped=by_status.get(SKIPPED, 0),
        pending=by_status.get(SCHEDULED, 0) + by_status.get(SENDING, 0),
        first_sent=first,
        last_sent=last,
    )


async def campaigns(session: AsyncSession, limit: int = 20) -> list[SurveyCampaign]:
    return list(
        (
            await session.execute(
                select(SurveyCampaign).order_by(SurveyCampaign.fire_at.desc()).limit(limit)
            )
        ).scalars()
    )


@dataclass(frozen=True)
class AgentCsat:
    agent_id: int
    name: str
    answers: int
    average: float


async def agent_csat(session: AsyncSession, since: datetime | None = None) -> list[AgentCsat]:
    """CSAT answers about each agent's closed chats, best average first."""
    where = [Survey.kind == CSAT, Survey.status == ANSWERED, Survey.agent_id.is_not(None)]
    if since is not None:
        where.append(Survey.answered_at >= since)
    rows = (
        await session.execute(
            select(Agent.id, Agent.name, func.count(), func.avg(Survey.score))
            .join(Agent, Agent.id == Survey.agent_id)
            .where(*where)
            .group_by(Agent.id, Agent.name)
            .order_by(func.avg(Survey.score).desc(), Agent.name)
        )
    ).all()
    return [AgentCsat(int(i), str(n), int(c), float(a)) for i, n, c, a in rows]
