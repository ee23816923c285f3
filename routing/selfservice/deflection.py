"""Self-service sessions and the deflection count: sessions that ended without a person.

A session opens at a customer's first self-service step (menu, answer, search) and stays open
while they keep using it. Saying an answer helped ends it as ``resolved``; asking for a
person, as ``handoff``; ``session_minutes`` of quiet, as ``expired`` if it showed an answer,
else ``abandoned`` (they opened the menu and left: nothing was deflected). Deflected =
resolved + expired. Expiry is applied lazily (on the customer's next step, and when
counting), so no sweeper job is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.models import Customer, SelfServiceSession

RESOLVED = "resolved"
HANDOFF = "handoff"
EXPIRED = "expired"
ABANDONED = "abandoned"

# The path keeps the last steps only (an agent reads where the customer ended up).
PATH_STEPS = 8
# A search step in the path; the text searched for is the session's question.
SEARCH = "?"
QUESTION_MAX = 500


# Built once: read at every self-service step.
_OPEN = (
    select(SelfServiceSession)
    .where(
        SelfServiceSession.customer_id == bindparam("customer_id"),
        SelfServiceSession.outcome.is_(None),
    )
    .order_by(SelfServiceSession.id.desc())
    .limit(1)
)


async def _open(session: AsyncSession, customer_id: int) -> SelfServiceSession | None:
    return (await session.execute(_OPEN, {"customer_id": customer_id})).scalar_one_or_none()


async def current(
    session: AsyncSession, customer: Customer, now: datetime, idle: timedelta
) -> SelfServiceSession | None:
    """The customer's live session, closing a stale one as expired."""
    s = await _open(session, customer.id)
    if s is not None and s.last_at < now - idle:
        s.outcome, s.ended_at = (EXPIRED if s.answers else ABANDONED), s.last_at
        return None
    return s


async def step(
    session: AsyncSession,
    customer: Customer,
    now: datetime,
    idle: timedelta,
    *,
    language: str | None,
    answered: bool = False,
    searched: bool = False,
    node: str | None = None,
    question: str | None = None,
) -> SelfServiceSession:
    """Record a self-service step, opening a session if none is live: ``node`` (a menu,
    action or FAQ entry shown) joins the path, ``question`` (a text searched for) is kept
    as the session's question and marks a search in the path."""
    s = await current(session, customer, now, idle)
    if s is None:
        s = SelfServiceSession(
            customer_id=customer.id,
            tier=customer.tier,
            language=language,
            started_at=now,
            last_at=now,
            answers=0,
            searches=0,
        )
        session.add(s)
    s.last_at = now
    s.answers += int(answered)
    s.searches += int(searched)
    steps = [*([SEARCH] if question else []), *([node] if node else [])]
    if steps:
        path = [*json.loads(s.path or "[]"), *steps]
        s.path = json.dumps(path[-PATH_STEPS:])
    if question:
        s.question = question.strip()[:QUESTION_MAX]
    await session.flush()
    return s


async def end(
    session: AsyncSession, customer: Customer, outcome: str, now: datetime, idle: timedelta
) -> bool:
    """End the live session with ``outcome``; False if there was none."""
    s = await current(session, customer, now, idle)
    if s is None:
        return False
    s.outcome, s.ended_at, s.last_at = outcome, now, now
    await session.flush()
    return True


async def tried_selfservice(
    session: AsyncSession, customer: Customer, now: datetime, idle: timedelta
) -> bool:
    """Whether the live session has shown an answer or taken a question."""
    s = await current(session, customer, now, idle)
    return s is not None and (s.answers > 0 or s.searches > 0)


@dataclass(frozen=True)
class Handoff:
    """What led a customer from self-service to a person: the nodes they opened, oldest
    first (``SEARCH`` for a search), and the last text they searched for."""

    path: tuple[str, ...]
    question: str | None


async def handoff(
    session: AsyncSession, customer_id: int, at: datetime, within: timedelta
) -> Handoff | None:
    """The self-service session that a hand-off at ``at`` ended (the customer's last one
    ended as ``handoff`` no earlier than ``within`` before it), or None."""
    s = (
        await session.execute(
            select(SelfServiceSession)
            .where(
                SelfServiceSession.customer_id == customer_id,
                SelfServiceSession.outcome == HANDOFF,
                SelfServiceSession.ended_at <= at + timedelta(seconds=1),
                SelfServiceSession.ended_at >= at - within,
            )
            .order_by(SelfServiceSession.ended_at.desc(), SelfServiceSession.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if s is None or (not s.path and not s.question):
        return None
    return Handoff(tuple(json.loads(s.path or "[]")), s.question)


@dataclass(frozen=True)
class Deflection:
    ended: int
    resolved: int
    expired: int  # quiet after an answer: presumably it was enough
    handoff: int
    abandoned: int  # quiet without any answer shown: not deflected
    live: int

    @property
    def deflected(self) -> int:
        return self.resolved + self.expired

    @property
    def rate(self) -> float | None:
        return self.deflected / self.ended if self.ended else None


async def deflection(
    session: AsyncSession, now: datetime, idle: timedelta, since: datetime | None = None
) -> Deflection:
    """Sessions started since ``since`` by outcome (quiet open ones are ended first)."""
    stale = and_(SelfServiceSession.outcome.is_(None), SelfServiceSession.last_at < now - idle)
    for outcome, answered in ((EXPIRED, SelfServiceSession.answers > 0),
                              (ABANDONED, SelfServiceSession.answers == 0)):  # fmt: skip
        await session.execute(
            update(SelfServiceSession)
            .where(stale, answered)
            .values(outcome=outcome, ended_at=SelfServiceSession.last_at)
            .execution_options(synchronize_session=False)
        )
    q = select(SelfServiceSession.outcome, func.count()).group_by(SelfServiceSession.outcome)
    if since is not None:
        q = q.where(SelfServiceSession.started_at >= since)
    counts = {k: int(n) for k, n in (await session.execute(q)).all()}
    resolved, expired, handoff, abandoned = (
        counts.get(k, 0) for k in (RESOLVED, EXPIRED, HANDOFF, ABANDONED)
    )
    return Deflection(
        resolved + expired + handoff + abandoned,
        resolved,
        expired,
        handoff,
        abandoned,
        counts.get(None, 0),
    )
