"""The one priority function: tier weight plus linear aging, as a sortable key.

With linear aging a waiting chat's priority at instant ``t`` is

    priority(t) = -rank * step + (t - queued_at)

(``rank`` 0 for the highest tier, ``step`` = ``queue.aging_outrank_seconds``). Comparing two
chats at the same ``t`` cancels ``t``, so ordering by priority at any instant is ordering by
the *virtual arrival*

    key = queued_at + rank * step        (smaller = served first)

which does not depend on ``t``. It is computed once when the chat is queued, stored and
indexed, so the database orders the queue with an index scan, and the simulator sorts by the
very same number. Consequence (the documented bound): a chat of tier ``r + k`` that has waited
more than ``k * step`` seconds longer than a chat of tier ``r`` is served before it.

``step = 0`` means strict tier order: then the key uses :data:`STRICT_STEP`, a head start far
longer than any wait, so rank decides and arrival only breaks ties within a tier.
"""

from __future__ import annotations

from datetime import UTC, datetime

# ~317 years: no chat waits that long, so a higher rank can never be overtaken.
STRICT_STEP = 1e10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def effective_rank(rank: int, boost: int = 0) -> int:
    """The tier rank a chat queues at: ``boost`` ranks higher, never above the top (0)."""
    return max(rank - boost, 0)


def step_seconds(aging_outrank_seconds: float) -> float:
    return aging_outrank_seconds if aging_outrank_seconds > 0 else STRICT_STEP


def epoch_seconds(at: datetime) -> float:
    return (at - EPOCH).total_seconds()


def queue_key(rank: int, queued_at_s: float, aging_outrank_seconds: float) -> float:
    """Virtual arrival time (seconds since the epoch, or any fixed origin): smaller first.

    ``rank`` is the effective rank (see :func:`effective_rank`); ``queued_at_s`` the original
    arrival in seconds. Ties between equal keys break by arrival, then by id.
    """
    return queued_at_s + rank * step_seconds(aging_outrank_seconds)


def queue_key_at(rank: int, queued_at: datetime, aging_outrank_seconds: float) -> float:
    return queue_key(rank, epoch_seconds(queued_at), aging_outrank_seconds)


def priority_at(rank: int, queued_at_s: float, now_s: float, aging_outrank_seconds: float) -> float:
    """The priority itself (higher first) at ``now_s``: shown in docs and tests; orders the
    same as :func:`queue_key` reversed at any instant."""
    return (now_s - queued_at_s) - rank * step_seconds(aging_outrank_seconds)
