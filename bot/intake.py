"""Taking updates in: stored before they are confirmed, handled in per-chat order, drained.

aiogram's own polling loop confirms an offset while the handlers of the updates before it
are still running, and its webhook handler answers 200 before handling; a kill in between
loses those updates for good. Here an update is confirmed to Telegram (the next
``getUpdates`` offset, or the webhook's 200) only once its raw JSON is committed to the
inbox (routing/store/inbox.py). Handling then runs from the stored row:

* one chat's updates one after another, in update id order; different chats in parallel,
  at most ``concurrency`` at once;
* an update aiogram cannot parse (a shape from another Bot API version) is quarantined with
  its raw JSON and the error, and the bot goes on; before, ``getUpdates`` failed on it and
  retried the same offset forever;
* a handler that fails is retried with backoff (the database was away, say), and after
  ``max_attempts`` quarantined, so one poisoned update does not hold its chat forever;
* handled updates are marked ``done``: the row is the redelivery guard. Effects are keyed on
  the Telegram message too (routing/store/models.py ``uq_messages_source``), so an update handled
  again after a crash between its effects and its mark is not relayed twice;
* pending rows left by a crash are handled first on the next start (:meth:`Intake.recover`);
* :meth:`Intake.drain` stops taking updates, lets the ones in flight finish within a bound
  and leaves the rest pending for the next start (SIGTERM, SIGINT).

Several instances (webhook mode on PostgreSQL, with Redis): consecutive updates of one chat
may land on different instances. Each instance then takes the chat's shared lock (Redis)
before handling, and handles the chat's pending rows *from the database*, in update id order,
whoever stored them; an update another instance already handled is skipped. A sweep picks
up rows left pending by an instance that died (their lock expires with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.http.metrics import metrics
from routing.clock import Clock, utcnow
from routing.store import inbox, lane, sqlite_driver
from routing.store.inbox import RawUpdate

log = logging.getLogger(__name__)

# Updates handled at once. Unbounded, a burst of thousands of updates becomes thousands of
# tasks queueing for one SQLite connection, each holding memory and none finishing sooner.
CONCURRENCY = 64
# Stored updates waiting in memory before polling pauses: past this, the backlog stays in
# Telegram's queue (and in the inbox) instead of in this process.
BACKLOG = 2_000
POLL_TIMEOUT = 25  # seconds a getUpdates long poll waits for news
MAX_ATTEMPTS = 5
# Failures that are about the world (network, Telegram, the database), not about the update.
TRANSIENT = (TelegramNetworkError, TelegramServerError, TelegramRetryAfter, OperationalError)
# Several instances: a chat's lock outlives a dead holder by at most this long (a live one
# renews it), and rows
# pending longer than ORPHAN_SECONDS are looked at again every SWEEP_SECONDS.
LOCK_SECONDS = 30
ORPHAN_SECONDS = 10.0
SWEEP_SECONDS = 5.0

ChatLock = Callable[[int], AbstractAsyncContextManager[None]]


def redis_chat_lock(redis_url: str) -> ChatLock:
    """A chat's updates are handled by one instance at a time, across instances."""
    from redis.asyncio import Redis
    from redis.exceptions import LockError

    client = Redis.from_url(redis_url)

    @asynccontextmanager
    async def lock(chat_id: int) -> AsyncIterator[None]:
        held = client.lock(
            f"contactbot:chat:{chat_id}", timeout=LOCK_SECONDS, blocking_timeout=None
        )
        await held.acquire()

        async def renew() -> None:
            # Held while one update is handled; renewed so a slow handler keeps it, while a
            # dead holder's lock lapses within LOCK_SECONDS.
            while True:
                await asyncio.sleep(LOCK_SECONDS / 3)
                await held.reacquire()

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, LockError):
                await renewing
            try:
                await held.release()
            except LockError as exc:  # it lapsed (the instance stalled): say so, go on
                log.warning("chat %s: the shared lock lapsed before release: %s", chat_id, exc)

    return lock


def event_type(update: Update) -> str:
    """The update's kind (message, callback_query, ...) for the metrics."""
    try:
        return update.event_type
    except Exception:  # a kind this aiogram does not know
        return "unknown"


class RawGetUpdates(GetUpdates):
    """``getUpdates`` answered as plain dicts: one update aiogram cannot parse must not make
    the whole batch fail (it would be fetched again, and fail again, forever)."""

    __returning__ = list[dict[str, Any]]


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class Backoff:
    """1, 2, 4 ... seconds up to ``cap``; back to the start after a success."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self.next = first

    def fail(self) -> float:
        delay = self.next
        self.next = min(self.next * 2, self.cap)
        return delay

    def ok(self) -> None:
        self.next = self.first


class Intake:
    def __init__(
        self,
        dp: Dispatcher,
        bot: Bot,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        concurrency: int = CONCURRENCY,
        max_attempts: int = MAX_ATTEMPTS,
        retry_first: float = 0.5,
        chat_lock: ChatLock | None = None,
    ) -> None:
        self.dp, self.bot, self.sessions, self.clock = dp, bot, sessions, clock
        self.engine: AsyncEngine = sessions.kw["bind"]  # the done mark needs no session
        # Updates that finish together are marked done in one transaction.
        self._marks = inbox.DoneMarks(self.engine)
        # The inbox is plumbing: it runs on real time, whatever clock the bot's rules use.
        self.now = utcnow
        # Set when several instances may share the database (see the module docstring).
        self.chat_lock = chat_lock
        self.max_attempts = max_attempts
        self.retry_first = retry_first
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[Any, deque[RawUpdate]] = {}
        self._workers: dict[Any, asyncio.Task[None]] = {}
        self._scheduled: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._stop = asyncio.Event()

    # --- state -------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._scheduled)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # --- taking updates in -------------------------------------------------------------
    async def accept(self, raws: Sequence[Any]) -> int:
        """Store raw updates (one transaction) and schedule the new ones; returns how many
        were new. Raises if they could not be stored: the caller must then not confirm."""
        rows, bad = inbox.parse_batch(raws)
        for line in bad:
            log.warning("skipped %s", line)
        # Inline on SQLite: a batch's INSERT is short, and runs on the loop thread when the
        # write lock is free instead of in four trips to the driver's thread.
        with sqlite_driver.inline():
            async with self.sessions() as s, s.begin():
                new = await inbox.store(s, rows, self.now())
        for row in rows:
            if row.update_id in new:
                self._schedule(row)
        return len(new)

    async def recover(self) -> int:
        """Schedule what a previous run stored but did not finish (a crash, a drain bound)."""
        async with self.sessions() as s, s.begin():
            rows = await inbox.pending(s)
        for row in rows:
            self._schedule(row)
        if rows:
            log.info("handling %d update(s) stored before the last stop", len(rows))
        return len(rows)

    def _schedule(self, row: RawUpdate) -> None:
        if row.update_id in self._scheduled:
            return
        self._scheduled.add(row.update_id)
        self._idle.clear()
        if len(self._scheduled) >= BACKLOG:
            self._room.clear()
        # No chat to order by: the update is handled on its own.
        key: Any = row.chat_id if row.chat_id is not None else ("update", row.update_id)
        self._queues.setdefault(key, deque()).append(row)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._run_chat(key))

    async def _run_chat(self, key: Any) -> None:
        queue = self._queues[key]
        try:
            while queue:
                if self.chat_lock is not None and isinstance(key, int):
                    await self._run_shared(key, queue)
                    continue
                row = queue[0]
                async with self._slots:
                    await self._handle(row)
                queue.popleft()
                self._done_with(row.update_id)
        finally:
            # No await between the last check of the queue and here: a row scheduled for
            # this chat meanwhile would have found this worker and been taken above.
            del self._workers[key]
            if not queue:
                del self._queues[key]
            if not self._scheduled:
                self._idle.set()

    def _done_with(self, update_id: int) -> None:
        self._scheduled.discard(update_id)
        if len(self._scheduled) < BACKLOG // 2:
            self._room.set()

    async def _run_shared(self, chat_id: int, queue: deque[RawUpdate]) -> None:
        """One turn of a chat shared with other instances: under the chat's lock, every row
        still pending in the database, in update id order, whoever stored it."""
        assert self.chat_lock is not None
        taken = list(queue)
        queue.clear()
        try:
            # The lock is taken for one update at a time: a backlog never holds it for long,
            # and other instances' turns interleave fairly.
            seen: set[int] = set()
            while not self.stopping:
                async with self._slots, self.chat_lock(chat_id):
                    async with self.sessions() as s, s.begin():
                        rows = await inbox.pending_for_chat(s, chat_id, limit=1)
                    if not rows or rows[0].update_id in seen:
                        # Nothing left, or a row that could not be marked: the sweep
                        # comes back to it rather than this turn spinning on it.
                        break
                    seen.add(rows[0].update_id)
                    await self._handle(rows[0])
        finally:
            for row in taken:
                self._done_with(row.update_id)

    async def sweep_orphans(self) -> int:
        """Several instances: schedule chats whose rows wait longer than they should (their
        instance died, or its turn ended just before they were stored)."""
        async with self.sessions() as s, s.begin():
            rows = await inbox.stale_pending(s, self.now() - timedelta(seconds=ORPHAN_SECONDS))
        for row in rows:
            self._schedule(row)
        return len(rows)

    async def run_sweeps(self) -> None:
        """Until :meth:`stop`: the orphan sweep every ``SWEEP_SECONDS`` (several instances)."""
        while not self.stopping:
            await self._until_stop(asyncio.sleep(SWEEP_SECONDS))
            if self.stopping:
                break
            try:
                await self.sweep_orphans()
            except (DBAPIError, OSError) as exc:
                log.warning("orphan sweep failed: %s", one_line(exc))

    # --- handling one update -----------------------------------------------------------
    async def _handle(self, row: RawUpdate) -> None:
        try:
            update = Update.model_validate(json.loads(row.payload), context={"bot": self.bot})
        except (ValueError, ValidationError) as exc:
            log.warning("update %s cannot be parsed; quarantined: %s", row.update_id, one_line(exc))
            metrics().update("unparsed", "quarantined")
            await self._finish(row.update_id, quarantine=one_line(exc))
            return
        backoff = Backoff(self.retry_first, 30.0)
        kind = event_type(update)
        while True:
            started = time.perf_counter()
            try:
                # What the handlers leave to the done mark (inbox.leave_to_mark): this
                # attempt's, dropped with it if it fails.
                with inbox.writes_with_mark() as with_mark:
                    await self.dp.feed_update(self.bot, update)
                metrics().update(kind, "handled", time.perf_counter() - started)
                break
            except Exception as exc:
                attempts = await self._count_failure(row.update_id, exc)
                if attempts >= self.max_attempts:
                    log.error(
                        "update %s failed %d times; quarantined: %s",
                        row.update_id,
                        attempts,
                        one_line(exc),
                    )
                    metrics().update(kind, "quarantined")
                    await self._finish(row.update_id, quarantine=one_line(exc))
                    return
                metrics().update(kind, "failed")
                if self.stopping:
                    # Left pending: the next start handles it.
                    log.warning("update %s failed while stopping: %s", row.update_id, one_line(exc))
                    return
                delay = backoff.fail()
                transient = isinstance(exc, TRANSIENT)
                log.warning(
                    "update %s failed (attempt %d): %s; retrying in %.1fs",
                    row.update_id,
                    attempts,
                    one_line(exc),
                    delay,
                    exc_info=None if transient or attempts > 1 else exc,
                )
                await asyncio.sleep(delay)
        await self._finish(row.update_id, writes=with_mark.steps)

    async def _count_failure(self, update_id: int, exc: BaseException) -> int:
        try:
            async with self.sessions() as s, s.begin():
                return await inbox.record_failure(s, update_id, one_line(exc))
        except (DBAPIError, OSError) as db_exc:
            # The database itself is away: not the update's fault, so it does not count.
            log.warning("could not record a failure of update %s: %s", update_id, one_line(db_exc))
            return 1

    async def _finish(
        self,
        update_id: int,
        *,
        quarantine: str | None = None,
        writes: Sequence[lane.Step] = (),
    ) -> None:
        backoff = Backoff(self.retry_first, 10.0)
        for attempt in range(6):
            try:
                # Inline (routing/store/sqlite_driver.py): on SQLite the mark's BEGIN,
                # UPDATE and COMMIT run on the loop thread, not four trips to the driver's.
                with sqlite_driver.inline():
                    if attempt and writes and await self._is_done(update_id):
                        # The failed attempt's commit landed after all (its error came
                        # after it): the writes are in, and must not go in twice.
                        return
                    if quarantine is None:
                        await self._marks.mark(update_id, self.now(), writes)
                    else:
                        async with self.sessions() as s, s.begin():
                            await inbox.quarantine(s, update_id, quarantine, self.now())
                return
            except (DBAPIError, OSError) as exc:
                if self.stopping:
                    break
                delay = backoff.fail()
                log.warning(
                    "could not mark update %s: %s; retrying in %.1fs", update_id, exc, delay
                )
                await asyncio.sleep(delay)
        # Still pending: handled again on the next start, where its effects' own guards
        # (one transcript row per Telegram message) keep it from acting twice.
        log.warning("update %s left pending", update_id)

    async def _is_done(self, update_id: int) -> bool:
        async with self.sessions() as s:
            return await inbox.is_done(s, update_id)

    # --- polling -----------------------------------------------------------------------
    async def poll(self, allowed_updates: list[str] | None = None) -> None:
        """Long-poll until :meth:`stop`. The offset advances only past stored updates."""
        offset: int | None = None
        backoff = Backoff()
        while not self.stopping:
            if not self._room.is_set():
                await self._until_stop(self._room.wait())
                continue
            fetch = RawGetUpdates(
                offset=offset, timeout=POLL_TIMEOUT, allowed_updates=allowed_updates
            )
            try:
                got = await self._until_stop(self.bot(fetch, request_timeout=POLL_TIMEOUT + 15))
            except TelegramConflictError as exc:
                await self._pause(backoff, "another process is polling this bot", exc)
                continue
            except TelegramAPIError as exc:
                await self._pause(backoff, "cannot fetch updates", exc)
                continue
            if got is None:  # stopping
                break
            metrics().telegram.ok()  # /readyz: Telegram answered just now
            raws: list[dict[str, Any]] = got
            if not raws:
                backoff.ok()
                continue
            try:
                await self.accept(raws)
            except (DBAPIError, OSError) as exc:
                # Not stored, so not confirmed: Telegram gives them again after the pause.
                await self._pause(backoff, "cannot store updates", exc)
                continue
            backoff.ok()
            ids = [r["update_id"] for r in raws if isinstance(r.get("update_id"), int)]
            if ids:
                offset = max(ids) + 1

    async def _until_stop(self, work: Any) -> Any:
        """Await ``work`` unless :meth:`stop` comes first (then None, ``work`` cancelled)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def _pause(self, backoff: Backoff, what: str, exc: BaseException) -> None:
        delay = backoff.fail()
        if isinstance(exc, TelegramRetryAfter):
            delay = max(delay, float(exc.retry_after))
        log.warning("%s: %s; retrying in %.1fs", what, one_line(exc), delay)
        await self._until_stop(asyncio.sleep(delay))

    # --- webhook -----------------------------------------------------------------------
    def webhook_handler(self, secret: str) -> Any:
        """An aiohttp handler for Telegram's webhook POSTs: 200 only once stored."""
        expected = secret.encode()

        async def handle(request: web.Request) -> web.Response:
            if self.stopping:
                # Telegram retries: the update goes to the next start (or another instance).
                return web.Response(status=503, text="shutting down")
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(status=401, text="bad secret token")
            try:
                raw = await request.json(loads=json.loads)
            except ValueError:
                return web.Response(status=400, text="the body is not JSON")
            if not isinstance(raw, dict):
                return web.Response(status=400, text="the body is not an update object")
            try:
                await self.accept([raw])
            except (DBAPIError, OSError) as exc:
                log.warning("cannot store a webhook update: %s", one_line(exc))
                return web.Response(status=503, text="cannot store the update now")
            return web.json_response({})

        return handle

    # --- stopping ----------------------------------------------------------------------
    async def stopped(self) -> None:
        await self._stop.wait()

    def stop(self) -> None:
        """Stop taking updates (polling ends, the webhook answers 503)."""
        self._stop.set()

    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109
        """Stop, let the updates in flight finish within ``timeout`` seconds; returns how
        many were left pending for the next start."""
        self.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        left = len(self._scheduled)
        for task in list(self._workers.values()):
            task.cancel()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if left:
            log.warning("%d update(s) left pending for the next start", left)
        return left
