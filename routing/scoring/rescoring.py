"""Set-based rescoring: SQL aggregates per customer, graded by the pure ``routing.scoring.model``.

Customers are walked in keyset batches by id. Each batch is one query that aggregates the
batch's orders in SQL (sums, counts, distinct categories, first and last order); the rows are
plain tuples fed to ``routing.scoring.model`` and the results written back with executemany. Memory
stays flat however many customers there are: a batch at a time, and the list of changes kept
for the caller is capped (every change is in ``tier_changes``).

Percentile mode needs every score before any grade: pass one writes the scores, the cutoffs
come from ``ORDER BY score DESC LIMIT 1 OFFSET k`` per tier, pass two grades.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from routing.policy.root import Policy
from routing.scoring import model as scoring
from routing.scoring.facts import (
    _C,
    BELOW_COUNT,
    BELOW_SINCE,
    EVALUATED,
    EXTERNAL_ID,
    HAS_DATA,
    ID,
    NAME,
    ORDERS_TOTAL,
    SATISFACTION,
    SCORE,
    SPEND,
    TIER,
    _details,
    _state,
    _state_query,
    facts_from_row,
    facts_query,
    to_epoch_days,
)
from routing.scoring.fast_grade import FastGrader
from routing.scoring.model import Decision, Grade
from routing.store.base import sqlite_text
from routing.store.bulk import bulk_settings
from routing.store.models import Customer, ScoringRun

BATCH = 20_000
KEEP_CHANGES = 1_000


@dataclass(frozen=True)
class TierChangeView:
    customer_id: int
    external_id: str | None
    name: str | None
    from_tier: str
    to_tier: str
    spend_12m: float
    reason: str
    kind: str = scoring.UPGRADE
    score: float = 0.0


@dataclass
class RescoreResult:
    distribution: Counter[str] = field(default_factory=Counter)
    # The first ``KEEP_CHANGES`` changes; ``changed`` counts them all (by from -> to).
    changes: list[TierChangeView] = field(default_factory=list)
    customers: int = 0
    changed: Counter[tuple[str, str]] = field(default_factory=Counter)
    cutoffs: tuple[float | None, ...] = ()
    seconds: float = 0.0

    @property
    def change_count(self) -> int:
        return sum(self.changed.values())


class _Writer:
    """Buffers the writes of one batch and flushes them with executemany."""

    def __init__(
        self, session: AsyncSession, policy: Policy, now: datetime, *, released: bool = False
    ) -> None:
        # released: an override was just lifted; the fresh grading is logged as an override.
        self.released = released
        self.session = session
        self.policy = policy
        self.now = now
        # (id, tier, score, spend, below_count, below_since, evaluated)
        self.grade_rows: list[tuple[Any, ...]] = []
        # (id, score, spend)
        self.score_rows: list[tuple[int, float, float]] = []
        self.log_rows: list[dict[str, Any]] = []
        self.result = RescoreResult()

    def keep(
        self,
        row: Any,
        score_: float,
        spend: float,
        tier: str,
        below_count: int,
        below_since: datetime | None,
        has_data: bool,
    ) -> None:
        """``record`` for a decision that keeps the tier (``FastGrader.unchanged``): only the
        bookkeeping, written when anything of it moved."""
        r = self.result
        was = bool(row[EVALUATED])
        evaluated = was or has_data
        r.customers += 1
        r.distribution[tier] += 1
        if (
            tier != row[TIER]
            or score_ != row[SCORE]
            or spend != row[SPEND]
            or below_count != row[BELOW_COUNT]
            or below_since != row[BELOW_SINCE]
            or evaluated != was
        ):
            self.grade_rows.append(
                (row[ID], tier, score_, spend, below_count, below_since, evaluated)
            )

    def record(
        self,
        row: Any,
        score_: float,
        spend: float,
        d: Decision,
        values: Sequence[float] | None,
        has_data: bool,
    ) -> None:
        """``has_data``: the model knew something of the customer (orders, answers). Until it
        does, they are not marked evaluated, so their first real grading counts as the
        initial one (no upgrade notice for every customer of a first orders import)."""
        self.keep(row, score_, spend, d.tier, d.below_count, d.below_since, has_data)
        if d.kind is None:
            return
        r = self.result
        kind = d.kind
        if self.released:
            kind = scoring.OVERRIDE
            d = replace(d, kind=kind, reason=f"override released; {d.reason}")
        r.changed[(row[TIER], d.tier)] += 1
        if len(r.changes) < KEEP_CHANGES:
            r.changes.append(
                TierChangeView(
                    row[ID],
                    row[EXTERNAL_ID],
                    row[NAME],
                    row[TIER],
                    d.tier,
                    spend,
                    d.reason,
                    kind,
                    score_,
                )
            )
        self.log_rows.append(
            {
                "customer_id": row[ID],
                "from_tier": row[TIER],
                "to_tier": d.tier,
                "spend_12m": spend,
                "reason": d.reason[:200],
                "changed_at": self.now,
                "kind": kind,
                "score": score_,
                "details": None if values is None else _details(values),
                "notice": notice_for(kind, row[TIER], d.tier, self.policy),
            }
        )

    async def flush(self) -> None:
        # Straight to the driver: at a million rows SQLAlchemy's per-row bind processing
        # costs more than SQLite's work. Values are converted once here instead.
        conn = await self.session.connection()
        dialect = conn.dialect
        now = _db_time(self.now, dialect.name)
        if dialect.name == "postgresql" and (self.grade_rows or self.score_rows):
            await self._flush_pg(conn, now)
        if self.grade_rows:
            await conn.exec_driver_sql(
                _sql(
                    dialect.paramstyle,
                    "UPDATE customers SET tier = {}, score = {}, spend_12m = {}, below_count = {},"
                    " below_since = {}, scored_at = {}, updated_at = {} WHERE id = {}",
                ),
                [
                    (
                        tier,
                        score_,
                        spend,
                        count,
                        None if since is None else _db_time(since, dialect.name),
                        now if scored else None,
                        now,
                        id_,
                    )
                    for id_, tier, score_, spend, count, since, scored in self.grade_rows
                ],
            )
            self.grade_rows = []
        if self.score_rows:
            await conn.exec_driver_sql(
                _sql(
                    dialect.paramstyle,
                    "UPDATE customers SET score = {}, spend_12m = {} WHERE id = {}",
                ),
                [(score_, spend, id_) for id_, score_, spend in self.score_rows],
            )
            self.score_rows = []
        if self.log_rows:
            cols = list(self.log_rows[0])
            await conn.exec_driver_sql(
                _sql(
                    dialect.paramstyle,
                    f"INSERT INTO tier_changes ({', '.join(cols)}) VALUES "
                    f"({', '.join('{}' for _ in cols)})",
                ),
                [
                    tuple(
                        now if c == "changed_at" else r[c]  # all changes of a run share a time
                        for c in cols
                    )
                    for r in self.log_rows
                ],
            )
            self.log_rows = []

    async def _flush_pg(self, conn: AsyncConnection, now: Any) -> None:
        """PostgreSQL: a batch's customer updates as one ``UPDATE ... FROM unnest(arrays)``
        instead of one statement per customer (each a round of parse, plan and index
        look-up in the server): the same rows and values, one statement."""
        if self.grade_rows:
            ids, tiers, scores, spends, counts, sinces, scored = (
                list(col) for col in zip(*self.grade_rows, strict=True)
            )
            await conn.exec_driver_sql(
                "UPDATE customers AS c SET tier = v.tier, score = v.score, spend_12m = v.spend,"
                " below_count = v.below_count, below_since = v.below_since,"
                " scored_at = CASE WHEN v.scored THEN $8::timestamptz END,"
                " updated_at = $8::timestamptz"
                " FROM unnest($1::integer[], $2::varchar[], $3::float8[], $4::float8[],"
                " $5::integer[], $6::timestamptz[], $7::boolean[])"
                " AS v(id, tier, score, spend, below_count, below_since, scored)"
                " WHERE c.id = v.id",
                (
                    ids,
                    tiers,
                    scores,
                    spends,
                    counts,
                    [None if t is None else _db_time(t, "postgresql") for t in sinces],
                    [bool(x) for x in scored],
                    now,
                ),
            )
            self.grade_rows = []
        if self.score_rows:
            ids, scores, spends = (list(col) for col in zip(*self.score_rows, strict=True))
            await conn.exec_driver_sql(
                "UPDATE customers AS c SET score = v.score, spend_12m = v.spend"
                " FROM unnest($1::integer[], $2::float8[], $3::float8[]) AS v(id, score, spend)"
                " WHERE c.id = v.id",
                (ids, scores, spends),
            )
            self.score_rows = []


def _sql(paramstyle: str, template: str) -> str:
    n = template.count("{}")
    if paramstyle == "qmark":
        marks = ["?"] * n
    elif paramstyle == "numeric_dollar":
        marks = [f"${i}" for i in range(1, n + 1)]
    elif paramstyle == "numeric":
        marks = [f":{i}" for i in range(1, n + 1)]
    elif paramstyle == "format":
        marks = ["%s"] * n
    else:  # pragma: no cover - no supported driver uses it
        raise NotImplementedError(paramstyle)
    return template.format(*marks)


def _db_time(value: datetime, dialect_name: str) -> Any:
    """What ``UtcDateTime`` would bind: naive UTC text on SQLite, aware UTC elsewhere."""
    value = value.astimezone(UTC)
    if dialect_name == "sqlite":
        return sqlite_text(value)
    return value


def notice_for(kind: str, from_tier: str, to_tier: str, policy: Policy) -> str:
    """Whether a tier change is to be announced: "pending" (the notice sweep sends it, see
    ``routing.scoring.tier_notices``) or "none". First gradings are never announced."""
    if kind == scoring.INITIAL:
        return "none"
    up = policy.rank(to_tier) < policy.rank(from_tier)
    top = policy.tiers[0].name
    if (up and policy.scoring.messages.upgrade) or top in (from_tier, to_tier):
        return "pending"
    return "none"


async def _batches(
    session: AsyncSession, stmt: Select[Any], customer_ids: Sequence[int] | None
) -> Any:
    """Yield the rows of ``stmt`` a keyset batch of customers at a time."""
    c = _C.c
    if customer_ids is not None:
        rows = (await session.execute(stmt.where(c.id.in_(list(customer_ids))))).all()
        if rows:
            yield rows
        return
    conn = await session.connection()
    if conn.dialect.name == "sqlite":
        async for rows in _sqlite_batches(session, stmt):
            yield rows
        return
    last = 0
    while True:
        hi = (
            await session.execute(
                select(c.id)
                .where(c.id > last, c.is_guest.is_(False))
                .order_by(c.id)
                .offset(BATCH - 1)
                .limit(1)
            )
        ).scalar_one_or_none()
        window = c.id > last if hi is None else and_(c.id > last, c.id <= hi)
        rows = (await session.execute(stmt.where(window).order_by(c.id))).all()
        if rows:
            yield rows
        if hi is None:
            return
        last = hi


async def _sqlite_batches(session: AsyncSession, stmt: Select[Any]) -> Any:
    """SQLite: the same keyset batches, read one batch ahead.

    aiosqlite runs SQLite in its own thread, which drops the GIL while SQLite works: asking
    for batch k+1 before grading batch k in Python overlaps the two (about halving a full
    rescore on two cores). Reads and our writes share the one connection and its queue, so
    they stay in order inside the transaction; a batch never reads rows another batch writes.
    """
    c = _C.c
    conn = await session.connection()
    lo, hi = bindparam("b_lo", 0, type_=Integer()), bindparam("b_hi", 0, type_=Integer())
    compiled = (
        stmt.where(c.id > lo, c.id <= hi)
        .order_by(c.id)
        .compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    )
    sql = str(compiled)
    names = list(compiled.positiontup or ())
    fixed = {
        k: _db_time(v, "sqlite") if isinstance(v, datetime) else v
        for k, v in compiled.params.items()
    }
    next_id = "SELECT id FROM customers WHERE id > ? AND is_guest = 0 ORDER BY id LIMIT 1 OFFSET ?"
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None

    async def fetch(last: int) -> tuple[list[Any], int | None]:
        found = await raw.execute_fetchall(next_id, (last, BATCH - 1))
        top = found[0][0] if found else None
        params = {**fixed, "b_lo": last, "b_hi": top if top is not None else 2**62}
        rows = await raw.execute_fetchall(sql, [params[n] for n in names])
        return [_sqlite_row(r) for r in rows], top

    pending = asyncio.ensure_future(fetch(0))
    try:
        while True:
            rows, top = await pending
            if top is not None:
                pending = asyncio.ensure_future(fetch(top))
            if rows:
                yield rows
            if top is None:
                return
    finally:
        if not pending.done():
            pending.cancel()


def _sqlite_row(r: Any) -> Any:
    """Raw SQLite rows hold ``below_since`` as text: make it the aware datetime
    ``UtcDateTime`` would give (rare: only customers held above their band)."""
    if r[BELOW_SINCE] is None:
        return r
    r = list(r)
    r[BELOW_SINCE] = datetime.fromisoformat(r[BELOW_SINCE]).replace(tzinfo=UTC)
    return r


async def percentile_cutoffs(session: AsyncSession, policy: Policy) -> tuple[float | None, ...]:
    """Per-tier minimum scores over the stored scores of all (non-guest) customers."""
    c = _C.c
    n = (
        await session.execute(select(func.count()).select_from(_C).where(c.is_guest.is_(False)))
    ).scalar_one()
    out: list[float | None] = []
    for k in scoring.cut_positions(n, policy):
        if k is None:
            out.append(None)
            continue
        out.append(
            (
                await session.execute(
                    select(c.score)
                    .where(c.is_guest.is_(False))
                    .order_by(c.score.desc())
                    .offset(k - 1)
                    .limit(1)
                )
            ).scalar_one()
        )
    return tuple(out)


async def _last_cutoffs(session: AsyncSession, policy: Policy) -> tuple[float | None, ...]:
    last = (
        await session.execute(
            select(ScoringRun.cutoffs)
            .where(ScoringRun.mode == "percentile", ScoringRun.cutoffs.is_not(None))
            .order_by(ScoringRun.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if last is not None:
        cuts = tuple(json.loads(last))
        if len(cuts) == len(policy.tiers) - 1:
            return cuts
    return await percentile_cutoffs(session, policy)


async def rescore(
    session: AsyncSession,
    policy: Policy,
    now: datetime,
    *,
    customer_ids: Sequence[int] | None = None,
    trigger: str = "cli",
    released: bool = False,
) -> RescoreResult:
    """Recompute scores and tiers of every imported customer (or of ``customer_ids``),
    apply overrides and hysteresis, and record every tier change.

    Runs in the caller's transaction. A full run is recorded in ``scoring_runs``; a partial
    one (a survey answer) in percentile mode grades against the last full run's cutoffs.
    A full run on SQLite uses the bulk connection settings (``routing.store.bulk``).
    """
    if customer_ids is None:
        async with bulk_settings(session):
            return await _rescore(session, policy, now, None, trigger, released)
    return await _rescore(session, policy, now, customer_ids, trigger, released)


async def _rescore(
    session: AsyncSession,
    policy: Policy,
    now: datetime,
    customer_ids: Sequence[int] | None,
    trigger: str,
    released: bool,
) -> RescoreResult:
    started = time.perf_counter()
    now_days = to_epoch_days(now)
    stmt = facts_query(policy, now)
    w = _Writer(session, policy, now, released=released)
    percentile = policy.scoring.mode == "percentile"
    cutoffs: tuple[float | None, ...] = ()
    if percentile and customer_ids is not None:
        cutoffs = await _last_cutoffs(session, policy)

    if percentile and customer_ids is None:
        # Pass one: scores only.
        fast = FastGrader(policy, now, now_days)
        async for rows in _batches(session, stmt, None):
            changed = w.score_rows
            for row in rows:
                s, spend = fast.score(row)[:2]
                if s != row[SCORE] or spend != row[SPEND]:
                    changed.append((row[ID], s, spend))
            await w.flush()
        cutoffs = await percentile_cutoffs(session, policy)
        # Pass two: grade the stored scores; no orders needed.
        fast = FastGrader(policy, now, now_days, cutoffs)
        async for rows in _batches(session, _state_query(), None):
            for row in rows:
                kept = fast.unchanged(row, fast.model_rank(row[SCORE], 0.0, 0, 0))
                if kept is None:
                    model = scoring.grade_percentile(row[SCORE], cutoffs, policy)
                    d = scoring.decide(_state(row), model, policy, now)
                    w.record(row, row[SCORE], row[SPEND], d, None, bool(row[HAS_DATA]))
                else:
                    w.keep(row, row[SCORE], row[SPEND], *kept, bool(row[HAS_DATA]))
            await w.flush()
    else:
        fast = FastGrader(policy, now, now_days, cutoffs)
        async for rows in _batches(session, stmt, customer_ids):
            _grade_rows(w, fast, rows, now_days, policy, cutoffs, now)
            await w.flush()

    result = w.result
    result.cutoffs = cutoffs
    result.seconds = time.perf_counter() - started
    if customer_ids is None:
        session.add(
            ScoringRun(
                trigger=trigger,
                mode=policy.scoring.mode,
                started_at=now,
                finished_at=now + timedelta(seconds=result.seconds),
                customers=result.customers,
                changes=result.change_count,
                cutoffs=json.dumps(list(cutoffs)) if percentile else None,
            )
        )
    else:
        # Customers the caller holds as objects must not keep their old tier.
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Customer) and obj.id in customer_ids:
                await session.refresh(obj)
    await session.flush()
    return result


def _grade_rows(
    w: _Writer,
    fast: FastGrader,
    rows: Sequence[Any],
    now_days: float,
    policy: Policy,
    cutoffs: Sequence[float | None],
    now: datetime,
) -> None:
    """Grade a batch: the fast path for customers who keep their tier, the model itself
    (reasons, explanation) for the few who change."""
    for row in rows:
        s, spend, orders, categories, complaints = fast.score(row)
        kept = fast.unchanged(row, fast.model_rank(s, spend, orders, categories))
        if kept is None:
            _grade_row(w, row, now_days, policy, cutoffs, now)
            continue
        # The same test as ``_grade_row``'s, on the same facts.
        has_data = (
            int(row[ORDERS_TOTAL] or 0) > 0 or row[SATISFACTION] is not None or complaints > 0
        )
        w.keep(row, s, spend, kept[0], kept[1], kept[2], has_data)


def _grade_row(
    w: _Writer,
    row: Any,
    now_days: float,
    policy: Policy,
    cutoffs: Sequence[float | None],
    now: datetime,
) -> None:
    facts = facts_from_row(row, now_days, policy)
    values = scoring.dimension_values(facts, policy)
    s = scoring.total(values, policy)
    model: Grade = scoring.model_grade(facts, s, policy, cutoffs)
    d = scoring.decide(_state(row), model, policy, now)
    has_data = facts.orders_total > 0 or facts.satisfaction is not None or facts.complaints > 0
    w.record(row, s, facts.spend, d, values if d.kind is not None else None, has_data)


async def rescore_customer(
    session: AsyncSession, customer_id: int, policy: Policy, now: datetime
) -> RescoreResult:
    """Rescore one customer now (after a survey answer, say)."""
    return await rescore(session, policy, now, customer_ids=[customer_id])


# --- One customer: override, explanation, history --------------------------------------
