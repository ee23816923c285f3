"""What ``contactbot complaints list|show`` read: cases by status, tier and age, and one
case with its timeline, remedy and follow-up answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import events, sla
from routing.store.care_models import (
    COMPLAINT_RESOLVED,
    COMPLAINT_UNRESOLVED,
    Complaint,
    ComplaintEvent,
)
from routing.store.models import Agent, Customer

StatusFilter = Literal["open", "resolved", "breached"]
STATUS_FILTERS: tuple[StatusFilter, ...] = ("open", "resolved", "breached")


@dataclass(frozen=True)
class CaseRow:
    complaint: Complaint
    external_id: str | None
    name: str | None
    breached: bool  # missed a target (on record, or overdue now)


async def list_complaints(
    session: AsyncSession,
    now: datetime,
    *,
    status: StatusFilter | None = None,
    tier: str | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[CaseRow]:
    """Cases newest first. ``status``: open (not resolved, including reopened), resolved,
    breached (missed an acknowledgement or resolution target, whatever their state now);
    ``tier``: the tier the case was opened in; ``since``: opened at or after."""
    breached = sla.breached(now)
    stmt = (
        select(Complaint, Customer.external_id, Customer.name, breached.label("breached"))
        .join(Customer, Customer.id == Complaint.customer_id)
        .order_by(Complaint.opened_at.desc(), Complaint.id.desc())
        .limit(limit)
    )
    if status == "open":
        stmt = stmt.where(Complaint.status.in_(COMPLAINT_UNRESOLVED))
    elif status == "resolved":
        stmt = stmt.where(Complaint.status == COMPLAINT_RESOLVED)
    elif status == "breached":
        stmt = stmt.where(breached)
    elif status is not None:
        raise ValueError(f"status is one of {', '.join(STATUS_FILTERS)}, got {status!r}")
    if tier is not None:
        stmt = stmt.where(Complaint.tier == tier)
    if since is not None:
        stmt = stmt.where(Complaint.opened_at >= since)
    rows = (await session.execute(stmt)).all()
    return [CaseRow(c, ext, name, bool(b)) for c, ext, name, b in rows]


@dataclass(frozen=True)
class CaseView:
    complaint: Complaint
    customer: Customer
    timeline: Sequence[ComplaintEvent]
    # Names of the agents the case and its timeline mention (by agent id).
    agents: dict[int, str]
    breached: bool


async def show(session: AsyncSession, complaint_id: int, now: datetime) -> CaseView | None:
    """One case: the row (remedy, outcome, rating, weight, due instants), its customer, the
    timeline in order, and whether it missed a target."""
    row = (
        await session.execute(
            select(Complaint, Customer, sla.breached(now))
            .join(Customer, Customer.id == Complaint.customer_id)
            .where(Complaint.id == complaint_id)
        )
    ).one_or_none()
    if row is None:
        return None
    complaint, customer, breached = row
    timeline = await events.timeline(session, complaint_id)
    ids = {e.agent_id for e in timeline if e.agent_id is not None}
    if complaint.agent_id is not None:
        ids.add(complaint.agent_id)
    names: dict[int, str] = {}
    if ids:
        names = dict(
            (await session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(ids)))).all()
        )
    return CaseView(complaint, customer, timeline, names, bool(breached))


async def open_cases(session: AsyncSession, customer_id: int) -> list[Complaint]:
    """The customer's unresolved cases, oldest first (the customer card shows them)."""
    return list((await session.execute(_OPEN_CASES, {"customer_id": customer_id})).scalars())


# Built once (every claim's customer card asks it): see routing/care/card.py.
_OPEN_CASES = (
    select(Complaint)
    .where(
        Complaint.customer_id == bindparam("customer_id"),
        Complaint.status != COMPLAINT_RESOLVED,
    )
    .order_by(Complaint.opened_at, Complaint.id)
)


async def carried_by(session: AsyncSession, conversation_id: int) -> list[Complaint]:
    """The cases a chat carries (``/remedy`` without a case number picks from these)."""
    return list(
        (
            await session.execute(
                select(Complaint)
                .where(Complaint.conversation_id == conversation_id)
                .order_by(Complaint.id)
            )
        ).scalars()
    )


async def case_in_chat(session: AsyncSession, conversation_id: int) -> Complaint | None:
    """The case an agent's ``/remedy`` (or resolve) in this chat means without a number:
    the newest unresolved one it carries, else the newest."""
    carried = await carried_by(session, conversation_id)
    unresolved = [c for c in carried if c.status in COMPLAINT_UNRESOLVED]
    pick = unresolved or carried
    return pick[-1] if pick else None
