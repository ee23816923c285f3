"""A survey row's life: its states, the reasons written with them, and reconciliation.

Every survey is a row in ``surveys`` (the outbox) with a status::

    scheduled -> sending -> sent -> answered | expired
                        \\-> failed (with the reason) ; skipped (with the reason)

The status values and the ``reason`` strings live here, once, because every part of the
survey code reads or writes them: the outbox's sweep (:mod:`surveys.outbox`), the claims
(:mod:`surveys.outbox_claims`), the journal of outcomes (:mod:`surveys.outbox_journal`),
the answers (:mod:`surveys.feedback`), the reports (:mod:`surveys.status`). The reasons
are stable strings: reports group by them.

:func:`reconcile` is the one transition made outside a sweep's own sending: it settles
the rows a previous sweep left in ``sending`` (see :mod:`surveys.outbox` for why a row
whose Telegram call had started is failed, not resent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.scoring.model import CSAT, NPS
from routing.store.models import Survey

__all__ = [
    "ANSWERED",
    "EXPIRED",
    "FAILED",
    "KINDS",
    "R_CAP",
    "R_GAVE_UP",
    "R_GUEST",
    "R_LATE",
    "R_NO_ANSWER",
    "R_NO_CHAT",
    "R_OPTED_OUT",
    "R_QUIET",
    "R_RETRYING",
    "R_UNKNOWN",
    "R_UNREACHABLE",
    "SCHEDULED",
    "SENDING",
    "SENT",
    "SKIPPED",
    "Reconciled",
    "reconcile",
    "rowcount",
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

KINDS = (CSAT, NPS)


def rowcount(result: object) -> int:
    """Rows an UPDATE matched (the typed Result API does not expose it)."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


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
