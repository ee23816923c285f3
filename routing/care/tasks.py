"""Care tasks: a visit or call an agent owes a customer, and what happens to it.

A task belongs to the customer's account manager when ``account_manager`` names an active
agent, else to the pool (``agent_id`` NULL): ``[care] pool`` agents are reminded of it, or
the supervisors when the pool is empty, and whoever acts on it first takes it. Transitions
are conditional UPDATEs, so two presses (or two agents) change a task once:

    open --start--> started --done--> done
    open --snooze--> snoozed (until) --(snooze ends: reminded again)--> ...

Creation is guarded twice by the database: ``dedupe_key`` (unique) names the trigger or
cadence period, so one is never turned into two tasks however many sweeps run at once; and
``uq_care_tasks_pending`` keeps one pending task per customer and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.store.care_models import CARE_DONE, CARE_OPEN, CARE_SNOOZED, CARE_STARTED, CareTask
from routing.store.managers import find_manager
from routing.store.models import Agent, Customer

CADENCE = "cadence"
SCORE_DROP = "score_drop"
DOWNGRADE_PENDING = "downgrade_pending"
DETRACTOR = "detractor"
COMPLAINT = "complaint"
REASONS = (CADENCE, SCORE_DROP, DOWNGRADE_PENDING, DETRACTOR, COMPLAINT)
PENDING = (CARE_OPEN, CARE_SNOOZED, CARE_STARTED)


async def active_agents(session: AsyncSession) -> list[Agent]:
    return list(
        (
            await session.execute(select(Agent).where(Agent.active.is_(True)).order_by(Agent.id))
        ).scalars()
    )


def assignee(agents: list[Agent], customer: Customer) -> int | None:
    """The customer's account manager among ``agents``, else None (the pool)."""
    manager = find_manager(agents, customer.account_manager)
    return None if manager is None else manager.id


def pool(agents: list[Agent], policy: Policy) -> list[Agent]:
    """The ``[care] pool`` agents among ``agents``, in the policy's order, once each."""
    found: list[Agent] = []
    for ref in policy.care.pool:
        agent = find_manager(agents, ref)  # the same reading: a Telegram id or a name
        if agent is not None and agent not in found:
            found.append(agent)
    return found


async def create(
    session: AsyncSession,
    customer: Customer,
    reason: str,
    *,
    due_at: datetime,
    dedupe_key: str,
    now: datetime,
    agents: list[Agent] | None = None,
    detail: str | None = None,
) -> CareTask | None:
    """A new task, or None when the key was used before or the customer already has a
    pending task for this reason (another sweep, another instance)."""
    if reason not in REASONS:
        raise ValueError(f"unknown care reason {reason!r}")
    if agents is None:
        agents = await active_agents(session)
    task = CareTask(
        customer_id=customer.id,
        agent_id=assignee(agents, customer),
        reason=reason,
        status=CARE_OPEN,
        due_at=due_at,
        created_at=now,
        dedupe_key=dedupe_key[:128],
        detail=detail,
    )
    try:
        async with session.begin_nested():
            session.add(task)
    except IntegrityError:
        return None
    return task


class Outcome(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    NOT_YOURS = "not_yours"  # assigned to another agent (a supervisor may act on any)
    NOT_NOW = "not_now"  # done already, or not in a state this action applies to


@dataclass(frozen=True)
class TaskResult:
    outcome: Outcome
    task: CareTask | None = None


def may_act(task: CareTask, agent: Agent) -> bool:
    """The assignee, anyone on a pool task, or a supervisor."""
    return task.agent_id is None or task.agent_id == agent.id or agent.role == "supervisor"


async def _transition(
    session: AsyncSession,
    task_id: int,
    agent: Agent,
    states: tuple[str, ...],
    values: dict[str, object],
) -> TaskResult:
    task = await session.get(CareTask, task_id, populate_existing=True)
    if task is None:
        return TaskResult(Outcome.UNKNOWN)
    if not may_act(task, agent):
        return TaskResult(Outcome.NOT_YOURS, task)
    won = (
        await session.execute(
            update(CareTask)
            .where(CareTask.id == task_id, CareTask.status.in_(states))
            # A pool task becomes the agent's who acts on it.
            .values(agent_id=func.coalesce(CareTask.agent_id, agent.id), **values)
            .returning(CareTask.id)
        )
    ).scalar_one_or_none()
    await session.refresh(task)
    return TaskResult(Outcome.OK if won is not None else Outcome.NOT_NOW, task)


async def start(
    session: AsyncSession, task_id: int, agent: Agent, conversation_id: int, now: datetime
) -> TaskResult:
    """*Start chat*: the outbound conversation the bot opened for the task is linked."""
    values = {
        "status": CARE_STARTED,
        "started_at": now,
        "conversation_id": conversation_id,
        "snoozed_until": None,
    }
    return await _transition(session, task_id, agent, (CARE_OPEN, CARE_SNOOZED), values)


async def done(
    session: AsyncSession, task_id: int, agent: Agent, note: str | None, now: datetime
) -> TaskResult:
    """*Done*, with the agent's note on how it went."""
    values = {"status": CARE_DONE, "done_at": now, "outcome": (note or "").strip()[:4000] or None}
    return await _transition(session, task_id, agent, PENDING, values)


async def snooze(
    session: AsyncSession,
    task_id: int,
    agent: Agent,
    now: datetime,
    policy: Policy,
    until: datetime | None = None,
) -> TaskResult:
    """*Snooze*: not before ``until`` (default ``[care] snooze_hours`` from now)."""
    until = until or now + timedelta(hours=policy.care.snooze_hours)
    if until <= now:
        raise ValueError("a snooze ends in the future")
    values = {"status": CARE_SNOOZED, "snoozed_until": until}
    return await _transition(session, task_id, agent, (CARE_OPEN, CARE_SNOOZED), values)


def _awake(now: datetime) -> ColumnElement[bool]:
    return or_(CareTask.snoozed_until.is_(None), CareTask.snoozed_until <= now)


async def overdue(
    session: AsyncSession, now: datetime, *, agent_id: int | None = None
) -> list[tuple[CareTask, Customer]]:
    """Tasks past their due instant and not done (a running snooze hides one), oldest due
    first; of one agent when ``agent_id`` is given."""
    stmt = (
        select(CareTask, Customer)
        .join(Customer, Customer.id == CareTask.customer_id)
        .where(CareTask.status.in_(PENDING), CareTask.due_at <= now, _awake(now))
        .order_by(CareTask.due_at, CareTask.id)
    )
    if agent_id is not None:
        stmt = stmt.where(CareTask.agent_id == agent_id)
    return [(t, c) for t, c in (await session.execute(stmt)).all()]


async def pending(
    session: AsyncSession, *, agent_id: int | None, limit: int = 50
) -> list[tuple[CareTask, Customer]]:
    """Pending tasks of an agent (``agent_id``), or of the pool (None), by due instant."""
    owner = CareTask.agent_id.is_(None) if agent_id is None else CareTask.agent_id == agent_id
    rows = await session.execute(
        select(CareTask, Customer)
        .join(Customer, Customer.id == CareTask.customer_id)
        .where(CareTask.status.in_(PENDING), owner)
        .order_by(CareTask.due_at, CareTask.id)
        .limit(limit)
    )
    return [(t, c) for t, c in rows.all()]


@dataclass(frozen=True)
class Reminder:
    task: CareTask
    customer: Customer
    # Whom to remind: the assignee; for a pool task the pool, else the supervisors.
    recipients: list[Agent]


async def due_reminders(session: AsyncSession, now: datetime, policy: Policy) -> list[Reminder]:
    """Claim the tasks to remind someone of now and say whom: due, not done, not snoozed,
    not reminded within ``remind_every_hours`` (a snooze that ended is reminded at once).

    The claim (``reminded_at``) is one UPDATE: a task is reminded by one sweep even with
    several instances. A snoozed task whose snooze ended is open again."""
    if not policy.care.enabled:
        return []
    cutoff = now - timedelta(hours=policy.care.remind_every_hours)
    claimed = (
        await session.execute(
            update(CareTask)
            .where(
                CareTask.status.in_(PENDING),
                CareTask.due_at <= now,
                _awake(now),
                or_(
                    CareTask.reminded_at.is_(None),
                    CareTask.reminded_at <= cutoff,
                    and_(
                        CareTask.snoozed_until.is_not(None),
                        CareTask.reminded_at < CareTask.snoozed_until,
                    ),
                ),
            )
            .values(
                reminded_at=now,
                status=case(
                    (CareTask.status == CARE_SNOOZED, literal(CARE_OPEN)),
                    else_=CareTask.status,
                ),
            )
            .returning(CareTask.id)
        )
    ).scalars()
    ids = list(claimed)
    if not ids:
        return []
    agents = await active_agents(session)
    by_id = {a.id: a for a in agents}
    fallback = pool(agents, policy) or [a for a in agents if a.role == "supervisor"]
    rows = await session.execute(
        select(CareTask, Customer)
        .join(Customer, Customer.id == CareTask.customer_id)
        .where(CareTask.id.in_(ids))
        .order_by(CareTask.due_at, CareTask.id)
        .execution_options(populate_existing=True)
    )
    out = []
    for task, customer in rows.all():
        owner = by_id.get(task.agent_id) if task.agent_id is not None else None
        out.append(Reminder(task, customer, [owner] if owner is not None else fallback))
    return out
