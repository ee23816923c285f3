"""A customer's own orders, for self-service: recent orders and one order's status.

Every lookup is scoped to the customer's ``external_id``: an order id that belongs to someone
else is indistinguishable from one that does not exist, so nobody can probe other customers'
orders. Guests (no imported record) have no orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.models import Customer, Order


@dataclass(frozen=True)
class OrderView:
    order_id: str
    amount_cents: int
    category: str | None
    ordered_at: datetime
    status: str | None


def _view(o: Order) -> OrderView:
    return OrderView(o.order_id, o.amount_cents, o.category, o.ordered_at, o.status)


async def recent_orders(session: AsyncSession, customer: Customer, limit: int) -> list[OrderView]:
    if customer.is_guest or not customer.external_id:
        return []
    rows = await session.execute(
        select(Order)
        .where(Order.external_id == customer.external_id)
        .order_by(Order.ordered_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return [_view(o) for o in rows.scalars()]


def clean_order_id(text: str) -> str:
    """What a customer types for an order id: '#A-1001 ' -> 'A-1001'."""
    return text.strip().lstrip("#№").strip()[:64]


async def order_status(
    session: AsyncSession, customer: Customer, order_id: str
) -> OrderView | None:
    """The customer's own order with this id, else None (never another customer's)."""
    oid = clean_order_id(order_id)
    if customer.is_guest or not customer.external_id or not oid:
        return None
    row = await session.execute(
        select(Order).where(Order.order_id == oid, Order.external_id == customer.external_id)
    )
    order = row.scalar_one_or_none()
    return _view(order) if order is not None else None
