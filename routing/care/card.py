"""The customer card a care reminder carries: tier, score and its trend, last orders, last
CSAT answer, open complaints. Data only; the bot words and lays it out."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints.queries import open_cases
from routing.store.care_models import Complaint
from routing.store.models import Customer, Order, Survey, TierChange


@dataclass(frozen=True)
class Card:
    customer: Customer
    score: float
    # The highest score seen since the last score-drop task (None: not a human_first tier).
    peak: float | None
    # Evaluations the model has put the customer below their tier (a downgrade pending).
    below_count: int
    last_change: TierChange | None
    orders: list[Order]  # newest first
    last_csat: Survey | None  # the last answered CSAT survey
    open_complaints: list[Complaint]  # unresolved cases, oldest first


# Built once with bound parameters: building each statement on every card (each column
# comparison and ORDER BY a few Python objects, then its cache key) was, with the queries of
# the hand-over, a third of a claim's CPU (issue 19). SQLAlchemy caches the compiled form.
_LAST_CHANGE = (
    select(TierChange)
    .where(TierChange.customer_id == bindparam("customer_id"))
    .order_by(TierChange.changed_at.desc(), TierChange.id.desc())
    .limit(1)
)
_RECENT_ORDERS = (
    select(Order)
    .where(Order.external_id == bindparam("external_id"))
    .order_by(Order.ordered_at.desc(), Order.id.desc())
    .limit(bindparam("orders"))
)
_LAST_CSAT = (
    select(Survey)
    .where(
        Survey.customer_id == bindparam("customer_id"),
        Survey.kind == "csat",
        Survey.score.is_not(None),
    )
    .order_by(Survey.answered_at.desc(), Survey.id.desc())
    .limit(1)
)


async def card(session: AsyncSession, customer_id: int, *, orders: int = 3) -> Card | None:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return None
    by_customer = {"customer_id": customer_id}
    last_change = (await session.execute(_LAST_CHANGE, by_customer)).scalar_one_or_none()
    recent: list[Order] = []
    if customer.external_id is not None:
        params = {"external_id": customer.external_id, "orders": orders}
        recent = list((await session.execute(_RECENT_ORDERS, params)).scalars())
    csat = (await session.execute(_LAST_CSAT, by_customer)).scalar_one_or_none()
    complaints = await open_cases(session, customer_id)
    return Card(
        customer,
        customer.score,
        customer.care_score_ref,
        customer.below_count,
        last_change,
        recent,
        csat,
        complaints,
    )
