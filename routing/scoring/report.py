"""One customer's score explained (``contactbot customers show``) and manual tier overrides.

The explanation lists the customer's complaint cases with what each weighs
(``routing.complaints.weights``), so the complaints dimension can be read case by case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.scoring import model as scoring
from routing.scoring.facts import (
    _C,
    facts_from_row,
    facts_query,
    to_epoch_days,
)
from routing.scoring.model import Facts, Grade
from routing.scoring.rescoring import RescoreResult, _last_cutoffs, rescore
from routing.scoring.satisfaction import case_contribution
from routing.store.care_models import Complaint
from routing.store.models import Customer, TierChange


class CustomerNotFound(LookupError):
    pass


async def _by_external_id(session: AsyncSession, external_id: str) -> Customer:
    customer = (
        await session.execute(select(Customer).where(Customer.external_id == external_id))
    ).scalar_one_or_none()
    if customer is None:
        raise CustomerNotFound(external_id)
    return customer


async def set_override(
    session: AsyncSession,
    external_id: str,
    tier: str | None,
    *,
    by: str | None,
    reason: str | None,
    policy: Policy,
    now: datetime,
) -> RescoreResult:
    """Pin (or with ``tier=None`` release) a customer's tier; takes effect at once.

    Released, the customer takes the model's grade at once too (no hysteresis: the pin was a
    person's decision, and so is its release)."""
    if tier is not None and tier not in policy.tier_names:
        raise ValueError(f"unknown tier {tier!r} (tiers: {', '.join(policy.tier_names)})")
    customer = await _by_external_id(session, external_id)
    released = tier is None and customer.tier_override is not None
    await session.execute(
        update(Customer)
        .where(Customer.id == customer.id)
        .values(
            tier_override=tier,
            tier_override_by=by if tier else None,
            tier_override_reason=reason if tier else None,
            tier_override_at=now if tier else None,
            updated_at=now,
            # Released: the next evaluation is a fresh grading (see ``decide``).
            **({"scored_at": None, "below_count": 0, "below_since": None} if released else {}),
        )
    )
    return await rescore(session, policy, now, customer_ids=[customer.id], released=released)


@dataclass(frozen=True)
class CaseWeight:
    """One complaint case in the score's explanation."""

    id: int  # the case number
    category: str
    status: str  # open | acknowledged | resolved | reopened
    outcome: str | None  # the customer's follow-up answer: satisfied | unsatisfied
    weight: float  # by its state and severity ([complaints.weights] x severity)
    counts: float  # what it adds to the complaints dimension now (decayed since open)


@dataclass
class CustomerReport:
    customer: Customer
    facts: Facts
    explanation: scoring.Explanation
    model: Grade
    history: list[TierChange]
    # Newest first; the complaints dimension is their ``counts`` plus detractor answers.
    cases: list[CaseWeight] = field(default_factory=list)


async def case_weights(
    session: AsyncSession, customer_id: int, policy: Policy, now: datetime, *, limit: int = 20
) -> list[CaseWeight]:
    """The customer's complaint cases, newest first, with their weight in the score."""
    rows = (
        await session.execute(
            select(Complaint)
            .where(Complaint.customer_id == customer_id)
            .order_by(Complaint.opened_at.desc(), Complaint.id.desc())
            .limit(limit)
        )
    ).scalars()
    return [
        CaseWeight(
            c.id,
            c.category,
            c.status,
            c.outcome,
            c.weight,
            case_contribution(c.weight, c.opened_at, now, policy),
        )
        for c in rows
    ]


async def customer_report(
    session: AsyncSession, external_id: str, policy: Policy, now: datetime, *, history: int = 20
) -> CustomerReport:
    """The customer's score now, by dimension, the model's grade, and their tier history."""
    customer = await _by_external_id(session, external_id)
    row = (await session.execute(facts_query(policy, now).where(_C.c.id == customer.id))).one()
    facts = facts_from_row(row, to_epoch_days(now), policy)
    explanation = scoring.explain(facts, policy)
    cutoffs: tuple[float | None, ...] = ()
    if policy.scoring.mode == "percentile":
        cutoffs = await _last_cutoffs(session, policy)
    model = scoring.model_grade(facts, explanation.score, policy, cutoffs)
    changes = (
        await session.execute(
            select(TierChange)
            .where(TierChange.customer_id == customer.id)
            .order_by(TierChange.changed_at.desc(), TierChange.id.desc())
            .limit(history)
        )
    ).scalars()
    cases = await case_weights(session, customer.id, policy, now)
    return CustomerReport(customer, facts, explanation, model, list(changes), cases)
