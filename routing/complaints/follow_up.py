"""After resolution: "was this resolved to your satisfaction?" (yes / no, then 1-5).

The question is a row in the durable survey outbox (``surveys``, kind ``complaint``, linked
by ``surveys.complaint_id``), written in the resolution's transaction and due
``[complaints] follow_up_delay_minutes`` later: the outbox's frequency cap, quiet hours and
opt-out apply, and a crash loses or doubles nothing. The survey side sends it and, once it
has claimed the answer on the survey row, calls :func:`record_follow_up` and
:func:`record_follow_up_score` here. "No" reopens the case and queues it (at most
``max_reopens`` times; after that the case stays resolved with the unsatisfied weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import cases, events
from routing.complaints.weights import SATISFIED, UNSATISFIED, reweigh
from routing.policy.complaints import local_text
from routing.policy.root import Policy
from routing.store.care_models import COMPLAINT_RESOLVED, Complaint
from routing.store.models import Customer, Survey

KIND = "complaint"  # surveys.kind of a follow-up
RATING = (1, 5)


async def schedule(
    session: AsyncSession, complaint: Complaint, now: datetime, policy: Policy
) -> Survey:
    """Write the follow-up's outbox row for a case just resolved (one per resolution: the
    resolution is a conditional UPDATE that happens once per cycle)."""
    p = policy.complaints
    customer = await session.get(Customer, complaint.customer_id)
    assert customer is not None
    due = now + timedelta(minutes=p.follow_up_delay_minutes)
    survey = Survey(
        kind=KIND,
        customer_id=complaint.customer_id,
        # Not the chat: a reopened case is followed up again, and (conversation, kind) is
        # unique; the case is the link.
        conversation_id=None,
        complaint_id=complaint.id,
        agent_id=complaint.agent_id,
        created_at=now,
        due_at=due,
        expires_at=due + timedelta(hours=p.follow_up_expiry_hours),
        # As for CSAT: a guest's case cannot be asked about (no customer record to reach).
        status="skipped" if customer.is_guest else "scheduled",
        reason="guest" if customer.is_guest else None,
    )
    session.add(survey)
    await session.flush()
    return survey


@dataclass(frozen=True)
class FollowUp:
    recorded: bool  # False: the case is not awaiting an answer (answered, or not resolved)
    complaint: Complaint | None = None
    reopened: cases.Reopened | None = None  # "no" within max_reopens


async def record_follow_up(
    session: AsyncSession, complaint_id: int, satisfied: bool, now: datetime, policy: Policy
) -> FollowUp:
    """The customer's yes / no. Accepted once per resolution; re-weighs the case (satisfied,
    or unsatisfied) and on "no" reopens it while ``max_reopens`` allows."""
    outcome = SATISFIED if satisfied else UNSATISFIED
    won = (
        await session.execute(
            update(Complaint)
            .where(
                Complaint.id == complaint_id,
                Complaint.status == COMPLAINT_RESOLVED,
                or_(
                    Complaint.followed_up_at.is_(None),
                    Complaint.followed_up_at < Complaint.resolved_at,
                ),
            )
            # A new answer asks for a new rating.
            .values(outcome=outcome, followed_up_at=now, follow_up_score=None)
            .returning(Complaint.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return FollowUp(False)
    complaint = await cases.get(session, complaint_id)
    await events.add(session, complaint, events.FOLLOW_UP, now, detail=outcome)
    if not satisfied and complaint.reopen_count < policy.complaints.max_reopens:
        reopened = await cases.reopen(
            session, complaint_id, now, policy, reason="follow-up: not resolved to satisfaction"
        )
        return FollowUp(True, await cases.get(session, complaint_id), reopened)
    await reweigh(session, complaint, now, policy)
    return FollowUp(True, complaint)


async def record_follow_up_score(
    session: AsyncSession, complaint_id: int, score: int, now: datetime
) -> bool:
    """The customer's 1-5 rating of the handling, after their yes / no; once per answer."""
    low, high = RATING
    if not low <= score <= high:
        raise ValueError(f"a rating is {low}-{high}, got {score}")
    won = (
        await session.execute(
            update(Complaint)
            .where(
                Complaint.id == complaint_id,
                Complaint.followed_up_at.is_not(None),
                Complaint.follow_up_score.is_(None),
            )
            .values(follow_up_score=score)
            .returning(Complaint.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return False
    complaint = await cases.get(session, complaint_id)
    await events.add(session, complaint, events.FOLLOW_UP, now, detail=f"rating {score}")
    return True


def texts(complaint: Complaint, language: str | None, policy: Policy) -> dict[str, str]:
    """The follow-up's texts for this case in the customer's language (question, rating,
    thanks, reopened), placeholders filled: what the survey side sends."""
    default = policy.selfservice.default_language
    p = policy.complaints
    cat = p.category(complaint.category)
    label = local_text(cat.label, language, default) if cat else complaint.category
    t = p.follow_up
    return {
        name: local_text(getattr(t, name), language, default).format(
            case=complaint.id, category=label
        )
        for name in ("question", "rating", "thanks", "reopened")
    }
