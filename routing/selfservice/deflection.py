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
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from routing.store import direct, lane
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


# Built once: read at every self-service step. Fresh (populate_existing): a step writes on
# the driver's connection (below), so an instance the session holds may be behind it.
_OPEN = (
    select(SelfServiceSession)
    .where(
        SelfServiceSession.customer_id == bindparam("customer_id"),
        SelfServiceSession.outcome.is_(None),
    )
    .order_by(SelfServiceSession.id.desc())
    .limit(1)
    .execution_options(populate_existing=True)
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


@dataclass(frozen=True)
class Live:
    """A live session as a step left it."""

    id: int
    language: str | None
    answers: int
    searches: int
    path: str | None
    question: str | None


# step_writes' ``live`` when the caller has not read the session.
UNREAD: Any = object()


# A step runs for most customer messages (every search, menu and answer): its statements are
# prebuilt and run on the session's driver connection (routing/store/direct.py); through the
# ORM (load the instance, change it, flush) it cost more than the rest of the update.
_T = SelfServiceSession
_LIVE = direct.Statement(
    select(_T.id, _T.last_at, _T.language, _T.answers, _T.searches, _T.path, _T.question)
    .where(_T.customer_id == bindparam("customer_id"), _T.outcome.is_(None))
    .order_by(_T.id.desc())
    .limit(1)
)
_END_QUIET = direct.Statement(
    update(_T)
    .where(_T.id == bindparam("sid"))
    .values(outcome=bindparam("v_outcome"), ended_at=_T.last_at)
)
_STEP = direct.Statement(
    update(_T)
    .where(_T.id == bindparam("sid"))
    .values(
        last_at=bindparam("v_at", type_=_T.last_at.type),
        answers=bindparam("v_answers"),
        searches=bindparam("v_searches"),
        path=bindparam("v_path"),
        question=bindparam("v_question"),
    )
)
_START_VALUES = insert(_T).values(
    customer_id=bindparam("v_customer"),
    tier=bindparam("v_tier"),
    language=bindparam("v_language"),
    started_at=bindparam("v_at", type_=_T.started_at.type),
    last_at=bindparam("v_at", type_=_T.last_at.type),
    answers=bindparam("v_answers"),
    searches=bindparam("v_searches"),
    path=bindparam("v_path"),
    question=bindparam("v_question"),
)
_START = direct.Statement(_START_VALUES.returning(_T.id))
# The start as a step's write leaves it (_plan): no row returned, so on PostgreSQL it may be
# one statement with the writes beside it (routing/store/lane.py one_statement).
_START_WRITE = direct.Statement(_START_VALUES.inline())

# PostgreSQL: the steps of several customers (updates that finish together) as one statement
# each, their values given as arrays (routing/store/inbox.py gathers them with the done marks).
_ARRAY = postgresql.ARRAY
_STEPS = (
    func.unnest(
        bindparam("sid", type_=_ARRAY(_T.id.type)),
        bindparam("v_at", type_=_ARRAY(_T.last_at.type)),
        bindparam("v_answers", type_=_ARRAY(_T.answers.type)),
        bindparam("v_searches", type_=_ARRAY(_T.searches.type)),
        bindparam("v_path", type_=_ARRAY(_T.path.type)),
        bindparam("v_question", type_=_ARRAY(_T.question.type)),
    )
    .table_valued("sid", "at", "answers", "searches", "path", "question")
    .render_derived(name="v")
)
_STARTS = (
    func.unnest(
        bindparam("v_customer", type_=_ARRAY(_T.customer_id.type)),
        bindparam("v_tier", type_=_ARRAY(_T.tier.type)),
        bindparam("v_language", type_=_ARRAY(_T.language.type)),
        bindparam("v_at", type_=_ARRAY(_T.last_at.type)),
        bindparam("v_answers", type_=_ARRAY(_T.answers.type)),
        bindparam("v_searches", type_=_ARRAY(_T.searches.type)),
        bindparam("v_path", type_=_ARRAY(_T.path.type)),
        bindparam("v_question", type_=_ARRAY(_T.question.type)),
    )
    .table_valued("customer", "tier", "language", "at", "answers", "searches", "path", "question")
    .render_derived(name="v")
)
_STEP_MANY = direct.Statement(
    update(_T)
    .where(_T.id == _STEPS.c.sid)
    .values(
        last_at=_STEPS.c.at,
        answers=_STEPS.c.answers,
        searches=_STEPS.c.searches,
        path=_STEPS.c.path,
        question=_STEPS.c.question,
    )
)
# The columns a start writes, and where each comes from in _STARTS (``at`` twice).
_START_COLUMNS = ("customer_id", "tier", "language", "started_at", "last_at", "answers",
                  "searches", "path", "question")  # fmt: skip
_START_FROM = ("customer", "tier", "language", "at", "at", "answers", "searches", "path",
               "question")  # fmt: skip
_START_MANY = direct.Statement(
    insert(_T).from_select(_START_COLUMNS, select(*(_STARTS.c[n] for n in _START_FROM)))
)
lane.batch_as(_STEP, _STEP_MANY, key="sid")
lane.batch_as(_START_WRITE, _START_MANY)


def _live_or_start() -> direct.Statement:
    # PostgreSQL: the live session (as _LIVE), or a new one started (as _START, with the
    # values a first step writes) when there is none, in one statement. One row always:
    # the live session's columns (NULL when there was none) and the started session's id.
    live = (
        select(_T.id, _T.last_at, _T.language, _T.answers, _T.searches, _T.path, _T.question)
        .where(_T.customer_id == bindparam("customer_id"), _T.outcome.is_(None))
        .order_by(_T.id.desc())
        .limit(1)
        .cte("live")
    )
    started = (
        insert(_T)
        .from_select(
            ["customer_id", "tier", "language", "started_at", "last_at", "answers",
             "searches", "path", "question"],
            select(
                bindparam("customer_id", type_=_T.customer_id.type),
                bindparam("v_tier", type_=_T.tier.type),
                bindparam("v_language", type_=_T.language.type),
                bindparam("v_at", type_=_T.started_at.type),
                bindparam("v_at", type_=_T.last_at.type),
                bindparam("v_answers", type_=_T.answers.type),
                bindparam("v_searches", type_=_T.searches.type),
                bindparam("v_path", type_=_T.path.type),
                bindparam("v_question", type_=_T.question.type),
            ).where(~exists(select(live.c.id))),
        )
        .returning(_T.id)
        .cte("started")
    )  # fmt: skip
    return direct.Statement(
        select(
            *(select(c).scalar_subquery().label(c.key) for c in live.c),
            select(started.c.id).scalar_subquery().label("started"),
        )
    )


_LIVE_OR_START = _live_or_start()


async def step(
    session: AsyncSession | direct.Tx,
    customer: Customer,
    now: datetime,
    idle: timedelta,
    *,
    language: str | None,
    answered: bool = False,
    searched: bool = False,
    node: str | None = None,
    question: str | None = None,
) -> Live:
    """Record a self-service step, opening a session if none is live: ``node`` (a menu,
    action or FAQ entry shown) joins the path, ``question`` (a text searched for) is kept
    as the session's question and marks a search in the path."""
    steps = [*([SEARCH] if question else []), *([node] if node else [])]
    if isinstance(session, direct.Tx) and session.pg is not None:
        # PostgreSQL: a customer's first step (most are) starts the session in the same
        # statement that looks for a live one, one round trip instead of two (issue 19).
        first_path = json.dumps(steps[-PATH_STEPS:]) if steps else None
        first_question = question.strip()[:QUESTION_MAX] if question else None
        row = await _LIVE_OR_START.first(
            session,
            {"customer_id": customer.id, "v_tier": customer.tier, "v_language": language,
             "v_at": now, "v_answers": int(answered), "v_searches": int(searched),
             "v_path": first_path, "v_question": first_question},
        )  # fmt: skip
        if row.started is not None:
            return Live(int(row.started), language, int(answered), int(searched),
                        first_path, first_question)  # fmt: skip
        live = row
    else:
        live = await _LIVE.first(session, {"customer_id": customer.id})
    ended, write = _plan(live, customer, now, idle, language, answered, searched, steps, question)
    if ended is not None:
        await _END_QUIET.execute(session, ended[1])
    statement, values = write
    if statement is _START_WRITE:
        sid = await _START.scalar(session, values, last=True)
        return Live(int(sid), language, values["v_answers"], values["v_searches"],
                    values["v_path"], values["v_question"])  # fmt: skip
    await _STEP.execute(session, values, last=True)
    assert live is not None
    return Live(live.id, live.language, values["v_answers"], values["v_searches"],
                values["v_path"], values["v_question"])  # fmt: skip


async def step_writes(
    engine: AsyncEngine,
    customer: Customer,
    now: datetime,
    idle: timedelta,
    *,
    language: str | None,
    answered: bool = False,
    searched: bool = False,
    node: str | None = None,
    question: str | None = None,
    live: Any = UNREAD,
) -> list[lane.Step]:
    """:func:`step`'s writes, for the caller to make (the inbox commits them with the
    update's done mark: routing/store/inbox.py ``leave_to_mark``; on PostgreSQL one write,
    a step or a start, then joins the marks' one statement, as one of the ``_STEP_MANY`` or
    ``_START_MANY`` rows), after reading the live session outside any transaction. Only for
    a step that is the update's last write: a second step before they are made would not
    see them.

    ``live``: the customer's session not ended as the update's lookup read it (a
    ``LiveSelfService`` or None; routing/store/update_lookup.py), when nothing since can
    have changed it; else it is read here."""
    steps = [*([SEARCH] if question else []), *([node] if node else [])]
    if live is UNREAD:
        found = await _LIVE.read(engine, {"customer_id": customer.id})
        live = found[0] if found else None
    ended, write = _plan(
        live, customer, now, idle, language, answered, searched, steps, question
    )  # fmt: skip
    return [ended, write] if ended is not None else [write]


def _plan(
    live: Any,
    customer: Customer,
    now: datetime,
    idle: timedelta,
    language: str | None,
    answered: bool,
    searched: bool,
    steps: list[str],
    question: str | None,
) -> tuple[lane.Step | None, lane.Step]:
    """A step's writes given the live session read (a ``_LIVE`` row, or None): the quiet
    session's end if it went quiet, and the session's update or a new session's start."""
    ended: lane.Step | None = None
    if live is not None and live.last_at < now - idle:
        # Quiet too long: it ended when it went quiet, and this step starts a new one.
        outcome = EXPIRED if live.answers else ABANDONED
        ended = (_END_QUIET, {"sid": live.id, "v_outcome": outcome})
        live = None
    before = json.loads(live.path) if live is not None and live.path else []
    path = json.dumps([*before, *steps][-PATH_STEPS:]) if steps else (live and live.path)
    kept = question.strip()[:QUESTION_MAX] if question else (live and live.question)
    answers = (live.answers if live is not None else 0) + int(answered)
    searches = (live.searches if live is not None else 0) + int(searched)
    values = {"v_at": now, "v_answers": answers, "v_searches": searches, "v_path": path,
              "v_question": kept}  # fmt: skip
    if live is None:
        start = {"v_customer": customer.id, "v_tier": customer.tier, "v_language": language}
        return ended, (_START_WRITE, {**start, **values})
    return ended, (_STEP, {"sid": live.id, **values})


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
    params = {"customer_id": customer_id, "until": at + timedelta(seconds=1), "since": at - within}
    found = await _HANDOFF.first(session, params)
    if found is None:
        return None
    path, question = found
    if not path and not question:
        return None
    return Handoff(tuple(json.loads(path or "[]")), question)


# Prebuilt (routing/store/direct.py): every claim's briefing asks it.
_HANDOFF = direct.Statement(
    select(SelfServiceSession.path, SelfServiceSession.question)
    .where(
        SelfServiceSession.customer_id == bindparam("customer_id"),
        SelfServiceSession.outcome == HANDOFF,
        SelfServiceSession.ended_at <= bindparam("until", type_=SelfServiceSession.ended_at.type),
        SelfServiceSession.ended_at >= bindparam("since", type_=SelfServiceSession.ended_at.type),
    )
    .order_by(SelfServiceSession.ended_at.desc(), SelfServiceSession.id.desc())
    .limit(1)
)


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
