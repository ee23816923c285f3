"""The period's conversations, one row each, judged against the policy's SLA targets.

Which conversations: those that entered the human queue in the period (``queued_at`` in
``[since, until)``), whatever became of them since; what became of them is read as of the
report's ``now``. A chat put back in the queue (transfer, agent gone) keeps its ``queued_at``.

Per conversation (all durations in seconds):

wait
    first agent message (``first_response_at``) minus ``queued_at``; none if no agent has
    written yet. Percentiles of waits are over the conversations that got an agent message.
first-response SLA
    met if the first agent message came within the tier's ``[queue.sla]
    first_response_seconds`` (at most the target: met, as ``routing.queue.sla``); missed if
    it came later, or if none came and the chat has lasted longer than the target (still
    open at ``now``, or closed after the target had passed). Not judged: the tier has no
    target, or the chat is open and still within it, or it was closed before the target
    was due without an agent message.
resolution SLA
    the same with ``resolution_seconds`` and the close (``closed_at``) of an answered chat as
    the moment it was done. An abandoned chat is never resolved: missed if it lasted longer
    than the target, else not judged.
abandoned
    closed without any agent message (``first_response_at`` is NULL at close): the customer
    gave up or was never answered. Of those, *abandoned in queue*: closed while queued (no
    agent held it at the close, ``assigned_at`` NULL). The abandonment rate is abandoned
    over all the period's conversations.
handle time
    ``closed_at`` minus ``assigned_at`` of a closed chat an agent held at the close (after a
    transfer: the last agent's share), the measure the queue's ETA uses.
resolution time
    ``closed_at`` minus ``queued_at`` of a closed chat that got an agent message.
agent
    the agent holding the chat now (for a closed chat: who closed it).
CSAT
    the conversation's CSAT survey (one per closed chat): sent when ``sent_at`` is set,
    answered when it has a score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.reports.period import Period
from routing.reports.stats import Csat, Durations, SlaShare, ratio
from routing.scoring.model import CSAT
from routing.store.models import CLOSED, Agent, Conversation, Customer, Survey

__all__ = [
    "ConversationFigures",
    "ConversationRow",
    "WaitSeries",
    "fetch",
    "figures",
    "sla_outcome",
    "waits_over_time",
]


def sla_outcome(
    target: float | None,
    start: datetime,
    done: datetime | None,
    ended: datetime | None,
    now: datetime,
) -> bool | None:
    """Met (True), missed (False) or not judged (None); see the module's definitions."""
    if target is None:
        return None
    if done is not None:
        return (done - start).total_seconds() <= target
    lasted = ((ended or now) - start).total_seconds()
    return False if lasted > target else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


@dataclass(frozen=True)
class ConversationRow:
    id: int
    customer_id: int
    customer: str | None  # the customer's external_id (None for a guest)
    spend_12m: float  # the customer's, now (revenue at risk)
    tier: str
    origin: str
    agent_id: int | None
    agent: str | None
    status: str
    queued_at: datetime
    assigned_at: datetime | None
    first_response_at: datetime | None
    closed_at: datetime | None
    csat_sent: bool
    csat: int | None  # the answer, 1-5
    first_response_met: bool | None
    resolution_met: bool | None

    @property
    def closed(self) -> bool:
        return self.status == CLOSED

    @property
    def abandoned(self) -> bool:
        return self.closed and self.first_response_at is None

    @property
    def abandoned_in_queue(self) -> bool:
        return self.abandoned and self.assigned_at is None

    @property
    def wait_s(self) -> float | None:
        return _seconds(self.first_response_at, self.queued_at)

    @property
    def handle_s(self) -> float | None:
        return _seconds(self.closed_at, self.assigned_at) if self.closed else None

    @property
    def resolution_s(self) -> float | None:
        if not self.closed or self.first_response_at is None:
            return None
        return _seconds(self.closed_at, self.queued_at)

    @property
    def breached(self) -> bool:
        """Missed its first-response or its resolution target."""
        return self.first_response_met is False or self.resolution_met is False


async def fetch(session: AsyncSession, policy: Policy, period: Period) -> list[ConversationRow]:
    """The period's conversations in the order they were queued."""
    sla = policy.queue.sla
    c = Conversation
    rows = (
        await session.execute(
            select(
                c.id, c.customer_id, c.tier, c.origin, c.agent_id, c.status, c.queued_at,
                c.assigned_at, c.first_response_at, c.closed_at, Customer.external_id,
                Customer.spend_12m, Agent.name, Survey.sent_at, Survey.score,
            )
            .join(Customer, Customer.id == c.customer_id)
            .outerjoin(Agent, Agent.id == c.agent_id)
            .outerjoin(Survey, and_(Survey.conversation_id == c.id, Survey.kind == CSAT))
            .where(c.queued_at >= period.since, c.queued_at < period.until)
            .order_by(c.queued_at, c.id)
        )
    ).all()  # fmt: skip
    out = []
    for (id_, customer_id, tier, origin, agent_id, status, queued_at, assigned_at, answered_at,
         closed, external_id, spend, agent_name, sent_at, score) in rows:  # fmt: skip
        closed_at = closed if status == CLOSED else None
        out.append(
            ConversationRow(
                id=id_,
                customer_id=customer_id,
                customer=external_id,
                spend_12m=float(spend),
                tier=tier,
                origin=origin,
                agent_id=agent_id,
                agent=agent_name,
                status=status,
                queued_at=queued_at,
                assigned_at=assigned_at,
                first_response_at=answered_at,
                closed_at=closed_at,
                csat_sent=sent_at is not None or score is not None,
                csat=score,
                first_response_met=sla_outcome(
                    sla.first_response(tier), queued_at, answered_at, closed_at, period.now
                ),
                resolution_met=sla_outcome(
                    sla.resolution(tier),
                    queued_at,
                    closed_at if answered_at is not None else None,
                    closed_at,
                    period.now,
                ),
            )
        )
    return out


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


@dataclass(frozen=True)
class ConversationFigures:
    conversations: int
    answered: int  # got an agent message
    closed: int
    abandoned: int
    abandoned_in_queue: int
    wait: Durations
    first_response: SlaShare
    resolution: SlaShare
    handle: Durations
    resolution_time: Durations
    csat: Csat

    @property
    def open(self) -> int:
        return self.conversations - self.closed

    @property
    def abandonment_rate(self) -> float | None:
        return ratio(self.abandoned, self.conversations)


def figures(rows: Sequence[ConversationRow]) -> ConversationFigures:
    """The figures of a set of conversations (overall, one tier, one agent)."""
    return ConversationFigures(
        conversations=len(rows),
        answered=sum(r.first_response_at is not None for r in rows),
        closed=sum(r.closed for r in rows),
        abandoned=sum(r.abandoned for r in rows),
        abandoned_in_queue=sum(r.abandoned_in_queue for r in rows),
        wait=Durations.of(_present(r.wait_s for r in rows)),
        first_response=SlaShare.of(r.first_response_met for r in rows),
        resolution=SlaShare.of(r.resolution_met for r in rows),
        handle=Durations.of(_present(r.handle_s for r in rows)),
        resolution_time=Durations.of(_present(r.resolution_s for r in rows)),
        csat=Csat(
            sent=sum(r.csat_sent for r in rows),
            answered=sum(r.csat is not None for r in rows),
            score_sum=sum(r.csat or 0 for r in rows),
        ),
    )


@dataclass(frozen=True)
class WaitSeries:
    """Waits by tier over time: the period cut into buckets (a day, or a week for periods
    over 92 days) from ``since``; per tier and bucket, the waits of the conversations queued
    in that bucket."""

    bucket_seconds: int
    starts: tuple[datetime, ...]
    by_tier: dict[str, tuple[Durations, ...]]


def waits_over_time(
    rows: Sequence[ConversationRow], period: Period, tiers: Sequence[str]
) -> WaitSeries:
    span = period.until - period.since
    bucket = timedelta(days=1) if span <= timedelta(days=92) else timedelta(weeks=1)
    count = max(1, -(-span // bucket))
    starts = tuple(period.since + i * bucket for i in range(count))
    waits: dict[str, list[list[float]]] = {t: [[] for _ in starts] for t in tiers}
    for r in rows:
        wait = r.wait_s
        if wait is None:
            continue
        series = waits.setdefault(r.tier, [[] for _ in starts])
        series[min((r.queued_at - period.since) // bucket, count - 1)].append(wait)
    return WaitSeries(
        int(bucket.total_seconds()),
        starts,
        {t: tuple(Durations.of(b) for b in buckets) for t, buckets in waits.items()},
    )
