"""The delivery queue's Telegram side: sends what routing.delivery.enqueue queued, in order, with
backoff, and tells the sender when something can never be delivered.

``kick(conversation_id)`` after a commit delivers that conversation's due rows at once; a
background sweep (``start``/``stop``) picks up rows waiting for their retry and rows a crash
left behind. One asyncio lock per destination (conversation + direction) keeps two kicks from
interleaving in this process; across processes the row's lease does (routing.delivery.enqueue).

What a permanent failure does (400/403, or retrying past the horizon):

* an agent's message for the customer: the agent is told once, through their own queue
  ("the customer has blocked the bot; not delivered"); after a 403 the customer's later
  queued messages fail with it and the one notice says how many;
* a customer's message for the agent: if the agent's chat refuses it with 403 (the agent
  blocked the bot), the message goes back to "whoever holds the conversation" and
  ``on_agent_unreachable`` (the desk: agent offline, their chats requeued) runs, so the next
  agent gets it with the rest of the backlog; any other permanent error is logged (the
  customer deleted the message, say: there is nothing left to copy).

A row whose send was in flight when the process died stays ``sending`` until its lease ends
and is then sent again: delivery is at-least-once (Telegram gives no idempotency key; losing
a message is worse than showing it twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Protocol

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import texts
from bot.chat_turns import MAX_TURN_WAIT, ChatTurns
from bot.http.metrics import metrics
from bot.i18n import for_agents
from routing.clock import Clock, utcnow
from routing.delivery import enqueue, sending
from routing.delivery.sending import Backoff, Claimed
from routing.queue import conversations
from routing.store import direct, lane, sqlite_driver
from routing.store.models import TO_AGENT, TO_CUSTOMER, Agent, Conversation, Customer

log = logging.getLogger(__name__)

AgentUnreachable = Callable[[AsyncSession, int], Awaitable[None]]


def _classify(exc: BaseException) -> tuple[int | None, float | None]:
    """(error code, retry_after) of a failed call; code None: network error or timeout."""
    if isinstance(exc, TelegramRetryAfter):
        return 429, float(exc.retry_after)
    if isinstance(exc, TelegramForbiddenError):
        return 403, None
    if isinstance(exc, TelegramNotFound):
        return 404, None
    if isinstance(exc, TelegramBadRequest):
        return 400, None
    if isinstance(exc, TelegramUnauthorizedError):
        return 401, None
    if isinstance(exc, TelegramEntityTooLarge):
        return 413, None
    if isinstance(exc, TelegramConflictError):
        return 409, None
    if isinstance(exc, TelegramServerError):
        return 500, None
    return None, None  # TelegramNetworkError, timeouts, connection errors


@dataclass(frozen=True)
class Destination:
    """Where a row goes in topics mode (bot/desk/topics.py): a chat, a forum topic, and the
    copies still to make (``message_ids``; empty: nothing left, the row is done)."""

    chat_id: int
    thread_id: int | None
    message_ids: list[int]


class Router(Protocol):
    """Topics mode's routing of rows: None while the destination is not ready."""

    async def destination(self, c: Claimed) -> Destination | None: ...

    async def sent(self, c: Claimed, dest: Destination, sent: list[int]) -> None: ...


# How long a stop waits for Telegram calls already made. After the 10 s drain of updates
# (bot/app.py) this keeps the whole stop inside the 30 s a service or a container gives it
# before a SIGKILL (deploy/). A call still unanswered then is the in-doubt case of a crash.
STOP_WAIT_SECONDS = 15.0


class Deliverer:
    """Sends the delivery queue's rows. One per process, shared by every handler."""

    def __init__(
        self,
        bot: Bot,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = utcnow,
        now: Clock = utcnow,
        backoff: Backoff = sending.DEFAULT_BACKOFF,
        sweep_seconds: float = 0.5,
        lease: float = sending.LEASE_SECONDS,
        request_timeout: int = 20,
        hold: float = enqueue.ALBUM_HOLD_SECONDS,
        on_agent_unreachable: AgentUnreachable | None = None,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.engine: AsyncEngine = sessions.kw["bind"]  # the "sent" marks need no session
        # The marks of sends that end together are one write (lane.Together).
        self._marks = lane.together(self.engine)
        # Sends to agents' chats, in order of a counter: (began, marked) of each chat's last,
        # marked None until its mark is committed. A relay's claim reads whether a header is
        # due; it still holds at the send if that chat's last send was marked before.
        self._seq = 0
        self._agent_sends: dict[int, tuple[int, int | None]] = {}
        self.clock = clock  # the bot's clock: assignments are stamped with it
        self.now = now  # real time: the queue's timers, backoff and leases run on it
        self.backoff = backoff
        self.sweep_seconds = sweep_seconds
        self.lease = lease
        self.request_timeout = request_timeout
        self.hold = hold
        self.on_agent_unreachable = on_agent_unreachable
        # Topics mode: rows for agents go to the customer's topic (set by the desk).
        self.router: Router | None = None
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._users: dict[tuple[int, str], int] = {}
        # Head reads per destination while a drain of it is under way: how many began, and
        # the number of the latest that completed. A kick that waited for the lock reads
        # nothing if one that began after it was asked for has completed (_drain).
        self._reads: dict[tuple[int, str], int] = {}
        self._read: dict[tuple[int, str], int] = {}
        self._timers: dict[int, tuple[datetime, asyncio.Task[None]]] = {}
        self.turns = ChatTurns(time.monotonic)
        self._sending: set[asyncio.Future[bool]] = set()
        # Where a conversation's rows went last (by direction): its chat's turn is checked
        # before a row is claimed, so a busy chat costs no database write.
        self._dest: dict[tuple[int, str], int] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()  # set with _stopping: ends a send's wait for its turn
        self._idle = asyncio.Event()
        self._idle.set()

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the background sweep (idempotent)."""
        self._stopping = False
        self._stopped.clear()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the brief's API)
        """Stop sweeping and timers; wait up to ``timeout`` for sends in flight.

        From here no send calls Telegram: a claimed row still waiting for its chat's turn is
        handed back (pending, due now) for the next start or another instance. A call
        already made is waited for and marked. A send that called Telegram after stop()
        had given up on it was cut off by the shutdown before its "sent" mark, and sent
        again when its lease ended (a duplicate in the chaos benchmark's SIGTERM)."""
        self._stopping = True
        self._stopped.set()
        tasks: list[asyncio.Task[None]] = [t for _, t in self._timers.values()]
        self._timers.clear()
        if self._sweeper is not None:
            tasks.append(self._sweeper)
            self._sweeper = None
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        # Sends in flight finish (and are marked) even when their handler was cancelled.
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout)
        # Sends in flight under a kick finish with their handler; wait for them a while.
        if self._users:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def on_startup(self) -> None:
        """Dispatcher start-up hook: start the sweep."""
        self.start()

    async def on_shutdown(self) -> None:
        """Dispatcher shutdown hook: stop the sweep, let sends in flight finish (the rows
        not yet called are handed back at once)."""
        await self.stop(STOP_WAIT_SECONDS)

    # --- delivering -------------------------------------------------------------------
    async def kick(self, conversation_id: int, direction: str | None = None) -> None:
        """Deliver this conversation's due rows now, in order (call after the commit).

        ``direction``: only that way (the caller queued rows one way only; the other way's
        rows, if any, have their own kick or the sweep), else both."""
        ways = (direction,) if direction is not None else (TO_AGENT, TO_CUSTOMER)
        for way in ways:
            try:
                await self._drain(conversation_id, way, wait=True)
            except Exception:
                # The rows are stored: the sweep tries again.
                log.exception("delivery of #%s (%s) failed", conversation_id, way)

    async def sweep(self) -> int:
        """One pass over every conversation with a due row. Returns how many there were."""
        async with self.sessions() as s:
            due = await sending.due_conversations(s, self.now())
        for conv_id in due:
            if self._stopping:
                break
            for direction in (TO_AGENT, TO_CUSTOMER):
                try:
                    await self._drain(conv_id, direction, wait=False)
                except Exception:
                    log.exception("delivery sweep of #%s (%s) failed", conv_id, direction)
        return len(due)

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery sweep failed")
            await asyncio.sleep(self.sweep_seconds)

    async def _drain(self, conv_id: int, direction: str, *, wait: bool) -> None:
        key = (conv_id, direction)
        if not wait and self._users.get(key):
            return  # a kick is at it already
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        self._idle.clear()
        asked = self._reads.get(key, 0)
        try:
            # Inline (routing/store/sqlite_driver.py) wherever the drain was started from: a
            # kick inherits it from its handler, but the sweep and retry timers started
            # outside any update, and their claims went through the driver's thread.
            with sqlite_driver.inline():
                async with lock:
                    if wait and self._read.get(key, 0) > asked:
                        # A kick comes after its caller's commit: a head read that began
                        # since saw the caller's rows, and its drain went on while there
                        # were more, or left them to a timer, a hand-over or the sweep
                        # exactly as this read would. A burst of relays to one chat was a
                        # claim each plus an empty read each (issue 19).
                        return
                    while not self._stopping:
                        dest = self._dest.get(key)
                        if dest is not None and (self.turns.busy(dest) or self.turns.wait(dest)):
                            self._later_by(conv_id, self.turns.queue_wait(dest))
                            return
                        # A transaction of direct statements, no session (routing/store/direct.py):
                        # every relay claims its row here.
                        n = self._reads[key] = self._reads.get(key, 0) + 1
                        # What the claim reads of a relay's holder is as of here.
                        self._seq += 1
                        read_at = self._seq
                        head = await self._claim(conv_id, direction)
                        self._read[key] = n
                        if head.claimed is None:
                            if head.wait_until is not None and not head.gated:
                                self._schedule(conv_id, head.wait_until)
                            return
                        self._dest[key] = head.claimed.chat_id
                        # Shielded: a handler cancelled by a drain must not cut a send off
                        # between Telegram's answer and its "sent" mark (it would be sent again
                        # when its lease ends); stop() waits for these.
                        send = asyncio.ensure_future(
                            self._send_in_turn(head.claimed, read_at, time.monotonic())
                        )
                        self._sending.add(send)
                        send.add_done_callback(self._sending.discard)
                        if not await asyncio.shield(send) or not head.more:
                            return
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._locks.pop(key, None)
                self._reads.pop(key, None)
                self._read.pop(key, None)
                if key not in self._timers_keys():
                    self._dest.pop(key, None)
                if not self._users:
                    self._idle.set()

    async def _claim(self, conv_id: int, direction: str) -> sending.Head:
        now = self.now()
        read = None
        if self.engine.dialect.driver == "asyncpg":
            # With the claims of other chats made at the same time: one statement, outside
            # any transaction (sending.claim_first). Most heads are claimed by it.
            read = await sending.claim_first(
                self.engine, conv_id, direction, now=now, lease=self.lease
            )
            claimed = sending.claimed_now(read, conv_id, direction)
            if claimed is not None:
                return claimed
        async with direct.transaction(self.engine) as tx:
            return await sending.claim_head(
                tx, conv_id, direction, now=now, lease=self.lease, read=read
            )

    def _timers_keys(self) -> set[tuple[int, str]]:
        return {(c, d) for c in self._timers for d in (TO_AGENT, TO_CUSTOMER)}

    def _later_by(self, conv_id: int, seconds: float) -> None:
        self._schedule(conv_id, self.now() + timedelta(seconds=seconds))

    async def _send_in_turn(self, c: Claimed, read_at: int, claimed_at: float) -> bool:
        """Send a claimed row when its chat's turn comes; False if it was handed back to
        wait (the chat is busy for longer than a claim should be held). ``claimed_at``:
        ``time.monotonic()`` at the claim."""
        async with self.turns.turn(c.chat_id):
            wait = self.turns.wait(c.chat_id)
            if wait > MAX_TURN_WAIT and not self._stopping:
                at = self.now() + timedelta(seconds=wait)
                await self._hand_back(c, at, "paced")
                self._schedule(c.conversation_id, at)
                return False
            if wait and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), wait)
            if self._stopping:
                # Not called yet: nothing reached Telegram, so the row goes back now rather
                # than be called while the process exits (see stop()).
                await self._hand_back(c, self.now(), "stopping")
                return False
            if time.monotonic() - claimed_at > self.lease / 2:
                # It waited in line (behind this process's other sends into the chat) for
                # half its lease: the rest may lapse during the call, and once it has, another
                # instance may claim and send the row too. It goes back and is claimed anew.
                await self._hand_back(c, self.now(), "waited in line")
                self._schedule(c.conversation_id, self.now())
                return False
            await self._send(c, read_at)
        return True

    async def _hand_back(self, c: Claimed, at: datetime, why: str) -> None:
        """The claimed row back to pending (not a failed attempt), unless another claim
        has taken it since this one's lease ended."""
        async with self.sessions() as s, s.begin():
            await sending.retry_at(s, c.id, at=at, error=why, counted=False, attempts=c.attempts)

    def _schedule(self, conv_id: int, at: datetime) -> None:
        """Kick the conversation again at ``at`` (a retry, an album's hold)."""
        if self._stopping:
            return
        current = self._timers.get(conv_id)
        if current is not None and current[0] <= at and not current[1].done():
            return
        if current is not None:
            current[1].cancel()
        delay = max((at - self.now()).total_seconds(), 0.0)
        task = asyncio.get_running_loop().create_task(self._later(conv_id, at, delay))
        self._timers[conv_id] = (at, task)

    async def _later(self, conv_id: int, at: datetime, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)
        current = self._timers.get(conv_id)
        if current is not None and current[0] == at:
            del self._timers[conv_id]
        await self.kick(conv_id)

    # --- one row ----------------------------------------------------------------------
    async def _send(self, c: Claimed, read_at: int) -> None:
        dest: Destination | None = None
        if self.router is not None:
            dest = await self.router.destination(c)
            if dest is None:  # the customer's topic is still being created
                async with self.sessions() as s, s.begin():
                    at = self.now() + timedelta(seconds=1)
                    await sending.retry_at(s, c.id, at=at, error="topic not ready", counted=False)
                self._schedule(c.conversation_id, at)
                return
        previous = self._agent_sends.get(c.chat_id)
        if c.direction == TO_AGENT:
            self._seq += 1
            self._agent_sends[c.chat_id] = (self._seq, None)
        try:
            fresh = previous is None or (previous[1] is not None and previous[1] < read_at)
            if dest is None and c.relay and await self._switch_header(c, fresh):
                self.turns.sent(c.chat_id)
                if wait := self.turns.wait(c.chat_id):
                    await asyncio.sleep(wait)
            sent = await self._call(c, dest)
        except (TelegramAPIError, TimeoutError, OSError) as exc:
            if isinstance(exc, TelegramRetryAfter):
                self.turns.limited(c.chat_id, float(exc.retry_after))
            await self._failed(c, exc)
            return
        self.turns.sent(c.chat_id)
        metrics().relay(c.direction)
        # After every send: on the driver's connection, no session (routing/store/lane.py).
        steps = [sending.sent_step(c.id, now=self.now(), agent_id=c.agent_id)]
        if c.direction == TO_AGENT:
            chat = dest.chat_id if dest is not None else c.chat_id
            kind = c.link_kind or enqueue.LINK_RELAY
            steps += [conversations.link_step(chat, m, c.conversation_id, kind) for m in sent]
            if c.agent_id is not None:
                steps.append(conversations.last_inbound_step(c.agent_id, c.conversation_id))
        await self._marks.write(steps)
        if c.direction == TO_AGENT:
            # Done, its mark committed: a claim read after this sees it (_switch_header).
            started = self._agent_sends[c.chat_id][0]
            self._seq += 1
            self._agent_sends[c.chat_id] = (started, self._seq)

    async def _call(self, c: Claimed, dest: Destination | None = None) -> list[int]:
        timeout = self.request_timeout
        chat, thread = (dest.chat_id, dest.thread_id) if dest is not None else (c.chat_id, None)
        ids = dest.message_ids if dest is not None else c.message_ids
        if c.kind == enqueue.KIND_TEXT:
            msg = await self.bot.send_message(
                chat, c.text or "", message_thread_id=thread, request_timeout=timeout
            )
            sent = [msg.message_id]
        elif not ids:
            sent = []  # every copy is in the topic already
        elif len(ids) == 1:
            assert c.from_chat_id is not None
            one = await self.bot.copy_message(
                chat, c.from_chat_id, ids[0], message_thread_id=thread, request_timeout=timeout
            )
            sent = [one.message_id]
        else:
            assert c.from_chat_id is not None
            many = await self.bot.copy_messages(
                chat, c.from_chat_id, ids, message_thread_id=thread, request_timeout=timeout
            )
            sent = [m.message_id for m in many]
        if self.router is not None and dest is not None:
            await self.router.sent(c, dest, sent)
        return sent

    async def _switch_header(self, c: Claimed, fresh: bool = False) -> bool:
        """With several chats open, a header says whose messages follow (as relays did).
        Returns whether one was sent.

        ``fresh``: no send to the agent's chat by this process began or was still being
        marked after the claim read the holder's state (``c.holder_state``), so it is what a
        read now would find; then it decides, and no statement is needed (issue 19)."""
        if c.agent_id is None:
            return False
        if fresh and c.holder_state is not None:
            last_inbound, open_chats = c.holder_state
            due = conversations.header_is_due(last_inbound, open_chats, c.conversation_id)
        else:
            due = await conversations.header_needed(self.engine, c.agent_id, c.conversation_id)
        # The names are read only when a header is due.
        if not due:
            return False
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, c.conversation_id)
            customer = await s.get(Customer, conv.customer_id) if conv is not None else None
            if conv is None or customer is None:
                return False
            text = texts.agent.header(conv, customer)
        head = await self.bot.send_message(c.chat_id, text, request_timeout=self.request_timeout)
        await lane.write_all(
            self.engine,
            [
                conversations.link_step(
                    c.chat_id, head.message_id, c.conversation_id, enqueue.LINK_HEADER
                ),
                conversations.last_inbound_step(c.agent_id, c.conversation_id),
            ],
        )
        return True

    async def _failed(self, c: Claimed, exc: BaseException) -> None:
        code, retry_after = _classify(exc)
        metrics().telegram_error(code, "delivery")
        now = self.now()
        delay = sending.retry_delay(
            code,
            retry_after=retry_after,
            failures=c.attempts,
            age_seconds=(now - c.created_at).total_seconds(),
            backoff=self.backoff,
        )
        error = f"{code or 'network'}: {exc}"
        if delay is not None:
            at = now + timedelta(seconds=delay)
            log.info("delivery %s to %s failed (%s); again in %.1fs", c.id, c.chat_id, error, delay)
            async with self.sessions() as s, s.begin():
                # A flood wait is Telegram pacing us, not a failure: it must not lengthen
                # the backoff of a later outage.
                await sending.retry_at(s, c.id, at=at, error=error, counted=code != 429)
            self._schedule(c.conversation_id, at)
            return
        log.warning("delivery %s to %s failed for good: %s", c.id, c.chat_id, error)
        if c.direction == TO_CUSTOMER:
            await self._tell_agent(c, code, exc)
            return
        if c.relay and code == 403 and c.agent_id is not None and self.on_agent_unreachable:
            async with self.sessions() as s, s.begin():
                await sending.give_back(s, c.id, now=now, error=error)
            async with self.sessions() as s:
                await self.on_agent_unreachable(s, c.agent_id)
            return
        async with self.sessions() as s, s.begin():
            await sending.fail(s, c.id, now=now, error=error)

    async def _tell_agent(self, c: Claimed, code: int | None, exc: BaseException) -> None:
        """An agent's message cannot reach the customer: tell that agent, once."""
        now = self.now()
        async with self.sessions() as s, s.begin():
            told = code == 403 and await sending.blocked_before(s, c.conversation_id)
            await sending.fail(s, c.id, now=now, error=f"{code or 'network'}: {exc}")
            more = 0
            if code == 403:
                more = await sending.fail_destination(
                    s, c.conversation_id, TO_CUSTOMER, now=now, error="the customer blocked the bot"
                )
            agent_id = await s.scalar(select(Agent.id).where(Agent.telegram_id == c.from_chat_id))
            if agent_id is None or told:
                return  # an agent's side is told of a block once per conversation
            with for_agents():  # the desk's language, whoever's update this runs in
                if code == 403:
                    note = texts.agent.blocked(more + 1)
                elif code is None or code >= 500:
                    note = texts.agent.gave_up()
                else:
                    message = exc.message if isinstance(exc, TelegramAPIError) else str(exc)
                    note = texts.agent.refused(escape(message))
            await enqueue.note_to_agent(
                s,
                c.conversation_id,
                note,
                agent_id=agent_id,
                link_kind=enqueue.LINK_HEADER,
                now=now,
            )
        await self._drain(c.conversation_id, TO_AGENT, wait=False)
