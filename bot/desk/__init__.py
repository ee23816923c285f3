"""The help desk's Telegram side: it carries out what routing/ decides, nothing more.

Who gets a chat, whom to page, position and ETA are decided in ``routing.queue.assignment``
(with ``routing.queue.eligibility``'s one check); the modules here send and edit messages:

- :mod:`bot.desk.notify`: page notices, edits, messages to customers, previews;
- :mod:`bot.desk.handover`: after a won claim (briefing, settling notices), the relay;
- :mod:`bot.desk.queue`: a newly queued chat's plan, announcements, offers, requeues,
  transfers and the queue sweep.

Each imports only those listed before it. :class:`Desk` is the one object handlers get
(``dp["desk"]``): the names they call, each handed to the module that does it. Every method
keeps database transactions short and makes Telegram calls outside them, so a slow API call
never holds SQLite's write lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.desk.handover import Handover
from bot.desk.notify import Notices
from bot.desk.queue import QueueDesk
from bot.desk.topics import TopicNotices, TopicsView
from bot.http.metrics import metrics
from routing.clock import Clock
from routing.policy.root import Policy
from routing.store.models import Agent, Conversation, Customer

if TYPE_CHECKING:
    from bot.delivery import Deliverer

__all__ = ["Desk"]


class Desk:
    def __init__(
        self, bot: Bot, policy: Policy, clock: Clock, delivery: Deliverer | None = None
    ) -> None:
        self.bot = bot
        self.policy = policy
        self.clock = clock
        # Topics mode (bot/desk/topics.py): the same decisions, rendered in the staff group.
        self.topics = TopicsView(bot, policy, clock) if policy.desk.topics else None
        self.notices = TopicNotices(bot, self.topics) if self.topics else Notices(bot)
        self.handover = Handover(self.notices, delivery, policy)
        # The queue (plans for new chats, offers, windows, SLAs, transfers): bot/desk/queue.py.
        self.queue = QueueDesk(self.notices, self.handover, policy, clock)
        self.queue.topics = self.topics

    @property
    def delivery(self) -> Deliverer | None:
        """The per-chat delivery queue's sender (bot/delivery.py); set by make_dispatcher."""
        return self.handover.delivery

    @delivery.setter
    def delivery(self, deliverer: Deliverer | None) -> None:
        self.handover.delivery = deliverer
        if deliverer is not None:
            self.notices.turns = deliverer.turns  # pages and relays share a chat's pace
        if deliverer is not None and self.topics is not None:
            deliverer.router = self.topics
            self.topics.sessions = deliverer.sessions

    # --- paging ---------------------------------------------------------------------
    async def page(
        self, session: AsyncSession, conv: Conversation, customer: Customer, preview: str | None
    ) -> int:
        """Route a newly queued chat (``routing.queue.assignment.plan``): notify online
        agents (the account manager first, or alone for the manager-first window), or offer
        it in offer mode. Returns how many agents serving its tier were online."""
        if self.topics is not None:
            await self.topics.on_queued(session, conv, customer, preview)
        return await self.queue.on_queued(session, conv, customer, preview)

    async def announce_waiting(self, session: AsyncSession, agent: Agent) -> int:
        """Show an agent who just came online every chat that waited for somebody."""
        return await self.queue.announce_waiting(session, agent)

    # --- claims ---------------------------------------------------------------------
    async def hand_over(
        self, session: AsyncSession, agent: Agent, conv: Conversation, *, greet: bool = True
    ) -> None:
        """After a won claim: settle every notification, brief the agent, greet the customer."""
        if conv.assigned_at is not None:
            metrics().claimed(conv.tier, (conv.assigned_at - conv.queued_at).total_seconds())
        await self.handover.hand_over(session, agent, conv, greet=greet)
        if self.topics is not None:
            await self.topics.on_claimed(session, conv)
            await self.topics.refresh_board(session)

    async def agent_unreachable(self, session: AsyncSession, agent_id: int) -> None:
        """An agent's chat refuses the bot (they blocked it): offline, chats back in the queue."""
        await self.queue.agent_unreachable(session, agent_id)

    async def settle_lost(
        self, chat_id: int, message_id: int, conv: Conversation, customer: Customer, holder: str
    ) -> None:
        await self.handover.settle_lost(chat_id, message_id, conv, customer, holder)

    async def send_quietly(self, chat_id: int, text: str) -> None:
        await self.notices.send_quietly(chat_id, text)

    # --- relay ----------------------------------------------------------------------
    def now(self) -> datetime:
        """Real time, which the delivery queue's timers run on (not the bot's clock)."""
        return self.handover.now()

    async def kick(self, conversation_id: int, direction: str | None = None) -> None:
        """Deliver what this conversation has queued (after the commit), ``direction`` only
        when the caller queued rows one way (a relay), else both ways."""
        await self.handover.kick(conversation_id, direction)

    async def relay_to_agent(
        self, session: AsyncSession, conv: Conversation, customer: Customer, message: Message
    ) -> None:
        """Queue a customer's message for their agent (transcript already stored) and send it."""
        await self.handover.relay_to_agent(session, conv, customer, message)
