"""After a won claim (or a transfer): settle every notice, brief the agent, greet the customer;
and the relay of a customer's messages to their agent through the delivery queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import texts
from bot.desk.briefing import hand_over_items
from bot.desk.notify import Notices
from bot.i18n import for_customer
from routing.clock import utcnow
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import conversations
from routing.store import inbox
from routing.store.models import ASSIGNED, TO_AGENT, Agent, Conversation, Customer

if TYPE_CHECKING:
    from bot.delivery import Deliverer


@dataclass(frozen=True)
class Earlier:
    """What an earlier handling of this update did (routing/store/inbox.py, ``Effect``).

    A crash between a handler's commit and the inbox's done mark makes the next start handle
    the update again. Claiming again would take a second chat (/next takes whichever is
    next), closing or transferring again would act on the agent's next chat: the handler
    resumes instead, with the hand-over the crash cut off, if any."""

    effect: inbox.Effect
    hand_over: tuple[Agent, Conversation] | None  # still to do: to whom, which chat


async def earlier(session: AsyncSession, update_id: int) -> Earlier | None:
    effect = await inbox.effect_of(session, update_id)
    if effect is None:
        return None
    conv = await session.get(Conversation, effect.conversation_id)
    if (
        effect.agent_id is None
        or conv is None
        or conv.status != ASSIGNED
        or conv.agent_id != effect.agent_id
        or not await enqueue.handing_over(session, conv.id)
    ):
        return Earlier(effect, None)  # done, or the chat moved on since
    agent = await session.get(Agent, effect.agent_id)
    return Earlier(effect, (agent, conv) if agent is not None else None)


async def hold(
    session: AsyncSession,
    update_id: int,
    conv: Conversation,
    agent: Agent,
    *,
    now: datetime,
    kind: str = inbox.CLAIMED,
) -> None:
    """In the transaction that gives ``agent`` the chat (a claim, a transfer): the
    customer's messages wait for the briefing :meth:`Handover.hand_over` queues next, and the
    update records what it did (:class:`Earlier`)."""
    await enqueue.hold_for_hand_over(session, conv.id, agent.id, now=now)
    await inbox.record_effect(session, update_id, inbox.Effect(kind, conv.id, agent.id))


class Handover:
    def __init__(
        self, notices: Notices, delivery: Deliverer | None = None, policy: Policy | None = None
    ) -> None:
        self.notices = notices
        self.policy = policy or Policy()
        # The per-chat delivery queue's sender (bot/delivery.py); set by make_dispatcher.
        self.delivery = delivery

    def now(self) -> datetime:
        """Real time, which the delivery queue's timers run on (not the bot's clock)."""
        return self.delivery.now() if self.delivery is not None else utcnow()

    async def kick(self, conversation_id: int, direction: str | None = None) -> None:
        """Deliver what this conversation has queued (after the commit), one way or both.
        Without a deliverer (the scheduler's desk) the rows wait for the bot's sweep."""
        if self.delivery is not None:
            await self.delivery.kick(conversation_id, direction)

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
            # Queued for whoever holds the chat: they follow the briefing as they are.
            waiting = await enqueue.waiting_message_ids(session, conv.id)
            # The customer card, then what the chat holds (labelled if someone held it).
            items = await hand_over_items(session, self.policy, conv, customer, by, waiting)
            await enqueue.hand_over(
                session, conv.id, agent.id, conv.assigned_at, items, now=self.now()
            )
        for note in notes:
            text = (
                texts.agent.you_took(conv, customer)
                if note.chat_id == agent.telegram_id
                else texts.agent.taken_by(conv, customer, agent.name)
            )
            await self.notices.edit(note.chat_id, note.message_id, text)
        # The briefing and the messages behind it go to the agent; nothing was queued for
        # the customer here (their earlier rows were kicked when queued).
        await self.kick(conv.id, TO_AGENT)
        if greet and customer.telegram_id is not None:
            with for_customer(customer):
                joined = texts.customer.agent_joined(agent.name)
            await self.notices.send_quietly(customer.telegram_id, joined)

    async def settle_lost(
        self, chat_id: int, message_id: int, conv: Conversation, customer: Customer, holder: str
    ) -> None:
        """A notice whose Claim lost the race: it now says who took the chat."""
        await self.notices.edit(chat_id, message_id, texts.agent.taken_by(conv, customer, holder))

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
        await self.kick(conv.id, TO_AGENT)
