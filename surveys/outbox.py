"""The durable survey outbox: rows in ``surveys``, swept to the rate-limited sender.

Every survey is a row with a due time and a status::

    scheduled -> sending -> sent -> answered | expired
                        \\-> failed (with the reason) ; skipped (with the reason)

A sweep (:func:`sweep`) runs in three steps, all driven by the database:

1. **Reconcile** rows a previous sweep left in ``sending`` (the process died, or was
   stopped, mid-send). Only one sweep runs at a time (the bot runs the sweeps in one
   process, behind a lock), so every ``sending`` row found at the start of a sweep is an
   orphan. A row whose Telegram call never started (``attempted_at`` is NULL) goes back to
   ``scheduled`` and is sent by this sweep. A row whose call started but whose outcome was
   not recorded is the one case nobody can decide: Telegram may have delivered it in the
   instant before the crash. Sending it again risks a duplicate survey, so it is marked
   ``failed`` ("outcome unknown"): **at most once** for those rows. The window is
   narrow: from the start of the HTTP call to the commit of its result (milliseconds;
   results are group-committed as they arrive), so a crash strands at most the sends in
   flight (``sender.concurrency``).
2. **Claim** due rows in small batches (one conditional ``UPDATE ... RETURNING`` per batch,
   ``SKIP LOCKED`` on PostgreSQL) and decide eligibility at send time: guests, opted-out or
   unreachable customers, the frequency cap and unsent rows past their expiry are settled
   with a reason; quiet hours push the due time to the end of the quiet period.
3. **Send** through :class:`surveys.push.Sender`. Just before each Telegram call the row
   is stamped ``attempted_at`` (group-committed, conditional on the row still being this
   sweep's claim, so an opt-out that lands meanwhile withdraws it); the result is written
   with the Telegram message id in the same statement that marks it ``sent``.

Telegram being unavailable (5xx, network errors, 429) is not a failure of the survey. The
sender retries such a push with backoff for ``sender.retry_window_seconds``; if it still
fails, the row goes back to ``scheduled``, due again ``sender.backoff_max_seconds`` later
(reason ``retrying: ...``), and so on until the survey's own expiry: only a row that could
not be sent before its ``expires_at`` is marked ``failed`` (with the last error). A 400 about
the message itself fails at once; a 403 marks the customer unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.clock import Clock
from routing.policy.root import Policy
from routing.scoring.model import CSAT, NPS
from routing.store.models import Customer, Survey
from surveys.push import (
    Outcome,
    PermanentError,
    Push,
    Result,
    RetryAfter,
    Sender,
    SenderConfig,
    Stats,
    Transport,
)

__all__ = [
    "ANSWERED",
    "EXPIRED",
    "FAILED",
    "SCHEDULED",
    "SENDING",
    "SENT",
    "SKIPPED",
    "Claim",
    "Reconciled",
    "SurveyPush",
    "SweepReport",
    "claim_due",
    "clear_unreachable",
    "expire",
    "expiry_for",
    "quiet_until",
    "reconcile",
    "rowcount",
    "sender_config",
    "set_opt_out",
    "sweep",
]

log = logging.getLogger(__name__)

SCHEDULED = "scheduled"
SENDING = "sending"
SENT = "sent"
ANSWERED = "answered"
EXPIRED = "expired"
FAILED = "failed"
SKIPPED = "skipped"

# Reasons written to surveys.reason (stable strings: reports group by them).
R_GUEST = "guest"
R_NO_CHAT = "no telegram chat"
R_OPTED_OUT = "opted out"
R_UNREACHABLE = "unreachable"
R_CAP = "frequency cap"
R_QUIET = "deferred: quiet hours"
R_LATE = "not sent in time"
R_UNKNOWN = "outcome unknown: interrupted during send (not resent)"
R_NO_ANSWER = "not answered in time"
R_RETRYING = "retrying: "  # + the last error; the row is scheduled again
R_GAVE_UP = " (not sent before its expiry)"  # appended to the last error

_T: Table = Survey.__table__  # type: ignore[assignment]
_C: Table = Customer.__table__  # type: ignore[assignment]


def rowcount(result: object) -> int:
    """Rows an UPDATE matched (the typed Result API does not expose it)."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


@dataclass(frozen=True)
class SurveyPush:
    """What the bot needs to render one survey (``Push.payload``)."""

    survey_id: int
    kind: str
    customer_id: int
    language: str | None


def expiry_for(kind: str, policy: Policy) -> timedelta:
    hours = policy.surveys.csat.expiry_hours if kind == CSAT else policy.surveys.nps.expiry_hours
    return timedelta(hours=hours)


def sender_config(policy: Policy) -> SenderConfig:
    s = policy.surveys.sender
    return SenderConfig(
        global_rate=s.global_rate,
        per_chat_interval=s.per_chat_interval,
        max_attempts=s.max_attempts,
        backoff_base=s.backoff_base_seconds,
        backoff_max=s.backoff_max_seconds,
        retry_window=s.retry_window_seconds,
        concurrency=s.concurrency,
        # Read ahead at most two batches: claimed rows wait in memory, not in the database.
        max_pending=max(2 * policy.surveys.claim_batch, s.concurrency),
    )


# ------------------------------------------------------------------------ quiet hours


class _Zoned(Protocol):
    id: int
    timezone: str | None


def zone_of(customer: _Zoned | None, policy: Policy) -> ZoneInfo:
    name = customer.timezone if customer is not None and customer.timezone else None
    if name:
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            log.warning("customer #%s has an unknown time zone %r", customer and customer.id, name)
    return ZoneInfo(policy.surveys.timezone)


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """The end of the quiet period ``now`` falls in (aware), or None outside quiet hours."""
    if start == end:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        quiet = start <= t < end
    else:  # wraps midnight, e.g. 21:00-09:00
        quiet = t >= start or t < end
        if t >= start:
            day += timedelta(days=1)
    if not quiet:
        return None
    return datetime.combine(day, end, tzinfo=zone)


# ------------------------------------------------------------------------ reconcile


@dataclass
class Reconciled:
    requeued: int = 0  # never handed to Telegram: sent by this sweep
    unknown: int = 0  # handed to Telegram, outcome lost: failed, not resent
    recorded: int = 0  # the message id was recorded: sent


async def reconcile(session: AsyncSession, now: datetime) -> Reconciled:
    """Settle every row left in ``sending`` (call only when no sweep is running)."""
    out = Reconciled()
    sending = Survey.status == SENDING
    out.recorded = rowcount(
        await session.execute(
            update(Survey)
            .where(sending, Survey.message_id.is_not(None))
            .values(status=SENT, sent_at=func.coalesce(Survey.sent_at, Survey.attempted_at))
        )
    )
    out.requeued = rowcount(
        await session.execute(
            update(Survey)
            .where(sending, Survey.attempted_at.is_(None))
            .values(status=SCHEDULED, claim_token=None, claimed_at=None)
        )
    )
    out.unknown = rowcount(
        await session.execute(
            update(Survey)
            .where(sending, Survey.attempted_at.is_not(None))
            .values(status=FAILED, reason=R_UNKNOWN, claim_token=None)
        )
    )
    if out.requeued or out.unknown or out.recorded:
        log.warning(
            "surveys left in sending: %d requeued, %d failed (outcome unknown), %d sent",
            out.requeued,
            out.unknown,
            out.recorded,
        )
    return out


# ------------------------------------------------------------------------ claim


@dataclass
class Claim:
    claimed: int = 0
    pushes: list[Push] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped/expired
    deferred: int = 0


async def claim_due(
    session: AsyncSession, policy: Policy, now: datetime, token: str, limit: int
) -> Claim:
    """Claim up to ``limit`` due rows for ``token`` and decide which may be sent now.

    Core statements and only the customer columns the decision needs: a claim holds the
    database's write lock, and every send of a running campaign waits for it to stamp its
    row, so a claim's length is a gap in the sending (ORM objects made it 40-90 ms)."""
    t, c = _T.c, _C.c
    pick = (
        select(t.id)
        .where(t.status == SCHEDULED, t.due_at <= now)
        .order_by(t.due_at, t.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = (
        await session.execute(
            update(_T)
            .where(t.id.in_(pick.scalar_subquery()))
            .values(status=SENDING, claim_token=token, claimed_at=now, attempted_at=None)
            .returning(t.id, t.kind, t.customer_id, t.due_at, t.expires_at)
        )
    ).all()
    claim = Claim(claimed=len(claimed))
    if not claimed:
        return claim
    rows = sorted(claimed, key=lambda r: (r.due_at, r.id))
    ids = [r.id for r in rows]
    cids = {r.customer_id for r in rows}
    wanted = (c.id, c.is_guest, c.telegram_id, c.surveys_opt_out, c.unreachable_at, c.timezone,
              c.language)  # fmt: skip
    customers = {r.id: r for r in await session.execute(select(*wanted).where(c.id.in_(cids)))}
    capped: set[int] = set()
    cap_days = policy.surveys.frequency_cap_days
    if cap_days > 0:
        cutoff = now - timedelta(days=cap_days)
        capped = set(
            (
                await session.execute(
                    select(t.customer_id)
                    .where(
                        t.customer_id.in_(cids),
                        t.id.not_in(ids),
                        or_(
                            t.sent_at >= cutoff,
                            # Live claims (orphans were reconciled before this sweep).
                            t.status == SENDING,
                        ),
                    )
                    .distinct()
                )
            ).scalars()
        )
    start, end = policy.surveys.quiet_hours.times()
    zones: dict[str | None, ZoneInfo] = {}
    changes: list[dict[str, Any]] = []
    for r in rows:
        cu = customers.get(r.customer_id)
        reason: str | None = None
        status = SKIPPED
        if r.expires_at is not None and r.expires_at <= now:
            status, reason = EXPIRED, R_LATE
        elif cu is None or cu.is_guest:
            reason = R_GUEST
        elif cu.telegram_id is None:
            reason = R_NO_CHAT
        elif cu.surveys_opt_out:
            reason = R_OPTED_OUT
        elif cu.unreachable_at is not None:
            reason = R_UNREACHABLE
        elif cu.id in capped:
            reason = R_CAP
        if reason is not None:
            changes.append({"_id": r.id, "status": status, "reason": reason, "claim_token": None})
            claim.settled[reason] = claim.settled.get(reason, 0) + 1
            continue
        assert cu is not None and cu.telegram_id is not None
        zone = zones.get(cu.timezone)
        if zone is None:
            zone = zones[cu.timezone] = zone_of(cu, policy)
        until = quiet_until(now, zone, start, end)
        if until is not None:
            # Back to the queue, due when the quiet period ends; not counted as a survey.
            changes.append(
                {
                    "_id": r.id,
                    "status": SCHEDULED,
                    "due_at": until,
                    "reason": R_QUIET,
                    "claim_token": None,
                    "claimed_at": None,
                }
            )
            claim.deferred += 1
            continue
        if cap_days > 0:
            capped.add(cu.id)  # a second row for the same customer in this batch waits 14 days
        changes.append({"_id": r.id, "chat_id": cu.telegram_id})
        claim.pushes.append(
            Push(r.id, cu.telegram_id, SurveyPush(r.id, r.kind, cu.id, cu.language))
        )
    # One executemany UPDATE by primary key per set of columns.
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for ch in changes:
        by_keys.setdefault(tuple(sorted(ch)), []).append(ch)
    for keys, group in by_keys.items():
        stmt = (
            update(_T)
            .where(t.id == bindparam("_id"))
            .values({k: bindparam(k) for k in keys if k != "_id"})
        )
        await session.execute(stmt, group)
    return claim


# ------------------------------------------------------------------------ journal


class _Journal:
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

    def __init__(self, inner: Transport, journal: _Journal) -> None:
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


# ------------------------------------------------------------------------ sweep


@dataclass
class SweepReport:
    reconciled: Reconciled
    stats: Stats | None = None
    claimed: int = 0
    deferred: int = 0
    settled: dict[str, int] = field(default_factory=dict)


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    transport: Transport,
    clock: Clock,
    *,
    sender_factory: Callable[[Transport, SenderConfig], Sender] | None = None,
    on_claim: Callable[[Claim], Awaitable[None]] | None = None,
) -> SweepReport:
    """Reconcile, then send every due survey; returns when none is due.

    The caller guarantees that no other sweep runs meanwhile (``reconcile`` relies on it).
    """
    async with sessions() as s, s.begin():
        report = SweepReport(await reconcile(s, clock()))
    token = uuid.uuid4().hex
    journal = _Journal(sessions, policy, token, clock)

    async def pushes() -> AsyncIterator[Push]:
        while True:
            async with sessions() as s, s.begin():
                claim = await claim_due(s, policy, clock(), token, policy.surveys.claim_batch)
            report.claimed += claim.claimed
            report.deferred += claim.deferred
            for reason, n in claim.settled.items():
                report.settled[reason] = report.settled.get(reason, 0) + n
            if on_claim is not None:
                await on_claim(claim)
            if not claim.claimed:
                return
            for push in claim.pushes:
                yield push

    config = sender_config(policy)
    wrapped = OutboxTransport(transport, journal)
    sender = sender_factory(wrapped, config) if sender_factory else Sender(wrapped, config)
    try:
        report.stats = await sender.run(pushes(), journal.record)
    finally:
        await journal.close()
    return report


# ------------------------------------------------------------------------ expiry, opt-out


async def expire(session: AsyncSession, policy: Policy, now: datetime) -> int:
    """Expire unanswered sent rows and unsent ones past their time; end stale comment waits."""
    n = rowcount(
        await session.execute(
            update(Survey)
            .where(Survey.status == SENT, Survey.expires_at <= now)
            .values(status=EXPIRED, reason=R_NO_ANSWER)
        )
    )
    n += rowcount(
        await session.execute(
            update(Survey)
            .where(Survey.status == SCHEDULED, Survey.expires_at <= now)
            .values(status=EXPIRED, reason=R_LATE)
        )
    )
    await session.execute(
        update(Survey)
        .where(
            Survey.comment_state == "asked",
            Survey.answered_at < now - timedelta(minutes=policy.surveys.comment_minutes),
        )
        .values(comment_state=None)
    )
    return n


async def set_opt_out(session: AsyncSession, customer_id: int, opted_out: bool) -> int:
    """``/stop_surveys`` (True) or ``/start_surveys`` (False). Opting out skips, at once,
    every survey not yet handed to Telegram; returns how many."""
    await session.execute(
        update(Customer).where(Customer.id == customer_id).values(surveys_opt_out=opted_out)
    )
    if not opted_out:
        return 0
    return rowcount(
        await session.execute(
            update(Survey)
            .where(
                Survey.customer_id == customer_id,
                or_(
                    Survey.status == SCHEDULED,
                    and_(Survey.status == SENDING, Survey.attempted_at.is_(None)),
                ),
            )
            .values(status=SKIPPED, reason=R_OPTED_OUT, claim_token=None)
        )
    )


async def clear_unreachable(session: AsyncSession, customer_id: int) -> bool:
    """They wrote to the bot, so the chat works again."""
    return bool(
        rowcount(
            await session.execute(
                update(Customer)
                .where(Customer.id == customer_id, Customer.unreachable_at.is_not(None))
                .values(unreachable_at=None)
            )
        )
    )


KINDS = (CSAT, NPS)
