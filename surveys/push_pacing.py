"""How fast the push sender may go: its limits, the global rate limiter, per-chat queues.

Telegram allows a bot about 30 messages/s overall and 1 message/s per chat, and answers
429 ``retry_after`` past that. :class:`SenderConfig` holds the limits the sender keeps
under itself (and its retry and concurrency settings); the bookkeeping that keeps them is
here, the waiting is the run loop's (:mod:`surveys.push`):

* :class:`RateLimiter`, the global limit: starts are spaced ``1/global_rate`` apart (with a
  few milliseconds of catch-up so a late timer does not cost throughput), and never more
  than ``global_rate`` start in any one-second window;
* :class:`ChatQueue`, per-chat pacing: each chat's pushes wait in order, and its next send
  starts no earlier than ``per_chat_interval`` after its previous attempt *finished*; the
  run loop keeps ready chats in a heap keyed by that moment, so a slow chat never holds a
  worker or blocks the others. :class:`PendingPush` is one push in such a queue with the
  count of its calls, failures and pauses that its retries are decided on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from surveys.push_transport import Push

__all__ = ["ChatQueue", "PendingPush", "RateLimiter", "SenderConfig"]

# How far behind schedule the global limiter may run before it stops catching up. Timers
# fire late by a fraction of a millisecond; at 500 msg/s that is a quarter of an interval,
# which strict spacing would lose on every message.
_CATCH_UP = 0.02


@dataclass(frozen=True)
class SenderConfig:
    global_rate: float = 25.0  # messages/s over all chats; Telegram's ceiling is ~30
    per_chat_interval: float = 1.0  # seconds between sends to one chat
    # Transport calls per push that may raise an unexpected exception (a transport bug);
    # Telegram's transient answers (5xx, network, 429) are bounded by retry_window instead.
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    # Seconds a push keeps being retried after its first transient failure or 429 before it
    # is given up for this run as DEFERRED.
    retry_window: float = 300.0
    concurrency: int = 32  # sends in flight at once
    max_pending: int = 10_000  # pushes read ahead of sending; bounds memory on huge inputs

    def __post_init__(self) -> None:
        if self.global_rate <= 0 or self.per_chat_interval < 0:
            raise ValueError("global_rate must be > 0 and per_chat_interval >= 0")
        if self.backoff_base <= 0 or self.backoff_max <= 0 or self.retry_window < 0:
            raise ValueError("backoff_base and backoff_max must be > 0, retry_window >= 0")
        if self.max_attempts < 1 or self.concurrency < 1 or self.max_pending < 1:
            raise ValueError("max_attempts, concurrency and max_pending must be >= 1")


class RateLimiter:
    """At most ``rate`` starts in any window of one second (``1/rate`` s below 1/s), spaced
    evenly. Pure bookkeeping on a caller-supplied ``now``; the caller does the waiting."""

    def __init__(self, rate: float, catch_up: float = _CATCH_UP) -> None:
        self.interval = 1.0 / rate
        self.span = max(1.0, self.interval)
        self.capacity = max(1, int(rate * self.span + 1e-9))
        self.catch_up = catch_up
        self._tat = float("-inf")  # theoretical time of the next start (GCRA)
        self._stamps: deque[float] = deque()

    def available_at(self, now: float) -> float:
        """The earliest time >= now at which :meth:`take` may be called."""
        while self._stamps and self._stamps[0] + self.span <= now:
            self._stamps.popleft()
        at = max(now, self._tat - self.catch_up)
        if len(self._stamps) >= self.capacity:
            # The spacing alone lets a catch-up burst edge over the rate; the window doesn't.
            at = max(at, self._stamps[0] + self.span)
        return at

    def take(self, now: float) -> None:
        self._tat = max(self._tat, now) + self.interval
        self._stamps.append(now)


# ------------------------------------------------------------------------ per-chat queue


@dataclass
class PendingPush:
    """A push waiting in its chat's queue, with what its retries have cost so far."""

    push: Push
    calls: int = 0
    failures: int = 0  # transient failures and 429s: they set the backoff
    errors: int = 0  # unexpected transport exceptions, counted against max_attempts
    pauses: int = 0
    not_before: float = float("-inf")
    first_failure: float | None = None  # the retry_window runs from here


@dataclass
class ChatQueue:
    """One chat's pushes, in order, and the earliest moment the next may start."""

    queue: deque[PendingPush] = field(default_factory=deque)
    next_at: float = float("-inf")
    busy: bool = False  # a send to this chat is in flight: it is not in the heap meanwhile
