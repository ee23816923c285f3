"""A complaint's timeline (``complaint_events``): every change of the case, in order.

Sweeps record a warning or breach with :func:`record_once`: the database's unique index
(``uq_complaint_events_once``: case, kind, target, cycle) decides, so two sweeps at once, on
two instances or after a restart, record (and page) it once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.care_models import Complaint, ComplaintEvent

OPENED = "opened"
ACKNOWLEDGED = "acknowledged"
REMEDY = "remedy"
RESOLVED = "resolved"
REOPENED = "reopened"
FOLLOW_UP = "follow_up"
WARN = "warn"
BREACH = "breach"
NOTE = "note"


async def add(
    session: AsyncSession,
    complaint: Complaint,
    kind: str,
    now: datetime,
    *,
    agent_id: int | None = None,
    detail: str | None = None,
) -> ComplaintEvent:
    """Append an event to the case's timeline, in its current cycle."""
    event = ComplaintEvent(
        complaint_id=complaint.id,
        kind=kind,
        cycle=complaint.reopen_count,
        at=now,
        agent_id=agent_id,
        detail=detail,
    )
    session.add(event)
    await session.flush()
    return event


async def record_once(
    session: AsyncSession,
    complaint: Complaint,
    level: str,
    target: str,
    now: datetime,
    detail: str | None = None,
) -> bool:
    """Record a warning or breach of ``target`` in the current cycle; False if it was
    recorded before (by this sweep's earlier run or by another instance)."""
    try:
        async with session.begin_nested():
            session.add(
                ComplaintEvent(
                    complaint_id=complaint.id,
                    kind=level,
                    target=target,
                    cycle=complaint.reopen_count,
                    at=now,
                    detail=detail,
                )
            )
    except IntegrityError:
        return False
    return True


async def timeline(session: AsyncSession, complaint_id: int) -> list[ComplaintEvent]:
    return list(
        (
            await session.execute(
                select(ComplaintEvent)
                .where(ComplaintEvent.complaint_id == complaint_id)
                .order_by(ComplaintEvent.at, ComplaintEvent.id)
            )
        ).scalars()
    )
