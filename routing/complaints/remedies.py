"""Handling a case to its end: the remedy an agent records, and the resolution.

``/remedy KIND [amount] [note]``: the kind must be one of ``[complaints] remedies``; the
amount is optional money in the currency's main unit (``25``, ``25.50``, ``25,50``), kept
in cents. A case may get several remedies (each on the timeline; the row keeps the last).
Resolution is a state of the case, never a side effect of closing its chat; it schedules
the follow-up (``routing.complaints.follow_up``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import cases, events, follow_up, sla
from routing.complaints.cases import ComplaintError
from routing.complaints.weights import reweigh
from routing.policy.root import Policy
from routing.scoring.rescoring import RescoreResult
from routing.store.care_models import COMPLAINT_RESOLVED, COMPLAINT_UNRESOLVED, Complaint
from routing.store.models import Survey

_AMOUNT = re.compile(r"^\d{1,9}(?:[.,]\d{1,2})?$")


class RemedyError(ComplaintError):
    pass


@dataclass(frozen=True)
class Remedy:
    kind: str
    amount_cents: int | None = None
    note: str | None = None


def check_kind(kind: str, policy: Policy) -> str:
    """The policy's spelling of a remedy kind (any case), else RemedyError listing them."""
    kinds = policy.complaints.remedies
    match = next((k for k in kinds if k.casefold() == kind.strip().casefold()), None)
    if match is None:
        raise RemedyError(f'no remedy kind "{kind}" (kinds: {", ".join(kinds)})')
    return match


def parse_amount(text: str) -> int | None:
    """``25`` / ``25.5`` / ``25,50`` -> cents; None if ``text`` is not an amount."""
    if not _AMOUNT.match(text):
        return None
    try:
        return int(Decimal(text.replace(",", ".")) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None


def parse_remedy(args: str, policy: Policy) -> Remedy:
    """``KIND [amount] [note]`` as an agent types it after ``/remedy``."""
    words = args.split(maxsplit=2)
    if not words:
        raise RemedyError(f"which remedy? (kinds: {', '.join(policy.complaints.remedies)})")
    kind = check_kind(words[0], policy)
    rest = words[1:]
    amount = parse_amount(rest[0]) if rest else None
    if amount is not None:
        rest = rest[1:]
    note = " ".join(rest).strip() or None
    return Remedy(kind, amount, note)


def format_amount(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


async def record_remedy(
    session: AsyncSession,
    complaint_id: int,
    remedy: Remedy,
    now: datetime,
    policy: Policy,
    *,
    agent_id: int | None = None,
) -> Complaint:
    """Record a remedy on the case (any status: a voucher may follow the resolution)."""
    kind = check_kind(remedy.kind, policy)
    if remedy.amount_cents is not None and remedy.amount_cents < 0:
        raise RemedyError("an amount cannot be negative")
    complaint = await cases.get(session, complaint_id)
    complaint.remedy_kind = kind
    complaint.remedy_amount_cents = remedy.amount_cents
    complaint.remedy_note = remedy.note
    complaint.remedied_at = now
    detail = kind
    if remedy.amount_cents is not None:
        detail += f" {format_amount(remedy.amount_cents)}"
    if remedy.note:
        detail += f": {remedy.note}"
    await events.add(session, complaint, events.REMEDY, now, agent_id=agent_id, detail=detail)
    return complaint


@dataclass(frozen=True)
class Resolved:
    complaint: Complaint
    follow_up: Survey  # the question's row in the survey outbox
    rescore: RescoreResult | None


async def resolve(
    session: AsyncSession,
    complaint_id: int,
    now: datetime,
    policy: Policy,
    *,
    agent_id: int | None = None,
    note: str | None = None,
) -> Resolved | None:
    """Resolve the case (None if it is not open): the resolved weight, a late target on
    record as a breach, and the follow-up written to the survey outbox."""
    values: dict[str, object] = {
        "status": COMPLAINT_RESOLVED,
        "resolved_at": now,
        # Resolving answers the customer too: an unacknowledged case is acknowledged now.
        "acknowledged_at": func.coalesce(
            Complaint.acknowledged_at, literal(now, Complaint.acknowledged_at.type)
        ),
    }
    if agent_id is not None:
        values["agent_id"] = agent_id
    won = (
        await session.execute(
            update(Complaint)
            .where(Complaint.id == complaint_id, Complaint.status.in_(COMPLAINT_UNRESOLVED))
            .values(**values)
            .returning(Complaint.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return None
    complaint = await cases.get(session, complaint_id)
    await events.add(session, complaint, events.RESOLVED, now, agent_id=agent_id, detail=note)
    await sla.record_late(session, complaint, sla.ACKNOWLEDGE, policy)
    await sla.record_late(session, complaint, sla.RESOLVE, policy)
    rescore = await reweigh(session, complaint, now, policy)
    survey = await follow_up.schedule(session, complaint, now, policy)
    return Resolved(complaint, survey, rescore)
