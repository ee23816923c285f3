"""The help desk's Telegram side: paging agents, handing over claims, relaying messages.

Handlers stay thin and call these. Each method keeps database transactions short and makes
Telegram calls outside them, so a slow API call never holds SQLite's write lock.
"""

from __future__ import annotations

import logging
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from bot.delivery import Deliverer

from bot import keyboards, texts, texts_queue
from bot.adapters.content import Content
from bot.i18n import for_agents, for_customer
from routing.clock import Clock, utcnow
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import agents, claims, conversations, eligibility
from routing.store.models import Agent, Conversation, Customer

log = logging.getLogger(__name__)


class Desk:
    def __init__(
        self, bot: Bot, policy: Policy, clock: Clock, delivery: Deliverer | None = None
    ) -> None:
        self.bot = bot
        self.policy = policy
        self.clock = clock
        # The per-chat delivery queue's sender (bot/delivery.py); set by make_dispatcher.
        self.delivery = delivery
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
            items = await claims.waiting(session, self.policy.queue.queue_page_size)
            previews = {c.id: await self._preview(session, c.id) for c, _ in items}
        now = self.clock()
        for conv, customer in items:
            # Only chats this agent may take: their tiers, and not held for someone else.
            if not eligibility.serves(eligibility.parse_tiers(agent.tiers), conv.tier) or (
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

        The briefing ("you took", a transfer's note, what the agent has not seen of the
        transcript) goes through the delivery queue in one transaction, with the customer's
        messages that waited for whoever would hold the chat moved behind it: nothing written
        before, during or after the claim is lost or comes before the header.
        """
        async with session.begin():
            customer = await session.get(Customer, conv.customer_id)
            assert customer is not None
            notes = await conversations.notifications(session, conv.id)
            transferred = conv.transferred_by is not None
            by = await session.get(Agent, conv.transferred_by) if transferred else None
            waiting = await enqueue.waiting_message_ids(session, conv.id)
            items = [enqueue.Briefing(text=texts.you_took(conv, customer), link_kind="header")]
            if by is not None:
                items.append(
                    enqueue.Briefing(
                        text=texts_queue.transfer_note(by.name, conv.transfer_note),
                        link_kind="header",
                    )
                )
            for m in await conversations.transcript(session, conv.id):
                if (m.chat_id, m.message_id) in waiting:
                    continue  # queued for whoever holds the chat: it follows the briefing
                if m.content_type == conversations.CONTENT_SURVEY:
                    # The answer that opened a service-recovery chat: its text, since copying
                    # would bring the customer's survey question instead.
                    items.append(enqueue.Briefing(text=escape(m.text or ""), link_kind="header"))
                elif transferred or m.sender == "customer":
                    items.append(
                        enqueue.Briefing(from_chat_id=m.chat_id, message_ids=(m.message_id,))
                    )
            await enqueue.hand_over(
                session, conv.id, agent.id, conv.assigned_at, items, now=self.now()
            )
        for note in notes:
            text = (
                texts.you_took(conv, customer)
                if note.chat_id == agent.telegram_id
                else texts.taken_by(conv, customer, agent.name)
            )
            await self._edit(note.chat_id, note.message_id, text)
        await self.kick(conv.id)
        if greet and customer.telegram_id is not None:
            with for_customer(customer):
                joined = texts.agent_joined(agent.name)
            await self.send_quietly(customer.telegram_id, joined)

    async def agent_unreachable(self, session: AsyncSession, agent_id: int) -> None:
        """An agent's chat refuses the bot (they blocked it): offline, chats back in the queue."""
        async with session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                return
            agent.online = False
        log.warning("agent %s blocked the bot: offline, chats requeued", agent.telegram_id)
        await self.queue.requeue_agent(session, agent)

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
    def now(self) -> datetime:
        """Real time, which the delivery queue's timers run on (not the bot's clock)."""
        return self.delivery.now() if self.delivery is not None else utcnow()

    async def kick(self, conversation_id: int) -> None:
        """Deliver what this conversation has queued (after the commit). Without a deliverer
        (the scheduler's desk) the rows wait for the bot's sweep."""
        if self.delivery is not None:
            await self.delivery.kick(conversation_id)

    async def relay_to_agent(
        self, session: AsyncSession, conv: Conversation, customer: Customer, message: Message
    ) -> None:
        """Queue a customer's message for their agent (transcript already stored) and send it."""
        async with session.begin():
            await enqueue.to_agent(
                session,
                conv.id,
                from_chat_id=message.chat.id,
                message_id=message.message_id,
                media_group_id=message.media_group_id,
                now=self.now(),
            )
        await self.kick(conv.id)
