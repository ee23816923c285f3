"""The durable survey outbox: rows in ``surveys``, swept to the rate-limited sender.

This module holds what the bot calls: :func:`sweep` (run by the survey job), :func:`expire`,
and the customer's :func:`set_opt_out` / :func:`clear_unreachable`. The parts of a sweep
live beside it:

* :mod:`surveys.outbox_states`: the row's states, the reasons written with them, and
  :func:`~surveys.outbox_states.reconcile`;
* :mod:`surveys.outbox_claims`: claiming due rows and deciding which may be sent now;
* :mod:`surveys.outbox_schedule`: quiet hours, the frequency cap, expiry;
* :mod:`surveys.outbox_journal`: the stamp before each Telegram call and the outcomes after;
* :mod:`surveys.push`: the rate-limited sender itself.

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

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.clock import Clock
from routing.policy.root import Policy
from routing.store.models import Customer, Survey
from surveys.news import NEWS
from surveys.outbox_claims import Claim, claim_due
from surveys.outbox_journal import Journal, OutboxTransport
from surveys.outbox_states import (
    EXPIRED,
    R_LATE,
    R_NO_ANSWER,
    R_OPTED_OUT,
    SCHEDULED,
    SENDING,
    SENT,
    SKIPPED,
    Reconciled,
    reconcile,
    rowcount,
)
from surveys.push import Sender, Stats
from surveys.push_pacing import SenderConfig
from surveys.push_transport import Push, Transport

__all__ = [
    "SweepReport",
    "clear_unreachable",
    "expire",
    "sender_config",
    "set_opt_out",
    "sweep",
]


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
    journal = Journal(sessions, policy, token, clock)

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
    """Expire unanswered sent rows and unsent ones past their time; end stale comment waits.
    A sent announcement (kind ``news``) asks nothing: it stays ``sent``."""
    n = rowcount(
        await session.execute(
            update(Survey)
            .where(Survey.status == SENT, Survey.expires_at <= now, Survey.kind != NEWS)
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


async def set_opt_out(
    session: AsyncSession, customer_id: int, opted_out: bool, *, news: bool = False
) -> int:
    """``/stop_surveys`` (True) or ``/start_surveys`` (False). Opting out skips, at once,
    every survey not yet handed to Telegram; returns how many. ``news``: the announcements'
    own switch instead (``/stop_news``, ``/start_news``: ``customers.news_opt_out`` and the
    rows of kind ``news``); neither touches the other."""
    column = "news_opt_out" if news else "surveys_opt_out"
    await session.execute(
        update(Customer).where(Customer.id == customer_id).values({column: opted_out})
    )
    if not opted_out:
        return 0
    return rowcount(
        await session.execute(
            update(Survey)
            .where(
                Survey.customer_id == customer_id,
                Survey.kind == NEWS if news else Survey.kind != NEWS,
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
