"""Survey feedback into scoring: satisfaction average, complaints, and a rescore of one.

The survey machinery (``surveys/``) calls ``record_answer`` when an answer arrives; an
escalation (a complaint raised in a conversation) calls ``record_complaint``; a complaint
case changing state (``routing.complaints``) calls ``adjust_complaints`` with the change of
its weight. All run in the caller's transaction and rescore that customer at once, with the
usual hysteresis: one bad answer does not move a tier down by itself, a run of them can.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.scoring import model as scoring
from routing.scoring.facts import to_epoch_days
from routing.scoring.rescoring import RescoreResult, rescore_customer
from routing.store.models import Customer, Survey


class SurveyAnswerError(ValueError):
    """An answer that cannot be recorded (unknown survey, out-of-range score)."""


@dataclass(frozen=True)
class SatisfactionUpdate:
    customer_id: int
    satisfaction: float
    complaints: float
    detractor: bool
    rescore: RescoreResult


_RANGES = {scoring.CSAT: (1, 5), scoring.NPS: (0, 10)}


def current_complaints(customer: Customer, now: datetime, policy: Policy) -> float:
    """The customer's complaint figure decayed to ``now`` (what the score sees)."""
    if not customer.complaints or customer.complaints_at is None:
        return 0.0
    return scoring.decayed(
        customer.complaints,
        to_epoch_days(now) - to_epoch_days(customer.complaints_at),
        policy.scoring.normalise.complaints_half_life_days,
    )


def case_contribution(weight: float, opened_at: datetime, now: datetime, policy: Policy) -> float:
    """What a complaint case of ``weight`` (``routing.complaints.weights``) adds to the
    complaint figure at ``now``: decayed from the day it was opened, as every complaint is.
    Works for a change of weight too (negative when a case weighs less than before)."""
    age = max(to_epoch_days(now) - to_epoch_days(opened_at), 0.0)
    return float(weight * 0.5 ** (age / policy.scoring.normalise.complaints_half_life_days))


async def _add_complaint(
    session: AsyncSession, customer: Customer, now: datetime, policy: Policy
) -> float:
    return current_complaints(customer, now, policy) + 1.0


async def update_satisfaction(
    session: AsyncSession,
    customer_id: int,
    kind: str,
    score: int,
    now: datetime,
    policy: Policy,
) -> SatisfactionUpdate:
    """Fold one survey answer into the customer's satisfaction and rescore them."""
    low, high = _RANGES.get(kind, (None, None))
    if low is None or high is None:
        raise SurveyAnswerError(f"unknown survey kind {kind!r}")
    if not low <= score <= high:
        raise SurveyAnswerError(f"{kind} answer {score} outside {low}-{high}")
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise SurveyAnswerError(f"no customer #{customer_id}")
    satisfaction = scoring.ewma(
        customer.satisfaction, scoring.normalise_answer(kind, score), policy
    )
    detractor = scoring.is_detractor(kind, score, policy)
    values: dict[str, object] = {
        "satisfaction": satisfaction,
        "satisfaction_answers": Customer.satisfaction_answers + 1,
    }
    complaints = customer.complaints
    if detractor:
        complaints = await _add_complaint(session, customer, now, policy)
        values |= {"complaints": complaints, "complaints_at": now}
    await session.execute(update(Customer).where(Customer.id == customer_id).values(**values))
    result = await rescore_customer(session, customer_id, policy, now)
    return SatisfactionUpdate(customer_id, satisfaction, complaints, detractor, result)


async def record_answer(
    session: AsyncSession, survey_id: int, score: int, now: datetime, policy: Policy
) -> SatisfactionUpdate:
    """Mark a survey answered and feed the answer into scoring."""
    survey = (
        await session.execute(select(Survey).where(Survey.id == survey_id))
    ).scalar_one_or_none()
    if survey is None:
        raise SurveyAnswerError(f"no survey #{survey_id}")
    survey.status = "answered"
    survey.score = score
    survey.answered_at = now
    await session.flush()
    return await update_satisfaction(session, survey.customer_id, survey.kind, score, now, policy)


async def record_complaint(
    session: AsyncSession, customer_id: int, now: datetime, policy: Policy
) -> RescoreResult:
    """An escalation or complaint outside a survey: counts against the customer."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise SurveyAnswerError(f"no customer #{customer_id}")
    complaints = await _add_complaint(session, customer, now, policy)
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(complaints=complaints, complaints_at=now)
    )
    return await rescore_customer(session, customer_id, policy, now)


async def adjust_complaints(
    session: AsyncSession, customer_id: int, delta: float, now: datetime, policy: Policy
) -> RescoreResult:
    """Move the customer's complaint figure by ``delta`` (already decayed to ``now``) and
    rescore them: a complaint case changing state (``routing.complaints``) calls this.

    The row is locked first (PostgreSQL), so that two changes at once (a case resolved while
    a detractor answer arrives) both count. The figure never goes below 0 (rounding).
    """
    customer = await session.get(
        Customer, customer_id, with_for_update=True, populate_existing=True
    )
    if customer is None:
        raise SurveyAnswerError(f"no customer #{customer_id}")
    value = current_complaints(customer, now, policy) + delta
    value = value if value > 1e-9 else 0.0
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(complaints=value, complaints_at=now)
    )
    return await rescore_customer(session, customer_id, policy, now)
