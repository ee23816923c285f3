"""Reminders that reach the agent: claimed under a lease, confirmed once Telegram took them.

:func:`routing.care.tasks.due_reminders` claims a task's reminder once per
``remind_every_hours`` by stamping ``reminded_at``. A claim committed before the message is
sent would lose the reminder for a whole interval if the send then failed or the process
died. So the claim here is a *lease*: ``reminded_at`` is set to an instant that makes the
task due again ``lease`` after the claim (``now - remind_every + lease``), and only
:func:`confirm`, called once the message went out, stamps the claim's instant. A reminder
whose send failed (Telegram down past the sender's retry window, 429s throughout) or whose
process died is simply not confirmed: the sweep after the lease sends it again. No schema is
needed for it, and the "once per interval across instances" rule of the claim is kept.

Claiming ends a snooze that has run out (``snoozed_until`` is cleared): the snooze has been
honoured, and a cleared value keeps the lease's instant from looking "reminded before the
snooze ended" (which would have it claimed again at the very next sweep).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.care import tasks
from routing.care.tasks import PENDING, Reminder
from routing.policy.root import Policy
from routing.store.care_models import CARE_SNOOZED, CareTask
from routing.store.models import Agent, Customer


def leased_until(now: datetime, policy: Policy, lease: timedelta) -> datetime:
    """The ``reminded_at`` a claim at ``now`` writes: due again ``lease`` later."""
    return now - timedelta(hours=policy.care.remind_every_hours) + lease


def recipients(task: CareTask, agents: list[Agent], policy: Policy) -> list[Agent]:
    """Whom to remind: the assignee; for a pool task the pool, else the supervisors
    (the rule of :func:`routing.care.tasks.due_reminders`)."""
    if task.agent_id is not None:
        owner = next((a for a in agents if a.id == task.agent_id), None)
        if owner is not None:
            return [owner]
    return tasks.pool(agents, policy) or [a for a in agents if a.role == "supervisor"]


async def _lease(
    session: AsyncSession, ids: list[int], now: datetime, policy: Policy, lease: timedelta
) -> None:
    if ids:
        await session.execute(
            update(CareTask)
            .where(CareTask.id.in_(ids))
            .values(reminded_at=leased_until(now, policy, lease), snoozed_until=None)
        )


async def claim_due(
    session: AsyncSession, now: datetime, policy: Policy, lease: timedelta
) -> list[Reminder]:
    """The reminders to send now (every due task's, once per interval), under a lease."""
    due = await tasks.due_reminders(session, now, policy)
    await _lease(session, [r.task.id for r in due], now, policy, lease)
    return due


async def claim_new(
    session: AsyncSession, task_id: int, now: datetime, policy: Policy, lease: timedelta
) -> Reminder | None:
    """A task created just now (a detractor answer, a complaint) reminded at once, without
    waiting for the sweep: its reminder, under a lease, or None if it is not due, was
    reminded already, or care is off."""
    if not policy.care.enabled:
        return None
    won = (
        await session.execute(
            update(CareTask)
            .where(
                CareTask.id == task_id,
                CareTask.status.in_(PENDING),
                CareTask.status != CARE_SNOOZED,
                CareTask.reminded_at.is_(None),
                CareTask.due_at <= now,
            )
            .values(reminded_at=leased_until(now, policy, lease))
            .returning(CareTask.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return None
    row = (
        await session.execute(
            select(CareTask, Customer)
            .join(Customer, Customer.id == CareTask.customer_id)
            .where(CareTask.id == task_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    task, customer = row
    return Reminder(task, customer, recipients(task, await tasks.active_agents(session), policy))


async def confirm(
    session: AsyncSession,
    task_ids: list[int],
    claimed_at: datetime,
    policy: Policy,
    lease: timedelta,
) -> int:
    """The reminders claimed at ``claimed_at`` went out: the next one is due
    ``remind_every_hours`` after the claim. A task claimed again meanwhile (its lease ran
    out) or acted on keeps what it has. Returns how many were confirmed."""
    if not task_ids:
        return 0
    done = await session.execute(
        update(CareTask)
        .where(
            CareTask.id.in_(task_ids),
            CareTask.reminded_at == leased_until(claimed_at, policy, lease),
        )
        .values(reminded_at=claimed_at)
        .returning(CareTask.id)
    )
    return len(done.all())
