"""One customer's score explained (``contactbot customers show``) and manual tier overrides."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class CustomerReport:
    customer: Customer
    facts: Facts
    explanation: scoring.Explanation
    model: Grade
    history: list[TierChange]


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
    return CustomerReport(customer, facts, explanation, model, list(changes))
