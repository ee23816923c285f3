"""The help desk's Telegram side: paging agents, handing over claims, relaying messages.

Handlers stay thin and call these. Each method keeps database transactions short and makes
Telegram calls outside them, so a slow API call never holds SQLite's write lock.
"""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts, texts_queue
from bot.clock import Clock
from bot.content import Content
from bot.i18n import for_agents, for_customer
from routing import agents, conversations, queue
from routing.models import Agent, Conversation, Customer
from routing.policy import Policy

log = logging.getLogger(__name__)


class Desk:
    def __init__(self, bot: Bot, policy: Policy, clock: Clock) -> None:
        self.bot = bot
        self.policy = policy
        self.clock = clock
        from bot.queue_desk import QueueDesk

        # The queue's rules (offers, windows, SLAs, transfers): bot/queue_desk.py.
        self.queue = QueueDesk(self)

    # --- paging ---------------------------------------------------------------------
    async def page(
        self, session: AsyncSession, conv: Conversation, customer: Customer, preview: str | None
    ) -> int:
        """Route a newly queued chat: notify online agents (the account manager first, or
        alone for the manager-first window), or offer it in offer mode.

        Returns how many agents serving its tier were online (0: nobody is there).
        """
        return await self.queue.on_queued(session, conv, customer, preview)

    async def announce_waiting(self, session: AsyncSession, agent: Agent) -> int:
        """Show an agent who just came online every chat that waited for somebody."""
        async with session.begin():
            items = await queue.waiting(session, self.policy.queue.queue_page_size)
            previews = {c.id: await self._preview(session, c.id) for c, _ in items}
        now = self.clock()
        for conv, customer in items:
            # Only chats this agent may take: their tiers, and not held for someone else.
            if not queue.serves(queue.parse_tiers(agent.tiers), conv.tier) or (
                conv.reserved_agent_id not in (None, agent.id)
                and conv.reserved_until is not None
                and conv.reserved_until > now
            ):
                continue
            is_manager = agents.find_manager([agent], customer.account_manager) is not None
            await self._notify(session, agent, conv, customer, previews[conv.id], is_manager)
        return len(items)

    async def _preview(self, session: AsyncSession, conv_id: int) -> str | None:
        first = next(
            (m for m in await conversations.transcript(session, conv_id) if m.sender == "customer"),
            None,
        )
        if first is None:
            return None
        return Content(first.content_type, first.text, first.file_id).preview()

    async def _notify(
        self,
        session: AsyncSession,
        agent: Agent,
        conv: Conversation,
        customer: Customer,
        preview: str | None,
        manager: bool,
    ) -> None:
        # Paged while handling the customer's update: speak the desk's language, not theirs.
        with for_agents():
            note = texts.notification(conv, customer, preview, manager)
            claim = keyboards.claim(conv.id)
        try:
            sent = await self.bot.send_message(agent.telegram_id, note, reply_markup=claim)
        except TelegramAPIError as exc:
            log.warning("could not page agent %s: %s", agent.telegram_id, exc)
            return
        async with session.begin():
            await conversations.link(
                session, agent.telegram_id, sent.message_id, conv.id, "notification"
            )

    # --- claims ---------------------------------------------------------------------
    async def hand_over(
        self, session: AsyncSession, agent: Agent, conv: Conversation, *, greet: bool = True
    ) -> None:
        """After a won claim: settle every notification, brief the agent, greet the customer.

        A transferred chat also shows the transfer note and the whole transcript so far.
        """
        async with session.begin():
            customer = await session.get(Customer, conv.customer_id)
            assert customer is not None
            notes = await conversations.notifications(session, conv.id)
            transferred = conv.transferred_by is not None
            backlog = [
                m
                for m in await conversations.transcript(session, conv.id)
                if transferred
                or m.sender == "customer"
                or m.content_type == conversations.CONTENT_SURVEY
            ]
            by = await session.get(Agent, conv.transferred_by) if transferred else None
        for note in notes:
            text = (
                texts.you_took(conv, customer)
                if note.chat_id == agent.telegram_id
                else texts.taken_by(conv, customer, agent.name)
            )
            await self._edit(note.chat_id, note.message_id, text)
        links: list[tuple[int, str]] = []
        try:
            head = await self.bot.send_message(agent.telegram_id, texts.you_took(conv, customer))
            links.append((head.message_id, "header"))
            if by is not None:
                brief = await self.bot.send_message(
                    agent.telegram_id, texts_queue.transfer_note(by.name, conv.transfer_note)
                )
                links.append((brief.message_id, "header"))
            for m in backlog:
                if m.content_type == conversations.CONTENT_SURVEY:
                    # The answer that opened a service-recovery chat: its text, since copying
                    # would bring the customer's survey question instead.
                    answer = await self.bot.send_message(agent.telegram_id, escape(m.text or ""))
                    links.append((answer.message_id, "header"))
                    continue
                copy = await self.bot.copy_message(agent.telegram_id, m.chat_id, m.message_id)
                links.append((copy.message_id, "relay"))
        except TelegramAPIError as exc:
            log.warning("could not brief agent %s on #%s: %s", agent.telegram_id, conv.id, exc)
        async with session.begin():
            for mid, kind in links:
                await conversations.link(session, agent.telegram_id, mid, conv.id, kind)
            fresh = await session.get(Agent, agent.id)
            if fresh is not None:
                fresh.last_inbound_conversation_id = conv.id
        if greet and customer.telegram_id is not None:
            with for_customer(customer):
                joined = texts.agent_joined(agent.name)
            await self.send_quietly(customer.telegram_id, joined)

    async def settle_lost(
        self, chat_id: int, message_id: int, conv: Conversation, customer: Customer, holder: str
    ) -> None:
        await self._edit(chat_id, message_id, texts.taken_by(conv, customer, holder))

    async def _edit(self, chat_id: int, message_id: int, text: str) -> None:
        try:
            await self.bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=None
            )
        except TelegramAPIError as exc:
            # "message is not modified" or deleted by the agent: nothing to settle.
            log.debug("edit of %s/%s failed: %s", chat_id, message_id, exc)

    async def send_quietly(self, chat_id: int, text: str) -> None:
        try:
            await self.bot.send_message(chat_id, text)
        except TelegramAPIError as exc:
            log.warning("could not message %s: %s", chat_id, exc)

    # --- relay ----------------------------------------------------------------------
    async def relay_to_agent(
        self, session: AsyncSession, conv: Conversation, customer: Customer, message: Message
    ) -> None:
        """Copy a customer's message into their agent's chat (transcript already stored)."""
        async with session.begin():
            agent = await session.get(Agent, conv.agent_id) if conv.agent_id else None
            if agent is None:
                return
            several = len(await conversations.agent_chats(session, agent)) > 1
            switch = several and agent.last_inbound_conversation_id != conv.id
        links: list[tuple[int, str]] = []
        try:
            if switch:
                # With several chats open, a header says whose messages follow.
                head = await self.bot.send_message(agent.telegram_id, texts.header(conv, customer))
                links.append((head.message_id, "header"))
            copy = await self.bot.copy_message(
                agent.telegram_id, message.chat.id, message.message_id
            )
            links.append((copy.message_id, "relay"))
        except TelegramAPIError as exc:
            log.warning("relay of #%s to agent %s failed: %s", conv.id, agent.telegram_id, exc)
        async with session.begin():
            for mid, kind in links:
                await conversations.link(session, agent.telegram_id, mid, conv.id, kind)
            agent.last_inbound_conversation_id = conv.id
            session.add(agent)

    async def relay_to_customer(self, customer: Customer, message: Message) -> str | None:
        """Copy an agent's message to the customer. Returns an error text for the agent, if any."""
        if customer.telegram_id is None:
            return "This customer is no longer reachable on Telegram; the message was not sent."
        try:
            await self.bot.copy_message(customer.telegram_id, message.chat.id, message.message_id)
        except TelegramForbiddenError:
            return "The customer has blocked the bot; the message was not delivered."
        except TelegramAPIError as exc:
            return f"Telegram refused the message: {exc.message}"
        return None
