"""The desk's Telegram calls: page notices with a Claim button, offers, the edits that settle
them, messages to customers in their own language, previews of what a customer wrote.

Every send here is best-effort (a refusal is logged, never raised) and happens outside any
database transaction; a notice that went out is linked to its conversation in a short one,
so that whoever takes the chat can settle it (``handover``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup
from aiogram.types import Message as SentMessage
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import keyboards, texts
from bot.adapters.content import Content
from bot.chat_turns import ChatTurns
from bot.i18n import for_agents, for_customer
from routing.queue import conversations
from routing.store.models import Agent, Conversation, Customer

log = logging.getLogger(__name__)

# A notice (a page, an offer) waits its chat's turn and Telegram's 429s at most this long in
# all; then it is given up, logged, and the queue's sweep announces the chat again.
NOTICE_MAX_WAIT = 30.0


class Notices:
    def __init__(self, bot: Bot, turns: ChatTurns | None = None) -> None:
        self.bot = bot
        # Whose turn it is to send into each chat: the deliverer's (Desk.delivery), so that
        # pages and relays into an agent's chat share its pace after a 429.
        self.turns = turns or ChatTurns(time.monotonic)

    async def preview(self, session: AsyncSession, conv_id: int) -> str | None:
        """A short view of the customer's first message (for notices); None if there is none."""
        first = next(
            (m for m in await conversations.transcript(session, conv_id) if m.sender == "customer"),
            None,
        )
        if first is None:
            return None
        return Content(first.content_type, first.text, first.file_id).preview()

    async def page(
        self,
        session: AsyncSession,
        agent: Agent,
        conv: Conversation,
        customer: Customer,
        preview: str | None,
        manager: bool,
    ) -> None:
        """Tell an agent of a waiting chat, with a Claim button (``manager``: theirs)."""
        await self.page_all(session, [(agent, manager)], conv, customer, preview)

    async def page_all(
        self,
        session: AsyncSession,
        pages: Sequence[tuple[Agent, bool]],
        conv: Conversation,
        customer: Customer,
        preview: str | None,
    ) -> None:
        """:meth:`page` each of ``pages`` (an agent, and whether the chat is their account's).

        The pages go out together, each into its own agent's chat at that chat's pace, and
        the ones that went out are linked in one short transaction. One after the other, a
        VIP's chat paged to three agents waited for three sends and wrote three links before
        the VIP was answered (issue 19)."""
        # Paged while handling the customer's update: speak the desk's language, not theirs.
        with for_agents():
            notes = [
                (agent, texts.agent.notification(conv, customer, preview, manager))
                for agent, manager in pages
            ]
            claim = keyboards.claim(conv.id)
        sent = await asyncio.gather(
            *(self._notice(agent.telegram_id, note, claim, "page agent") for agent, note in notes)
        )
        links = [
            (agent.telegram_id, message.message_id)
            for (agent, _), message in zip(notes, sent, strict=True)
            if message is not None
        ]
        if links:
            engine = session.bind
            assert isinstance(engine, AsyncEngine)
            await conversations.links_now(engine, links, conv.id, "notification")

    async def _notice(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup, what: str
    ) -> SentMessage | None:
        """:meth:`send_in_turn`, or None (logged) when Telegram refused it."""
        try:
            return await self.send_in_turn(chat_id, text, markup)
        except TelegramAPIError as exc:
            log.warning("could not %s %s: %s", what, chat_id, exc)
            return None

    async def announce(
        self,
        session: AsyncSession,
        agent: Agent,
        conv_id: int,
        text: str,
        markup: InlineKeyboardMarkup,
        *,
        what: str,
    ) -> SentMessage | None:
        """Send an agent a notice about a chat and link it as the chat's notification (the
        hand-over rewrites it when anyone takes the chat). None if it could not be sent."""
        sent = await self._notice(agent.telegram_id, text, markup, what)
        if sent is None:
            return None
        # Its own short transaction on the driver's connection (routing/store/lane.py).
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        await conversations.link_now(
            engine, agent.telegram_id, sent.message_id, conv_id, "notification"
        )
        return sent

    async def send_in_turn(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> SentMessage:
        """Send at the chat's pace. A 429 waits ``retry_after`` and tries again, and paces
        the chat for everyone sending into it (bot/chat_turns.py): a VIP's page into an
        agent's busy chat once got a 429 and was lost, the VIP left unannounced.

        The pace only, not the deliverer's line (``ChatTurns.turn``): a notice is one quick
        send, and holding the line made the deliverer put the chat's relays off (it looks
        again later when it finds the chat busy), so a claimed chat's waiting messages could
        reach the agent after their own reply."""
        deadline = time.monotonic() + NOTICE_MAX_WAIT
        while True:
            if wait := self.turns.wait(chat_id):
                await asyncio.sleep(wait)
            try:
                sent = await self.bot.send_message(chat_id, text, reply_markup=markup)
            except TelegramRetryAfter as exc:
                self.turns.limited(chat_id, float(exc.retry_after))
                if time.monotonic() + exc.retry_after > deadline:
                    raise
                continue
            self.turns.sent(chat_id)
            return sent

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Rewrite a notice (and drop its buttons)."""
        try:
            await self.bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=None
            )
        except TelegramAPIError as exc:
            # "message is not modified" or deleted by the agent: nothing to settle.
            log.debug("edit of %s/%s failed: %s", chat_id, message_id, exc)

    async def send(self, chat_id: int, text: str) -> None:
        """A message that must go (an error is the caller's)."""
        await self.bot.send_message(chat_id, text)

    async def send_quietly(self, chat_id: int, text: str) -> None:
        try:
            await self.bot.send_message(chat_id, text)
        except TelegramAPIError as exc:
            log.warning("could not message %s: %s", chat_id, exc)

    async def tell(self, customer: Customer, make: Callable[..., str], *args: Any) -> None:
        """A message to a customer, in their language whoever triggered it."""
        if customer.telegram_id is None:
            return
        with for_customer(customer):
            text = make(*args)
        await self.send_quietly(customer.telegram_id, text)
