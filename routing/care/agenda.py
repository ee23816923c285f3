"""An agent's care agenda (``/care``): their pending tasks, overdue ones first.

* An agent sees the tasks assigned to them, and the pool's (unassigned) tasks when they are
  in ``[care] pool`` (whoever acts on a pool task first takes it).
* A supervisor sees every pending task, with its assignee.

Overdue means past its due instant, not done, and not snoozed into the future (as
:func:`routing.care.tasks.overdue`); those come first, the longest overdue first, then the
rest by due instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.care import tasks
from routing.care.tasks import PENDING
from routing.policy.root import Policy
from routing.store.care_models import CareTask
from routing.store.models import Agent, Customer


@dataclass(frozen=True)
class Entry:
    task: CareTask
    customer: Customer
    assignee: Agent | None  # None: the pool's
    overdue: bool


@dataclass(frozen=True)
class Agenda:
    entries: list[Entry]
    total: int  # pending tasks shown or not (``entries`` stops at the limit)
    overdue: int  # of the total


def is_overdue(task: CareTask, now: datetime) -> bool:
    awake = task.snoozed_until is None or task.snoozed_until <= now
    return task.status in PENDING and task.due_at <= now and awake


async def agenda(
    session: AsyncSession, agent: Agent, now: datetime, policy: Policy, *, limit: int = 20
) -> Agenda:
    everyone = agent.role == "supervisor"
    agents = await tasks.active_agents(session)
    owners: list[ColumnElement[bool]] = [CareTask.agent_id == agent.id]
    if agent.id in {a.id for a in tasks.pool(agents, policy)}:
        owners.append(CareTask.agent_id.is_(None))
    where: list[ColumnElement[bool]] = [CareTask.status.in_(PENDING)]
    if not everyone:
        where.append(or_(*owners))
    late = and_(
        CareTask.due_at <= now,
        or_(CareTask.snoozed_until.is_(None), CareTask.snoozed_until <= now),
    )
    rows = await session.execute(
        select(CareTask, Customer)
        .join(Customer, Customer.id == CareTask.customer_id)
        .where(*where)
        .order_by(case((late, 0), else_=1), CareTask.due_at, CareTask.id)
        .limit(limit)
    )
    counts = (
        await session.execute(
            select(func.count(), func.count(case((late, 1)))).select_from(CareTask).where(*where)
        )
    ).one()
    by_id = {a.id: a for a in agents}
    entries = [
        Entry(
            task,
            customer,
            by_id.get(task.agent_id) if task.agent_id is not None else None,
            is_overdue(task, now),
        )
        for task, customer in rows.all()
    ]
    return Agenda(entries, int(counts[0]), int(counts[1]))
