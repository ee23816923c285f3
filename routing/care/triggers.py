"""When a customer gets a care task: follow-up visits by cadence, and at-risk triggers.

* Cadence (``[care] cadence_days`` per tier): a visit is due ``cadence`` days after the
  later of the last done care task (any reason: a call is a visit), the last agent message
  to the customer, and the customer's creation. The task appears ``due_soon_days`` early.
* At risk, for customers of a human_first tier, at once: the score fell ``score_drop``
  points below the highest seen since their last score-drop task; a downgrade is pending
  (the model has put them below their tier; no override pins them); a detractor answer;
  a complaint.

The checks are pure functions; the sweeps and ``on_*`` creators turn them into tasks with a
dedupe key per trigger or cadence period (``routing.care.tasks.create``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.care import tasks
from routing.policy.root import Policy
from routing.store.care_models import CARE_DONE, CareTask, Complaint
from routing.store.models import Conversation, Customer

# --- pure checks ------------------------------------------------------------------------


def cadence_due(anchor: datetime, cadence_days: float) -> datetime:
    """When the next visit is due after the last contact ``anchor``."""
    return anchor + timedelta(days=cadence_days)


def score_dropped(tier: str, peak: float | None, score: float, policy: Policy) -> bool:
    """A human_first customer whose score is ``score_drop`` or more below ``peak``."""
    drop = policy.care.score_drop
    return drop > 0 and policy.is_human_first(tier) and peak is not None and peak - score >= drop


def downgrade_pending(
    tier: str, below_count: int, tier_override: str | None, policy: Policy
) -> bool:
    """A human_first customer the model has put below their tier (hysteresis is holding
    the downgrade back); a pinned tier goes nowhere."""
    return (
        policy.care.downgrade_pending
        and policy.is_human_first(tier)
        and below_count > 0
        and tier_override is None
    )


def at_risk_on_answer(tier: str, policy: Policy) -> bool:
    """A detractor answer from this tier makes a task."""
    return policy.care.enabled and policy.care.detractor and policy.is_human_first(tier)


def at_risk_on_complaint(tier: str, policy: Policy) -> bool:
    """A complaint from this tier makes a task."""
    return policy.care.enabled and policy.care.complaint and policy.is_human_first(tier)


def _human_first(policy: Policy) -> list[str]:
    return [t.name for t in policy.tiers if t.human_first]


# --- cadence ----------------------------------------------------------------------------


async def sweep_cadence(
    session: AsyncSession, policy: Policy, now: datetime, *, limit: int = 1000
) -> list[CareTask]:
    """Create the cadence tasks due within ``due_soon_days`` (at most ``limit`` per tier
    per run; the next run goes on)."""
    created: list[CareTask] = []
    agents = await tasks.active_agents(session)
    for tier, days in policy.care.cadence_days.items():
        # Due by now + due_soon exactly when the last contact was at or before this.
        cutoff = now + timedelta(days=policy.care.due_soon_days) - timedelta(days=days)
        last_done = (
            select(func.max(CareTask.done_at))
            .where(CareTask.customer_id == Customer.id, CareTask.status == CARE_DONE)
            .scalar_subquery()
        )
        last_agent = (
            select(func.max(Conversation.last_agent_at))
            .where(Conversation.customer_id == Customer.id)
            .scalar_subquery()
        )
        pending = (
            select(CareTask.id)
            .where(
                CareTask.customer_id == Customer.id,
                CareTask.reason == tasks.CADENCE,
                CareTask.status != CARE_DONE,
            )
            .exists()
        )
        rows = await session.execute(
            select(Customer, last_done, last_agent)
            .where(
                Customer.tier == tier,
                Customer.is_guest.is_(False),
                Customer.created_at <= cutoff,
                ~pending,
                or_(last_done.is_(None), last_done <= cutoff),
                or_(last_agent.is_(None), last_agent <= cutoff),
            )
            .order_by(Customer.id)
            .limit(limit)
        )
        for customer, done_at, agent_at in rows.all():
            anchor = max(d for d in (customer.created_at, done_at, agent_at) if d is not None)
            due = cadence_due(anchor, days)
            task = await tasks.create(
                session,
                customer,
                tasks.CADENCE,
                due_at=due,
                # One task per customer and due date: every sweep computes the same one.
                dedupe_key=f"{tasks.CADENCE}:{customer.id}:{due:%Y-%m-%d}",
                now=now,
                agents=agents,
                detail=f"{tier}: a visit every {days:g} days",
            )
            if task is not None:
                created.append(task)
    return created


# --- at risk ----------------------------------------------------------------------------


async def sweep_at_risk(session: AsyncSession, policy: Policy, now: datetime) -> list[CareTask]:
    """Score-drop and pending-downgrade tasks for human_first customers."""
    tiers = _human_first(policy)
    created: list[CareTask] = []
    agents = await tasks.active_agents(session)
    # The peak a fall is measured from: raised to the score; dropped out of human_first.
    await session.execute(
        update(Customer)
        .where(
            Customer.tier.in_(tiers),
            or_(Customer.care_score_ref.is_(None), Customer.score > Customer.care_score_ref),
        )
        .values(care_score_ref=Customer.score)
    )
    await session.execute(
        update(Customer)
        .where(Customer.tier.not_in(tiers), Customer.care_score_ref.is_not(None))
        .values(care_score_ref=None)
    )
    if policy.care.score_drop > 0:
        rows = await session.execute(
            select(Customer).where(
                Customer.tier.in_(tiers),
                Customer.is_guest.is_(False),
                Customer.care_score_ref - Customer.score >= policy.care.score_drop,
            )
        )
        for customer in list(rows.scalars()):
            peak, score = customer.care_score_ref, customer.score
            if not score_dropped(customer.tier, peak, score, policy):
                continue  # pragma: no cover - the query selected exactly these
            # The winner of this UPDATE (one sweep, one instance) makes the task; the next
            # fall is measured from here.
            won = (
                await session.execute(
                    update(Customer)
                    .where(Customer.id == customer.id, Customer.care_score_ref == peak)
                    .values(care_score_ref=score)
                    .returning(Customer.id)
                )
            ).scalar_one_or_none()
            if won is None:
                continue
            task = await tasks.create(
                session,
                customer,
                tasks.SCORE_DROP,
                due_at=now,
                dedupe_key=f"{tasks.SCORE_DROP}:{customer.id}:{now:%Y%m%dT%H%M%S}",
                now=now,
                agents=agents,
                detail=f"score {peak:.1f} -> {score:.1f}",
            )
            if task is not None:
                created.append(task)
    if policy.care.downgrade_pending:
        asked = (
            select(CareTask.id)
            .where(
                CareTask.customer_id == Customer.id,
                CareTask.reason == tasks.DOWNGRADE_PENDING,
                or_(Customer.below_since.is_(None), CareTask.created_at >= Customer.below_since),
            )
            .exists()
        )
        rows = await session.execute(
            select(Customer).where(
                Customer.tier.in_(tiers),
                Customer.is_guest.is_(False),
                Customer.below_count > 0,
                Customer.tier_override.is_(None),
                ~asked,
            )
        )
        for customer in list(rows.scalars()):
            since = customer.below_since or now
            task = await tasks.create(
                session,
                customer,
                tasks.DOWNGRADE_PENDING,
                due_at=now,
                # One per episode below the tier (below_since marks its start).
                dedupe_key=f"{tasks.DOWNGRADE_PENDING}:{customer.id}:{since:%Y%m%dT%H%M%S}",
                now=now,
                agents=agents,
                detail=f"below {customer.tier} {customer.below_count}x since {since:%Y-%m-%d}",
            )
            if task is not None:
                created.append(task)
    return created


async def sweep(session: AsyncSession, policy: Policy, now: datetime) -> list[CareTask]:
    """The care sweep's task creation: cadence, then at-risk triggers."""
    if not policy.care.enabled:
        return []
    return [
        *await sweep_cadence(session, policy, now),
        *await sweep_at_risk(session, policy, now),
    ]


async def on_detractor(
    session: AsyncSession,
    customer_id: int,
    survey_id: int,
    tier: str,
    policy: Policy,
    now: datetime,
) -> CareTask | None:
    """A detractor answer (survey ``survey_id``) from a customer of ``tier`` (the tier they
    answered as): a task at once for a human_first tier."""
    if not at_risk_on_answer(tier, policy):
        return None
    customer = await session.get(Customer, customer_id)
    if customer is None or customer.is_guest:
        return None
    return await tasks.create(
        session,
        customer,
        tasks.DETRACTOR,
        due_at=now,
        dedupe_key=f"{tasks.DETRACTOR}:{survey_id}",
        now=now,
        detail=f"detractor answer (survey #{survey_id})",
    )


async def on_complaint(
    session: AsyncSession, complaint: Complaint, policy: Policy, now: datetime
) -> CareTask | None:
    """A complaint of a human_first customer (the tier it was opened in): a task at once,
    the relationship call beside the case itself."""
    if not at_risk_on_complaint(complaint.tier, policy):
        return None
    customer = await session.get(Customer, complaint.customer_id)
    if customer is None or customer.is_guest:
        return None
    return await tasks.create(
        session,
        customer,
        tasks.COMPLAINT,
        due_at=now,
        dedupe_key=f"{tasks.COMPLAINT}:{complaint.id}",
        now=now,
        detail=f"complaint #{complaint.id} ({complaint.category})",
    )
