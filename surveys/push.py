"""The one sender every outgoing push goes through (surveys now, broadcasts later): its run loop.

Telegram allows a bot about 30 messages/s overall and 1 message/s per chat, and answers
429 ``retry_after`` past that. :class:`Sender` keeps under both limits itself, with the
global rate limiter and the per-chat queues of :mod:`surveys.push_pacing` (where the limits,
:class:`SenderConfig`, are too). This module is the loop that uses them and acts on
Telegram's answers:

* a 429 pauses *all* sending for ``retry_after`` and the same push is retried; 403-like
  answers mark the chat unreachable for the rest of the run; transient errors (5xx,
  network) are retried with exponential backoff and jitter, capped at ``backoff_max``;
  permanent errors (a 400 about the message) fail at once.

Transient failures and 429s spend time, not a small attempt budget: a Bot API answering
502 for a minute must not fail a survey that a minute later would go through. A push keeps
being retried for ``retry_window`` seconds from its first failure; past that it is reported
:attr:`Outcome.DEFERRED` (not sent *in this run*, may be tried again), and the caller
decides how long to keep trying (the survey outbox puts the row back in the queue until the
survey's own expiry). Only an unexpected exception from the transport (a bug, not an
answer from Telegram) has an attempt budget, ``max_attempts``.

It knows nothing of Telegram's client library: a :class:`Transport`
(``bot/adapters/survey_transport.py`` for aiogram) sends one :class:`Push` and raises the
error types of :mod:`surveys.push_transport`. Callers (an outbox sweep) hand
:meth:`Sender.run` an iterable or async iterable of pushes (a :class:`PushQueue` for a
long-running sender) and get one :class:`Result` per push through ``on_result`` as soon as
it is final, so outcomes can be persisted as they happen. ``on_result`` is awaited from a
single task, one result at a time; :meth:`Sender.run` returns the run's :class:`Stats`.

Time comes from the injected ``clock``/``sleep``, so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from surveys.push_pacing import ChatQueue, PendingPush, RateLimiter, SenderConfig
from surveys.push_transport import (
    Outcome,
    PermanentError,
    Push,
    Result,
    RetryAfter,
    TransientError,
    Transport,
    Unreachable,
)

__all__ = ["PushQueue", "Sender", "Stats"]

log = logging.getLogger(__name__)


@dataclass
class Stats:
    sent: int = 0
    unreachable: int = 0
    failed: int = 0
    deferred: int = 0  # given up for this run after retry_window of transient failures
    retries: int = 0  # transport calls beyond the first per push (429 retries included)
    pauses: int = 0  # 429 answers
    paused_seconds: float = 0.0
    elapsed: float = 0.0
    duplicates: int = 0  # pushes ignored because their key was already in this run

    @property
    def rate(self) -> float:
        """Achieved messages per second (sent / elapsed)."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


class PushQueue:
    """An async iterable of pushes fed with :meth:`put` until :meth:`close`: hand it to
    :meth:`Sender.run` for a long-running sender."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Push | None] = asyncio.Queue()

    def put(self, push: Push) -> None:
        self._queue.put_nowait(push)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Push]:
        while (push := await self._queue.get()) is not None:
            yield push


async def _aiter(pushes: AsyncIterable[Push] | Iterable[Push]) -> AsyncIterator[Push]:
    if isinstance(pushes, AsyncIterable):
        async for push in pushes:
            yield push
    else:
        for push in pushes:
            yield push


class Sender:
    def __init__(
        self,
        transport: Transport,
        config: SenderConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.config = config or SenderConfig()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def run(
        self,
        pushes: AsyncIterable[Push] | Iterable[Push],
        on_result: Callable[[Result], Awaitable[None]] | None = None,
    ) -> Stats:
        """Send every push, report each outcome once, return when all are final.

        Unreachable chats, pauses and duplicate-key detection last for this call only: the
        durable record of who is unreachable is the caller's.
        """
        return await _Run(self, pushes, on_result).execute()

    def backoff(self, failures: int) -> float:
        """Delay before retry number ``failures``: "equal jitter", so it never shrinks."""
        cap = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** (failures - 1))
        return cap / 2 + self._rng.uniform(0, cap / 2)


class _Run:
    """The state of one :meth:`Sender.run`."""

    def __init__(
        self,
        sender: Sender,
        pushes: AsyncIterable[Push] | Iterable[Push],
        on_result: Callable[[Result], Awaitable[None]] | None,
    ) -> None:
        self.s = sender
        self.cfg = sender.config
        self.clock = sender._clock
        self.pushes = pushes
        self.on_result = on_result
        self.stats = Stats()
        self.limiter = RateLimiter(self.cfg.global_rate)
        self.chats: dict[int, ChatQueue] = {}
        self.heap: list[tuple[float, int, int]] = []  # (ready at, seq, chat_id)
        self.seq = 0
        self.unreachable: set[int] = set()
        self.keys: set[str | int] = set()
        self.paused_until = float("-inf")
        self.pending = 0  # pushes read but not yet final
        self.inflight: set[asyncio.Task[None]] = set()  # for cancellation only
        self.sending = 0  # counted in the task itself: done-callbacks run a step too late
        self.fed = False
        self.wake = asyncio.Event()
        self.room = asyncio.Event()  # the feeder may read more
        self.results: asyncio.Queue[Result | None] = asyncio.Queue()
        self.error: BaseException | None = None

    async def execute(self) -> Stats:
        started = self.clock()
        feeder = asyncio.create_task(self._feed())
        reporter = asyncio.create_task(self._report())
        try:
            await self._dispatch()
            self.results.put_nowait(None)
            await reporter
            if self.error is not None:
                raise self.error
        finally:
            for task in (feeder, reporter, *self.inflight):
                task.cancel()
            for task in (feeder, reporter, *self.inflight):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.stats.elapsed = self.clock() - started
        return self.stats

    # ---------------------------------------------------------------- input and output

    async def _feed(self) -> None:
        try:
            async for push in _aiter(self.pushes):
                while self.pending >= self.cfg.max_pending:
                    self.room.clear()
                    await self.room.wait()
                self._add(push)
                self.wake.set()
        except Exception as error:  # the caller's iterable broke: stop, and say why
            self.error = self.error or error
        finally:
            self.fed = True
            self.wake.set()

    def _add(self, push: Push) -> None:
        if push.key in self.keys:
            # Sending it again could deliver the same survey twice.
            log.warning("push %r is already in this run; ignored", push.key)
            self.stats.duplicates += 1
            return
        self.keys.add(push.key)
        self.pending += 1
        if push.chat_id in self.unreachable:
            self._finish(PendingPush(push), Outcome.UNREACHABLE, "chat unreachable (skipped)")
            return
        chat = self.chats.get(push.chat_id)
        if chat is None:
            chat = self.chats[push.chat_id] = ChatQueue()
        chat.queue.append(PendingPush(push))
        if len(chat.queue) == 1 and not chat.busy:
            self._schedule(push.chat_id, chat)

    def _schedule(self, chat_id: int, chat: ChatQueue) -> None:
        # Never earlier than now: ready chats go in the order they became ready, so a push
        # retried after a 429 or a backoff is not starved by every push read after it.
        ready = max(chat.next_at, chat.queue[0].not_before, self.clock())
        self.seq += 1
        heapq.heappush(self.heap, (ready, self.seq, chat_id))

    def _finish(
        self,
        item: PendingPush,
        outcome: Outcome,
        reason: str | None,
        sent_at: float | None = None,
        response: Any = None,
    ) -> None:
        if outcome is Outcome.SENT:
            self.stats.sent += 1
        elif outcome is Outcome.UNREACHABLE:
            self.stats.unreachable += 1
        elif outcome is Outcome.DEFERRED:
            self.stats.deferred += 1
            # Not sent: the caller may hand the same push in again in this run.
            self.keys.discard(item.push.key)
        else:
            self.stats.failed += 1
        self.pending -= 1
        self.room.set()
        self.results.put_nowait(Result(item.push, outcome, item.calls, reason, sent_at, response))

    async def _report(self) -> None:
        while (result := await self.results.get()) is not None:
            if self.on_result is None:
                continue
            try:
                await self.on_result(result)
            except Exception as error:
                # Outcomes that can't be recorded must not keep being produced.
                self.error = self.error or error
                self.wake.set()
                return

    # ---------------------------------------------------------------- sending

    async def _dispatch(self) -> None:
        while self.error is None:
            self.wake.clear()
            now = self.clock()
            if self.paused_until > now:
                await self._sleep_until(self.paused_until)
                continue
            if not self.heap:
                if self.fed and not self.sending:
                    return
                await self.wake.wait()
                continue
            ready_at = self.heap[0][0]
            if ready_at > now:
                await self._wait(ready_at)
                continue
            if self.sending >= self.cfg.concurrency:
                await self.wake.wait()
                continue
            at = self.limiter.available_at(now)
            if at > now:
                await self._sleep_until(at)
                continue
            self.limiter.take(now)
            _, _, chat_id = heapq.heappop(self.heap)
            chat = self.chats[chat_id]
            chat.busy = True
            self.sending += 1
            task = asyncio.create_task(self._attempt(chat_id, chat, chat.queue.popleft()))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _sleep_until(self, when: float) -> None:
        await self.s._sleep(max(0.0, when - self.clock()))

    async def _wait(self, when: float) -> None:
        """Until ``when``, or earlier if something changes (a new push, a finished send)."""
        waiter = asyncio.ensure_future(self.wake.wait())
        sleeper = asyncio.ensure_future(self._sleep_until(when))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _attempt(self, chat_id: int, chat: ChatQueue, item: PendingPush) -> None:
        item.calls += 1
        if item.calls > 1:
            self.stats.retries += 1
        retry = False
        try:
            response = await self.s.transport.send(item.push)
        except RetryAfter as error:
            retry = self._on_retry_after(item, error)
        except Unreachable as error:
            self._on_unreachable(chat_id, chat, item, str(error) or "unreachable")
        except PermanentError as error:
            self._finish(item, Outcome.FAILED, str(error) or type(error).__name__)
        except TransientError as error:
            retry = self._on_transient(item, str(error) or type(error).__name__)
        except Exception as error:  # a transport bug: retry, but a few times only
            log.warning("transport raised %r for push %r", error, item.push.key)
            retry = self._on_error(item, str(error) or type(error).__name__)
        else:
            self._finish(item, Outcome.SENT, None, self.clock(), response)
        finally:
            # From the end of the call: the server saw it before then, so the next send to
            # this chat can't land inside Telegram's per-chat window whatever the latency.
            chat.next_at = self.clock() + self.cfg.per_chat_interval
            chat.busy = False
            self.sending -= 1
            if retry:
                chat.queue.appendleft(item)
            if chat.queue:
                self._schedule(chat_id, chat)
            self.wake.set()

    def _on_retry_after(self, item: PendingPush, error: RetryAfter) -> bool:
        now = self.clock()
        until = now + max(0.0, error.seconds)
        self.stats.pauses += 1
        self.stats.paused_seconds += max(0.0, until - max(self.paused_until, now))
        self.paused_until = max(self.paused_until, until)
        item.pauses += 1
        if self._out_of_window(item, now, until):
            self._defer(item, now, f"rate limited {item.pauses} times: {error}")
            return False
        log.info("429 on push %r: all sending paused for %.1fs", item.push.key, error.seconds)
        return True

    def _on_unreachable(
        self, chat_id: int, chat: ChatQueue, item: PendingPush, reason: str
    ) -> None:
        self.unreachable.add(chat_id)
        self._finish(item, Outcome.UNREACHABLE, reason)
        while chat.queue:
            self._finish(chat.queue.popleft(), Outcome.UNREACHABLE, f"{reason} (skipped)")

    def _on_transient(self, item: PendingPush, reason: str) -> bool:
        now = self.clock()
        item.failures += 1
        retry_at = now + self.s.backoff(item.failures)
        if self._out_of_window(item, now, retry_at):
            self._defer(item, now, f"{reason} ({item.calls} attempts)")
            return False
        item.not_before = retry_at
        return True

    def _out_of_window(self, item: PendingPush, now: float, retry_at: float) -> bool:
        """Would the next try start past the push's retry_window?"""
        if item.first_failure is None:
            item.first_failure = now
        return retry_at - item.first_failure > self.cfg.retry_window

    def _defer(self, item: PendingPush, now: float, reason: str) -> None:
        assert item.first_failure is not None
        waited = now - item.first_failure
        self._finish(item, Outcome.DEFERRED, f"{reason}; still failing after {waited:.0f}s")

    def _on_error(self, item: PendingPush, reason: str) -> bool:
        item.errors += 1
        if item.errors >= self.cfg.max_attempts:
            self._finish(item, Outcome.FAILED, f"{reason} (after {item.errors} attempts)")
            return False
        item.failures += 1
        item.not_before = self.clock() + self.s.backoff(item.failures)
        return True
