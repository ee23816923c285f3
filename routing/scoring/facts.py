"""The per-customer facts for scoring, aggregated in SQL: the query, its column positions and
the conversion of its rows into :class:`routing.scoring.model.model.Facts`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    Select,
    Table,
    and_,
    distinct,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from routing.policy.root import Policy
from routing.scoring import model as scoring
from routing.scoring.model import Facts, TierState
from routing.store.models import Customer, Order, TierChange

_C: Table = Customer.__table__  # type: ignore[assignment]
_O: Table = Order.__table__  # type: ignore[assignment]
_TC: Table = TierChange.__table__  # type: ignore[assignment]


# Column positions in the rows of ``facts_query`` (the first ten also of ``_state_query``).
ID, EXTERNAL_ID, NAME, TIER, OVERRIDE, SCORE, SPEND, BELOW_COUNT, BELOW_SINCE, EVALUATED = range(10)
SATISFACTION, COMPLAINTS, COMPLAINTS_DAYS, SPEND_CENTS, ORDERS, CATEGORIES = range(10, 16)
LAST_DAYS, FIRST_DAYS, ORDERS_TOTAL = range(16, 19)


class epoch_days(FunctionElement[float]):
    """Days since 1970-01-01 UTC of a timestamp column, as a float, on every backend."""

    type = Float()
    inherit_cache = True
    name = "epoch_days"


@compiles(epoch_days, "sqlite")
def _epoch_days_sqlite(element: epoch_days, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(julianday({compiler.process(element.clauses, **kw)}) - 2440587.5)"


@compiles(epoch_days, "postgresql")
def _epoch_days_pg(element: epoch_days, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"(CAST(EXTRACT(EPOCH FROM {arg}) AS DOUBLE PRECISION) / 86400.0)"


def to_epoch_days(when: datetime) -> float:
    return when.timestamp() / 86400.0


def _window_join(policy: Policy, now: datetime) -> ColumnElement[bool]:
    since = now - timedelta(days=policy.scoring.window_days)
    return and_(_O.c.external_id == _C.c.external_id, _O.c.ordered_at >= since, _counted(policy))


def _aggregates(policy: Policy) -> list[Any]:
    """Window aggregates over the joined orders; all-time ones as correlated subqueries, each
    a seek into the covering index ``ix_orders_scoring``."""
    o2 = _O.alias("o2")
    mine = and_(o2.c.external_id == _C.c.external_id, _counted(policy, o2))

    def one(col: Any) -> Any:
        return select(o2.c.ordered_at).where(mine).order_by(col).limit(1).scalar_subquery()

    return [
        func.coalesce(func.sum(_O.c.amount_cents), 0).label("spend_cents"),
        func.count(_O.c.id).label("orders"),
        func.count(distinct(_O.c.category)).label("categories"),
        epoch_days(one(o2.c.ordered_at.desc())).label("last_days"),
        epoch_days(one(o2.c.ordered_at.asc())).label("first_days"),
        select(func.count()).select_from(o2).where(mine).scalar_subquery().label("orders_total"),
    ]


def _counted(policy: Policy, o: Any = _O) -> ColumnElement[bool]:
    excluded = policy.scoring.exclude_statuses
    if not excluded:
        return true()
    # ``!=`` each rather than NOT IN: SQLite evaluates this for every order of every
    # customer, and a NOT IN list costs it an ephemeral-table probe per order (a few percent
    # of the aggregate query's CPU, measured). Same rows: NULL is taken by the first branch.
    return or_(o.c.status.is_(None), and_(*(o.c.status != s for s in excluded)))


def facts_query(policy: Policy, now: datetime) -> Select[Any]:
    """Customers with their order aggregates; add a WHERE on ``customers.id``."""
    c = _C.c
    return (
        select(
            c.id,
            c.external_id,
            c.name,
            c.tier,
            c.tier_override,
            c.score,
            c.spend_12m,
            c.below_count,
            c.below_since,
            (c.scored_at.is_not(None)).label("evaluated"),
            c.satisfaction,
            c.complaints,
            epoch_days(c.complaints_at).label("complaints_days"),
            *_aggregates(policy),
        )
        .select_from(_C.outerjoin(_O, _window_join(policy, now)))
        .where(c.is_guest.is_(False))
        .group_by(c.id)
    )


def _state_query() -> Select[Any]:
    c = _C.c
    return select(
        c.id,
        c.external_id,
        c.name,
        c.tier,
        c.tier_override,
        c.score,
        c.spend_12m,
        c.below_count,
        c.below_since,
        (c.scored_at.is_not(None)).label("evaluated"),
        or_(
            select(_O.c.id).where(_O.c.external_id == c.external_id).exists(),
            c.satisfaction.is_not(None),
            c.complaints > 0,
        ).label("has_data"),
    ).where(c.is_guest.is_(False))


HAS_DATA = 10  # in ``_state_query`` rows


def facts_from_row(row: Sequence[Any], now_days: float, policy: Policy) -> Facts:
    complaints = 0.0
    if row[COMPLAINTS] and row[COMPLAINTS_DAYS] is not None:
        complaints = scoring.decayed(
            row[COMPLAINTS],
            now_days - row[COMPLAINTS_DAYS],
            policy.scoring.normalise.complaints_half_life_days,
        )
    last, first = row[LAST_DAYS], row[FIRST_DAYS]
    return Facts(
        spend=int(row[SPEND_CENTS]) / 100,
        orders=int(row[ORDERS]),
        categories=int(row[CATEGORIES]),
        days_since_last=None if last is None else now_days - last,
        tenure_days=None if first is None else now_days - first,
        orders_total=int(row[ORDERS_TOTAL] or 0),
        satisfaction=row[SATISFACTION],
        complaints=complaints,
    )


def _state(row: Sequence[Any]) -> TierState:
    return TierState(
        tier=row[TIER],
        override=row[OVERRIDE],
        below_count=row[BELOW_COUNT],
        below_since=row[BELOW_SINCE],
        evaluated=bool(row[EVALUATED]),
    )


def _details(values: Sequence[float]) -> str:
    return json.dumps(dict(zip(scoring.DIMENSIONS, (round(v, 4) for v in values), strict=True)))
