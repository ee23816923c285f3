"""Complaint SLA targets: acknowledgement and resolution per tier, warned and breached once.

Each cycle of a case (from open, or from its last reopen) has two targets from
``[complaints.acknowledge]`` / ``[complaints.resolve]`` for the tier frozen at open, stored
on the case as due instants. :func:`evaluate` is the pure rule; :func:`sweep` records each
newly reached warning or breach once in the case's timeline (``events.record_once``) and
returns the alerts for the caller to send after the commit: supervisors for every one, and
for a breached case of a human_first tier the account manager too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from routing.complaints import events
from routing.policy.root import Policy
from routing.store.care_models import COMPLAINT_UNRESOLVED, Complaint, ComplaintEvent
from routing.store.managers import manager_of
from routing.store.models import Agent, Customer

ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"
WARN = events.WARN
BREACH = events.BREACH


def due_dates(
    tier: str, start: datetime, policy: Policy
) -> tuple[datetime | None, datetime | None]:
    """(acknowledge by, resolve by) for a cycle starting at ``start``; None: no target."""
    p = policy.complaints
    ack, res = p.acknowledge_seconds(tier), p.resolve_seconds(tier)
    return (
        None if ack is None else start + timedelta(seconds=ack),
        None if res is None else start + timedelta(seconds=res),
    )


def cycle_start(complaint: Complaint) -> datetime:
    """When the current cycle began: the last reopen, else the open."""
    return complaint.reopened_at or complaint.opened_at


@dataclass(frozen=True)
class Check:
    target: str  # acknowledge | resolve
    level: str  # warn | breach
    elapsed_s: float
    target_s: float
    # Met late, found after the fact (between two sweeps): on record, nobody to page.
    late: bool = False


def evaluate(
    start: datetime,
    ack_due: datetime | None,
    resolve_due: datetime | None,
    acknowledged_at: datetime | None,
    resolved_at: datetime | None,
    now: datetime,
    warn_at: float,
) -> list[Check]:
    """The levels a case's current cycle has reached at ``now`` (pure)."""
    out: list[Check] = []
    for target, due, done_at in (
        (ACKNOWLEDGE, ack_due, acknowledged_at),
        (RESOLVE, resolve_due, resolved_at),
    ):
        if due is None:
            continue
        total = (due - start).total_seconds()
        if done_at is not None:
            if done_at > due:
                out.append(Check(target, BREACH, (done_at - start).total_seconds(), total, True))
            continue
        elapsed = (now - start).total_seconds()
        if now >= due:
            out.append(Check(target, BREACH, elapsed, total))
        elif elapsed >= warn_at * total:
            out.append(Check(target, WARN, elapsed, total))
    return out


def check_case(complaint: Complaint, now: datetime, policy: Policy) -> list[Check]:
    return evaluate(
        cycle_start(complaint),
        complaint.ack_due_at,
        complaint.resolve_due_at,
        complaint.acknowledged_at,
        complaint.resolved_at,
        now,
        policy.complaints.warn_at,
    )


def overdue(now: datetime) -> ColumnElement[bool]:
    """SQL: an unresolved case past a due instant of its current cycle."""
    return and_(
        Complaint.status.in_(COMPLAINT_UNRESOLVED),
        or_(
            and_(Complaint.acknowledged_at.is_(None), Complaint.ack_due_at <= now),
            Complaint.resolve_due_at <= now,
        ),
    )


def breached(now: datetime) -> ColumnElement[bool]:
    """SQL: a case that missed a target: a breach on record (any cycle), or overdue now
    (before the sweep has seen it)."""
    on_record = exists().where(
        ComplaintEvent.complaint_id == Complaint.id, ComplaintEvent.kind == BREACH
    )
    return or_(on_record, overdue(now))


async def record_late(
    session: AsyncSession, complaint: Complaint, target: str, policy: Policy
) -> bool:
    """At acknowledgement or resolution: a target met after its due instant is a breach on
    record (once), even if no sweep ran in between. Returns whether one was recorded."""
    done = complaint.acknowledged_at if target == ACKNOWLEDGE else complaint.resolved_at
    if done is None:
        return False
    for check in check_case(complaint, done, policy):
        if check.target == target and check.late:
            return await events.record_once(
                session, complaint, BREACH, target, done, _detail(check)
            )
    return False


def _detail(check: Check) -> str:
    return f"{check.elapsed_s:.0f} s of {check.target_s:.0f} s"


@dataclass(frozen=True)
class Alert:
    complaint: Complaint
    customer: Customer
    target: str  # acknowledge | resolve
    level: str  # warn | breach
    elapsed_s: float
    target_s: float
    agent: Agent | None  # handling the case, if anyone
    # Page the supervisors (not for a target met late, found after the fact).
    page: bool
    # A breach of a human_first case: its account manager (a registered agent), to page too.
    manager: Agent | None


async def sweep(session: AsyncSession, policy: Policy, now: datetime) -> list[Alert]:
    """Record newly reached warnings and breaches of unresolved cases; return them."""
    rows = (
        await session.execute(
            select(Complaint, Customer)
            .join(Customer, Customer.id == Complaint.customer_id)
            .where(Complaint.status.in_(COMPLAINT_UNRESOLVED))
            .order_by(Complaint.id)
        )
    ).all()
    if not rows:
        return []
    seen = {
        (cid, kind, target, cycle)
        for cid, kind, target, cycle in (
            await session.execute(
                select(
                    ComplaintEvent.complaint_id,
                    ComplaintEvent.kind,
                    ComplaintEvent.target,
                    ComplaintEvent.cycle,
                ).where(
                    ComplaintEvent.complaint_id.in_([c.id for c, _ in rows]),
                    ComplaintEvent.kind.in_((WARN, BREACH)),
                )
            )
        ).all()
    }
    alerts: list[Alert] = []
    for complaint, customer in rows:
        cycle = complaint.reopen_count
        for check in check_case(complaint, now, policy):
            if (complaint.id, check.level, check.target, cycle) in seen:
                continue
            if check.level == WARN and (complaint.id, BREACH, check.target, cycle) in seen:
                continue  # the breach came first (the bot was down): no late warning
            if not await events.record_once(
                session, complaint, check.level, check.target, now, _detail(check)
            ):
                continue  # another instance recorded it first
            agent = await session.get(Agent, complaint.agent_id) if complaint.agent_id else None
            manager = None
            if check.level == BREACH and policy.is_human_first(complaint.tier):
                manager = await manager_of(session, customer.account_manager)
            alerts.append(
                Alert(
                    complaint,
                    customer,
                    check.target,
                    check.level,
                    check.elapsed_s,
                    check.target_s,
                    agent,
                    not check.late,
                    manager,
                )
            )
    return alerts
