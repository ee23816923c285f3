"""What a complaint case weighs in the customer's score, by where it stands.

A case contributes ``weight(status, outcome) * severity`` to the customer's ``complaints``
figure (the score's complaints dimension), decayed from the day it was opened like every
complaint (``routing.scoring.satisfaction.case_contribution``). The case row keeps its
current weight; on every change of state :func:`reweigh` moves the customer's figure by the
difference (decayed to now) and rescores them, so the figure stays the sum of its parts:
an unresolved or reopened case weighs more than one resolved, and that more than one the
customer confirmed was resolved to their satisfaction (the policy enforces the order).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.scoring.rescoring import RescoreResult
from routing.scoring.satisfaction import adjust_complaints, case_contribution
from routing.store.care_models import COMPLAINT_REOPENED, COMPLAINT_RESOLVED, Complaint

# Follow-up outcomes (complaints.outcome).
SATISFIED = "satisfied"
UNSATISFIED = "unsatisfied"

# Keys of [complaints.weights].
W_OPEN = "open"
W_RESOLVED = "resolved"
W_SATISFIED = "satisfied"
W_UNSATISFIED = "unsatisfied"
W_REOPENED = "reopened"


def weight_key(status: str, outcome: str | None) -> str:
    """Which ``[complaints.weights]`` entry applies to a case in this state (pure)."""
    if status == COMPLAINT_REOPENED:
        return W_REOPENED
    if status == COMPLAINT_RESOLVED:
        if outcome == SATISFIED:
            return W_SATISFIED
        if outcome == UNSATISFIED:
            return W_UNSATISFIED
        return W_RESOLVED
    return W_OPEN  # open or acknowledged: not resolved yet


def case_weight(status: str, outcome: str | None, severity: float, policy: Policy) -> float:
    """The case's weight before decay: the state's weight times the category's severity."""
    return float(getattr(policy.complaints.weights, weight_key(status, outcome))) * severity


async def reweigh(
    session: AsyncSession, complaint: Complaint, now: datetime, policy: Policy
) -> RescoreResult | None:
    """Bring the case's weight in line with its state; if it changed, move the customer's
    complaint figure by the difference and rescore them. None when nothing changed."""
    new = case_weight(complaint.status, complaint.outcome, complaint.severity, policy)
    old = complaint.weight
    if new == old:
        return None
    complaint.weight = new
    await session.flush()
    delta = case_contribution(new - old, complaint.opened_at, now, policy)
    return await adjust_complaints(session, complaint.customer_id, delta, now, policy)
