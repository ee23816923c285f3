"""Per-update plumbing: one DB session, the sender as agent or customer, and redelivery guard.

Button presses are answered by :class:`PressAnswers` (aiogram's
``CallbackAnswerMiddleware``, registered in ``bot.app.make_dispatcher``) once the handler
returns; a handler that has something to say sets the text on its ``callback_answer``
argument, or calls :func:`alert`; one that does slow work after deciding calls
:func:`answer_now` first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Chat, TelegramObject, Update, User
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.clock import Clock
from routing.customers import identity as customers
from routing.policy.root import Policy
from routing.store import sqlite_driver
from routing.store import update_lookup as senders

log = logging.getLogger(__name__)

_SEEN = object()  # the update was handled before (a redelivery)

# A look-up run after the sender's lookup that adds its answer to the handler data (e.g.
# bot.handlers.survey.find_awaiting_comment, which reads what the lookup fetched): a filter
# that needs the database then reads the data instead of querying on every update.
Preload = Callable[[AsyncSession, Update, dict[str, Any]], Awaitable[None]]


class DbSessionMiddleware(BaseMiddleware):
    """Registered as ``dp.update.outer_middleware``.

    Gives handlers ``session``, ``agent`` (a registered agent, else None) and ``customer``
    (everyone else in a private chat: an imported customer or a guest row), and
    ``open_conversation`` (that customer's queued or assigned chat), plus whatever the
    ``preloads`` add, all from one statement. An update the inbox already marked handled
    (bot/intake.py) is skipped rather than, say, relayed twice.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: Policy,
        clock: Clock,
        preloads: Sequence[Preload] = (),
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.clock = clock
        self.preloads = tuple(preloads)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        private = chat is None or chat.type == "private"
        person = user is not None and not user.is_bot and private
        with sqlite_driver.inline():
            result = await self._handle(handler, event, data, user if person else None)
        return None if result is _SEEN else result

    async def _handle(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: Update,
        data: dict[str, Any],
        user: User | None,
    ) -> Any:
        async with self.sessions() as session:
            now = self.clock()
            since = now - timedelta(minutes=self.policy.surveys.comment_minutes)
            # One statement, outside any transaction (it reads one snapshot): no BEGIN, no
            # COMMIT, for every update (routing/store/update_lookup.py).
            found = await senders.lookup(session, event.update_id, user.id if user else None, since)
            if found.seen:
                return _SEEN
            agent, customer = found.agent, found.customer
            if user is not None and agent is None and customer is None:
                async with session.begin():
                    customer = await customers.ensure_customer(
                        session,
                        user.id,
                        name=user.full_name,
                        language=user.language_code,
                        policy=self.policy,
                        now=now,
                    )
            data["session"] = session
            data["agent"] = agent
            data["customer"] = customer
            # Found with the customer (None for a new guest, who has none).
            data["open_conversation"] = found.conversation
            data["lookup"] = found
            for preload in self.preloads:
                await preload(session, event, data)
            return await handler(event, data)


class ChatOrderMiddleware(BaseMiddleware):
    """Handle one chat's updates in arrival order, different chats in parallel.

    aiogram runs updates as concurrent tasks; without this, two quick messages from one
    customer could be relayed to the agent in the wrong order.
    """

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        if chat is None:
            return await handler(event, data)
        key = chat.id
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                return await handler(event, data)
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                # Drop idle locks so memory does not grow with the number of chats ever seen.
                del self._users[key]
                del self._locks[key]


def alert(callback_answer: CallbackAnswer, text: str) -> None:
    """Answer the button press with ``text`` in an alert (sent when the handler returns)."""
    callback_answer.text = text
    callback_answer.show_alert = True


async def answer_now(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    """Answer the press now, with what ``callback_answer`` holds, instead of when the handler
    returns: before slow work (a hand-over's briefing and backlog), so that the button stops
    spinning first and the answer is not overtaken by the messages that work sends."""
    callback_answer.disable()  # the middleware sends nothing more
    await _answer(query, callback_answer)


def _too_late(exc: TelegramBadRequest) -> bool:
    return "query is too old" in exc.message or "query ID is invalid" in exc.message


async def _answer(query: CallbackQuery, callback_answer: CallbackAnswer) -> bool:
    """Answer a press, best-effort: Telegram takes an answer only within seconds of the press
    and only once. A press handled later (the bot was down, a backlog, or the same update
    handled again after a crash) is refused with 400 "query is too old"; the press itself
    was handled, and the button stopped spinning on its own. That refusal once failed the
    update, which was retried, its effects repeated, and quarantined."""
    try:
        await query.answer(
            text=callback_answer.text,
            show_alert=callback_answer.show_alert,
            url=callback_answer.url,
            cache_time=callback_answer.cache_time,
        )
    except TelegramBadRequest as exc:
        if not _too_late(exc):
            raise
        log.info("press %s answered too late: %s", query.id, exc.message)
        return False
    return True


class PressAnswers(CallbackAnswerMiddleware):
    """aiogram's callback answering, with a late press's refused answer logged, not raised."""

    async def answer(  # type: ignore[override]  # awaited by __call__ either way
        self, event: CallbackQuery, callback_answer: CallbackAnswer
    ) -> bool:
        return await _answer(event, callback_answer)
