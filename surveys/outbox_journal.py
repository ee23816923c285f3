"""Recording a sweep's sends as they happen: the stamp before each call, each outcome after.

Step 3 of a sweep (:mod:`surveys.outbox`). :class:`OutboxTransport` wraps the bot's
transport: just before each Telegram call it has the :class:`Journal` stamp the row
``attempted_at`` (conditional on the row still being this sweep's claim, so an opt-out that
lands meanwhile withdraws it), and a 429 takes the stamp back. The :class:`Journal` then
writes each final outcome from the sender: ``sent`` with the Telegram message id and the
expiry, ``failed`` with the reason, the customer marked unreachable after a 403, or back to
``scheduled`` (``retrying: ...``) while Telegram keeps failing transiently and the survey has
not expired. Stamps and outcomes are group-committed, so a burst costs one transaction.

The stamp is what lets :func:`surveys.outbox_states.reconcile` tell a row never handed to
Telegram (resent) from one whose outcome is unknown (failed, never resent).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.clock import Clock
from routing.policy.root import Policy
from routing.store.models import Customer, Survey
from surveys.outbox_claims import SurveyPush
from surveys.outbox_schedule import expiry_for
from surveys.outbox_states import (
    ANSWERED,
    FAILED,
    R_GAVE_UP,
    R_RETRYING,
    R_UNREACHABLE,
    SCHEDULED,
    SENDING,
    SENT,
)
from surveys.push_transport import Outcome, PermanentError, Push, Result, RetryAfter, Transport

__all__ = ["Journal", "OutboxTransport"]

_T: Table = Survey.__table__  # type: ignore[assignment]


class Journal:
    """Writes a sweep's progress to the database as it happens.

    ``attempted`` stamps rows just before their Telegram call and waits for the commit;
    ``record`` queues a final outcome. Both group-commit: whoever takes the lock writes
    everything queued so far, so a burst costs one transaction, not one per message.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: Policy,
        token: str,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.token = token
        self.clock = clock
        self._lock = asyncio.Lock()
        self._marks: list[int] = []
        self._marked: dict[int, bool] = {}
        self._results: list[Result] = []
        self._flusher: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        # Core and built once: this runs for every few messages of a campaign, and the ORM's
        # bulk-update bookkeeping per call cost more than the UPDATE itself.
        self._stamp = (
            update(_T)
            .where(
                _T.c.id.in_(bindparam("ids", expanding=True)),
                _T.c.status == SENDING,
                _T.c.claim_token == token,
            )
            .values(attempted_at=bindparam("now"))
            .returning(_T.c.id)
        )

    async def attempted(self, survey_id: int, *, undo: bool = False) -> bool:
        """Stamp the row; False if it is no longer this sweep's to send (e.g. opted out).
        ``undo``: the call was refused (429), so it is back to never attempted."""
        if undo:
            async with self._lock, self.sessions() as s, s.begin():
                await s.execute(
                    update(Survey)
                    .where(Survey.id == survey_id, Survey.claim_token == self.token)
                    .values(attempted_at=None)
                )
            return True
        self._marks.append(survey_id)
        async with self._lock:
            if survey_id not in self._marked:
                batch, self._marks = self._marks, []
                async with self.sessions() as s, s.begin():
                    result = await s.execute(self._stamp, {"ids": batch, "now": self.clock()})
                    ok = set(result.scalars())
                for sid in batch:
                    self._marked[sid] = sid in ok
        return self._marked.pop(survey_id)

    async def record(self, result: Result) -> None:
        if self.error is not None:
            raise self.error
        self._results.append(result)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._results:
                batch, self._results = self._results, []
                async with self._lock:
                    await self._write(batch)
        except BaseException as exc:
            self.error = exc
            raise

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._results and self.error is None:
            await self._flush_loop()
        if self.error is not None:
            raise self.error

    async def _write(self, batch: list[Result]) -> None:
        now = self.clock()
        sent: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        deferred: list[dict[str, Any]] = []
        unreachable: set[int] = set()
        again = now + timedelta(seconds=self.policy.surveys.sender.backoff_max_seconds)
        for r in batch:
            p: SurveyPush = r.push.payload
            if r.outcome is Outcome.SENT:
                sent.append(
                    {
                        "sid": p.survey_id,
                        "exp": now + expiry_for(p.kind, self.policy),
                        "mid": r.response if isinstance(r.response, int) else None,
                    }
                )
            elif r.outcome is Outcome.UNREACHABLE:
                failed.append({"sid": p.survey_id, "why": f"{R_UNREACHABLE}: {r.reason}"[:200]})
                unreachable.add(p.customer_id)
            elif r.outcome is Outcome.DEFERRED:
                reason = r.reason or "transient failure"
                deferred.append(
                    {
                        "sid": p.survey_id,
                        "due": again,
                        "again": f"{R_RETRYING}{reason}"[:200],
                        "why": f"{reason[: 200 - len(R_GAVE_UP)]}{R_GAVE_UP}",
                    }
                )
            else:
                failed.append({"sid": p.survey_id, "why": (r.reason or "failed")[:200]})
        # One compiled statement per outcome, executemany: at hundreds of sends a second the
        # per-statement overhead is what would cap the rate, not the database.
        mine = and_(
            _T.c.id == bindparam("sid"), _T.c.status == SENDING, _T.c.claim_token == self.token
        )
        async with self.sessions() as s, s.begin():
            if sent:
                # A row the customer already answered (pressed before this write) keeps its
                # answer and gets its message id.
                sending = _T.c.status == SENDING
                await s.execute(
                    update(_T)
                    .where(
                        _T.c.id == bindparam("sid"),
                        # Not IN (...): SQLAlchemy expands that per call, which rules
                        # out executemany.
                        or_(sending, _T.c.status == ANSWERED),
                        _T.c.claim_token == self.token,
                    )
                    .values(
                        status=case((sending, SENT), else_=_T.c.status),
                        sent_at=func.coalesce(_T.c.sent_at, literal(now, _T.c.sent_at.type)),
                        expires_at=case(
                            (sending, bindparam("exp", type_=_T.c.expires_at.type)),
                            else_=_T.c.expires_at,
                        ),
                        message_id=bindparam("mid"),
                        reason=None,
                    ),
                    sent,
                )
            if failed:
                await s.execute(
                    update(_T).where(mine).values(status=FAILED, reason=bindparam("why")), failed
                )
            if deferred:
                await s.execute(self._requeue(mine), deferred)
            if unreachable:
                # Blocked the bot, or gone: no more pushes until they write again.
                await s.execute(
                    update(Customer)
                    .where(Customer.id.in_(unreachable), Customer.unreachable_at.is_(None))
                    .values(unreachable_at=now)
                )

    @staticmethod
    def _requeue(mine: ColumnElement[bool]) -> Update:
        """Telegram kept failing transiently: back to the queue, due at ``:due``, while that
        is before the survey's expiry; past it, failed with the last error."""
        due = bindparam("due", type_=_T.c.due_at.type)
        c = _T.c
        live = and_(c.expires_at.is_not(None), c.expires_at > due)
        return (
            update(_T)
            .where(mine)
            .values(
                status=case((live, SCHEDULED), else_=FAILED),
                due_at=case((live, due), else_=c.due_at),
                reason=case((live, bindparam("again")), else_=bindparam("why")),
                # Refused or failed, not delivered: like a row never handed to Telegram.
                attempted_at=case((live, null()), else_=c.attempted_at),
                claimed_at=case((live, null()), else_=c.claimed_at),
                claim_token=None,
            )
        )


class _Withdrawn(PermanentError):
    """The row stopped being this sweep's to send (opt-out, expiry) before its call."""


class OutboxTransport:
    """Stamps the row, then sends: a crash after the stamp is an *unknown* outcome."""

    def __init__(self, inner: Transport, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal

    async def send(self, push: Push) -> object:
        if not await self.journal.attempted(int(push.key)):
            raise _Withdrawn("withdrawn before sending")
        try:
            return await self.inner.send(push)
        except RetryAfter:
            # Telegram refused it outright: not delivered, so a crash while the sender waits
            # to retry must not leave it looking like an unknown outcome.
            await self.journal.attempted(int(push.key), undo=True)
            raise
