"""``routing.complaints.chats.CasePager`` over the desk: who hears of a complaint's chat.

The same two calls as the detractor's service recovery (``BotRecoveryPager`` in
bot/handlers/survey.py; both are :class:`ManagerPager`): a newly queued chat goes through
the desk's assignment plan (``Desk.page``: the account manager first when online, the claim
button), and a human_first customer's account manager is also told at once by a direct
message, online or not, unless the desk's page just reached them. Both are best-effort and
run after the case committed.
"""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramAPIError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.desk import Desk
from bot.i18n import for_agents
from routing.queue import agents, conversations
from routing.store.models import QUEUED, Agent, Conversation, Customer

log = logging.getLogger(__name__)


def customer_name(customer: Customer) -> str:
    return customer.name or customer.external_id or f"#{customer.id}"


class ManagerPager:
    """Who hears of a chat a case or a detractor's answer queued: the desk's assignment plan,
    and the customer's account manager by a direct message (``manager_text`` says what)."""

    def __init__(self, session: AsyncSession, desk: Desk) -> None:
        self.session = session
        self.desk = desk

    def manager_text(self, customer: Customer, summary: str, conversation_id: int) -> str:
        raise NotImplementedError

    async def page_agents(self, conversation_id: int, summary: str) -> int:
        async with self.session.begin():
            conv = await self.session.get(Conversation, conversation_id, populate_existing=True)
            customer = await self.session.get(Customer, conv.customer_id) if conv else None
        if conv is None or customer is None:
            return 0
        return await self.desk.page(self.session, conv, customer, summary)

    async def page_manager(
        self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
    ) -> bool:
        async with self.session.begin():
            customer = await self.session.get(Customer, customer_id)
            conv = await self.session.get(Conversation, conversation_id, populate_existing=True)
            everyone = list(
                (await self.session.execute(select(Agent).where(Agent.active.is_(True)))).scalars()
            )
        manager = agents.find_manager(everyone, customer.account_manager if customer else None)
        if manager is None or customer is None:
            return False
        if manager.online and agents_paged:
            return True  # the desk's page went to them first, with the claim button
        with for_agents():
            text = self.manager_text(customer, summary, conversation_id)
            # A chat someone already holds (the case joined it) has nothing to claim.
            markup = keyboards.claim(conversation_id) if conv and conv.status == QUEUED else None
        try:
            sent = await self.desk.notices.send_in_turn(manager.telegram_id, text, markup)
        except TelegramAPIError as exc:
            log.warning("could not page account manager %s: %s", manager.telegram_id, exc)
            return False
        async with self.session.begin():
            # A notification: the hand-over rewrites it when anyone takes the chat.
            await conversations.link(
                self.session, manager.telegram_id, sent.message_id, conversation_id, "notification"
            )
        return True


class BotCasePager(ManagerPager):
    """A complaint's chat."""

    def manager_text(self, customer: Customer, summary: str, conversation_id: int) -> str:
        return texts.complaint.manager_page(customer_name(customer), summary, conversation_id)
