"""The queue's Telegram side: routing a new chat (claim or offer mode, manager-first window),
offers, SLA alerts, requeues and transfers, inactivity, and customers' position updates.

Decisions are made and recorded by routing/ in short transactions; the Telegram calls follow
the commit, so a slow API never holds the database and a crash repeats at most a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramAPIError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards, texts_queue
from bot.i18n import for_agents, for_customer
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import agents, claims, conversations, eligibility, estimate, offers, sla
from routing.store import cluster
from routing.store.models import QUEUED, Agent, Conversation, Customer, QueueOffer

if TYPE_CHECKING:
    from bot.desk import Desk

log = logging.getLogger(__name__)


# pg_try_advisory_lock key: "queue" in ASCII.
_LEADER_KEY = 0x7175657565


def leader(sessions: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[bool]:
    """Only one instance sweeps the queue on PostgreSQL, so two never both make an offer or
    page the same reminder (see routing.store.db.leader)."""
    return cluster.leader(sessions, _LEADER_KEY)


class QueueDesk:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @property
    def policy(self) -> Policy:
        return self.desk.policy

    def now(self) -> datetime:
        return self.desk.clock()

    async def _tell(self, customer: Customer, make: Callable[..., str], *args: Any) -> None:
        """A message to a customer, in their language whoever triggered it."""
        if customer.telegram_id is None:
            return
        with for_customer(customer):
            text = make(*args)
        await self.desk.send_quietly(customer.telegram_id, text)

    # --- a newly queued chat ----------------------------------------------------------
    async def on_queued(
        self, session: AsyncSession, conv: Conversation, customer: Customer, preview: str | None
    ) -> int:
        """Route a newly queued chat. Returns how many online agents serve its tier."""
        async with session.begin():
            online = await agents.page_targets(session, customer)
            manager = agents.find_manager(online, customer.account_manager)
            tiers_ok = [
                a for a in online if eligibility.serves(eligibility.parse_tiers(a.tiers), conv.tier)
            ]
            reserved = await offers.reserve_for(
                session, conv, customer, self.policy, self.now(), manager
            )
            pos, eta = await estimate.queued_position_and_eta(session, self.policy, conv)
            if estimate.eta_bucket(eta) <= 0:
                # "Right away" or "nobody is online" was just said by the caller: the sweep
                # speaks up only when that changes, not to repeat it seconds later.
                await estimate.mark_told(session, conv, pos, eta)
        if self.policy.queue.routing_mode == "offer":
            await self.route(session)
            return len(tiers_ok)
        if reserved is not None:
            # The window: only the manager (or the sticky agent) hears of it for now.
            await self.desk._notify(session, reserved, conv, customer, preview, reserved is manager)
            return len(tiers_ok)
        for agent in tiers_ok:
            await self.desk._notify(session, agent, conv, customer, preview, agent is manager)
        return len(tiers_ok)

    # --- offer mode -------------------------------------------------------------------
    async def route(self, session: AsyncSession) -> None:
        """End timed-out offers and offer waiting chats to the next agents."""
        async with session.begin():
            ended = await offers.expire_offers(session, self.now())
            made = (
                await offers.make_offers(session, self.policy, self.now())
                if self.policy.queue.routing_mode == "offer"
                else []
            )
            previews = {n.conversation.id: await self.desk._preview(session, n.conversation.id)
                        for n in made}  # fmt: skip
        for e in ended:
            await self._end_offer_message(e.offer, e.conversation, e.customer, "expired")
        for n in made:
            try:
                sent = await self.desk.bot.send_message(
                    n.agent.telegram_id,
                    texts_queue.offer(
                        n.conversation,
                        n.customer,
                        previews[n.conversation.id],
                        self.policy.queue.offer_timeout_seconds,
                    ),
                    reply_markup=keyboards.offer(
                        n.offer.id, texts_queue.accept_button(), texts_queue.decline_button()
                    ),
                )
            except TelegramAPIError as exc:
                log.warning("could not offer #%s to %s: %s", n.conversation.id, n.agent.id, exc)
                continue
            async with session.begin():
                offer = await session.get(QueueOffer, n.offer.id, populate_existing=True)
                if offer is not None:
                    offer.chat_id, offer.message_id = sent.chat.id, sent.message_id
                # A notification link: hand_over rewrites it when anyone takes the chat.
                await conversations.link(
                    session, n.agent.telegram_id, sent.message_id, n.conversation.id,
                    "notification",
                )  # fmt: skip
            if offer is not None and offer.outcome in ("expired", "withdrawn"):
                # It ended (another instance's sweep, a jump of the clock) while the message
                # was on its way, when there was no message id to edit yet.
                await self._end_offer_message(offer, n.conversation, n.customer, offer.outcome)

    async def _end_offer_message(
        self, offer: QueueOffer, conv: Conversation, customer: Customer, outcome: str
    ) -> None:
        if offer.chat_id is None or offer.message_id is None:
            return
        await self.desk._edit(
            offer.chat_id, offer.message_id, texts_queue.offer_ended(conv, customer, outcome)
        )

    async def decline(self, session: AsyncSession, offer_id: int, agent: Agent) -> bool:
        async with session.begin():
            offer = await offers.decline_offer(session, offer_id, agent)
            if offer is None:
                return False
            conv = await session.get(Conversation, offer.conversation_id)
            customer = await session.get(Customer, conv.customer_id) if conv else None
        if conv is not None and customer is not None:
            await self._end_offer_message(offer, conv, customer, "declined")
        await self.route(session)
        return True

    # --- agents leaving, transfers ----------------------------------------------------
    async def requeue_agent(self, session: AsyncSession, agent: Agent) -> int:
        """The agent went offline: their chats back to the front of their tier."""
        async with session.begin():
            convs = await claims.requeue_agent(session, agent)
            pairs = [(c, await session.get(Customer, c.customer_id)) for c in convs]
        await self._after_requeue(session, [(c, cu) for c, cu in pairs if cu is not None])
        return len(convs)

    async def _after_requeue(
        self, session: AsyncSession, pairs: list[tuple[Conversation, Customer]]
    ) -> None:
        for conv, customer in pairs:
            await self._tell(customer, texts_queue.customer_requeued)
            await self._page_all(session, conv, customer)

    async def _page_all(
        self, session: AsyncSession, conv: Conversation, customer: Customer
    ) -> None:
        if self.policy.queue.routing_mode == "offer":
            await self.route(session)
            return
        async with session.begin():
            online = await agents.page_targets(session, customer)
            preview = await self.desk._preview(session, conv.id)
        manager = agents.find_manager(online, customer.account_manager)
        for agent in online:
            if eligibility.serves(eligibility.parse_tiers(agent.tiers), conv.tier):
                await self.desk._notify(session, agent, conv, customer, preview, agent is manager)

    async def transfer_back(
        self, session: AsyncSession, agent: Agent, conv: Conversation, customer: Customer,
        note: str | None,
    ) -> None:  # fmt: skip
        async with session.begin():
            await claims.requeue(session, conv, front=False, note=note, by=agent.id)
            if agent.focus_conversation_id == conv.id:
                agent.focus_conversation_id = None
                session.add(agent)
        await self.desk.bot.send_message(
            agent.telegram_id, texts_queue.transferred_to_queue(conv, customer)
        )
        await self._tell(customer, texts_queue.customer_transferred, None)
        await self._page_all(session, conv, customer)

    async def transfer_to(
        self, session: AsyncSession, agent: Agent, conv: Conversation, customer: Customer,
        name: str, note: str | None,
    ) -> str | None:  # fmt: skip
        """Hand the chat to the agent called ``name``. Returns an error text, or None."""
        async with session.begin():
            target = await agents.by_name(session, name)
            if target is None:
                return texts_queue.transfer_unknown(name)
            refused = await claims.transfer_to(session, conv, target, note, agent, self.now())
            if refused is None:
                # The customer's messages wait for the new agent's briefing (hand_over).
                await enqueue.hold_for_hand_over(session, conv.id, target.id, now=self.desk.now())
            if refused is None and agent.focus_conversation_id == conv.id:
                agent.focus_conversation_id = None
                session.add(agent)
        if refused is not None:
            return texts_queue.transfer_refused(target.name, refused)
        await self.desk.bot.send_message(
            agent.telegram_id, texts_queue.transferred_to_agent(conv, customer, target.name)
        )
        await self._tell(customer, texts_queue.customer_transferred, target.name)
        await self.desk.hand_over(session, target, conv, greet=False)
        return None

    # --- the sweep --------------------------------------------------------------------
    async def sweep(self, session: AsyncSession) -> None:
        """One pass of every queue timer (run by the scheduler every ``sweep_seconds``)."""
        # No update, so no locale: agents get the desk's language, customers their own.
        with for_agents():
            await self._release_windows(session)
            await self.route(session)
            await self._sla(session)
            await self._silent_agents(session)
            await self._inactive_customers(session)
            await self._positions(session)

    async def _release_windows(self, session: AsyncSession) -> None:
        async with session.begin():
            released = await offers.release_reservations(session, self.now())
            pairs = [(c, await session.get(Customer, c.customer_id)) for c in released]
        for conv, customer in pairs:
            if customer is not None and self.policy.queue.routing_mode == "claim":
                await self._page_all(session, conv, customer)

    async def _sla(self, session: AsyncSession) -> None:
        async with session.begin():
            alerts = await sla.sweep(session, self.policy, self.now())
            bosses = await sla.supervisors(session) if alerts else []
            online = await _online(session) if alerts else []
        for a in alerts:
            if a.page:
                text = texts_queue.sla_alert(
                    a.conversation,
                    a.customer,
                    a.kind,
                    a.level,
                    a.elapsed_s,
                    a.target_s,
                    a.agent.name if a.agent else None,
                )
                for boss in bosses:
                    await self.desk.send_quietly(boss.telegram_id, text)
            if a.kind == sla.FIRST_RESPONSE and a.conversation.status == QUEUED and a.page:
                await self._reannounce(session, a, online)

    async def _reannounce(self, session: AsyncSession, a: sla.Alert, online: list[Agent]) -> None:
        """Put a chat that is about to miss (or missed) its target before every agent again."""
        text = texts_queue.reannounce(a.conversation, a.customer, a.level, a.elapsed_s)
        for agent in online:
            if not eligibility.serves(eligibility.parse_tiers(agent.tiers), a.conversation.tier):
                continue
            try:
                sent = await self.desk.bot.send_message(
                    agent.telegram_id, text, reply_markup=keyboards.claim(a.conversation.id)
                )
            except TelegramAPIError as exc:
                log.warning("could not re-announce to %s: %s", agent.telegram_id, exc)
                continue
            async with session.begin():
                await conversations.link(
                    session, agent.telegram_id, sent.message_id, a.conversation.id, "notification"
                )

    async def _silent_agents(self, session: AsyncSession) -> None:
        async with session.begin():
            gone = await sla.silent_agents(session, self.policy, self.now())
            pairs = [
                (agent, [(c, await session.get(Customer, c.customer_id)) for c in convs])
                for agent, convs in gone
            ]
        for agent, convs in pairs:
            await self.desk.send_quietly(agent.telegram_id, texts_queue.silent_agent(len(convs)))
            await self._after_requeue(session, [(c, cu) for c, cu in convs if cu is not None])

    async def _inactive_customers(self, session: AsyncSession) -> None:
        async with session.begin():
            found = await sla.inactive_customers(session, self.policy, self.now())
        for item in found:
            if not item.closed:
                await self._tell(item.customer, texts_queue.inactivity_warning, item.minutes_left)
                continue
            await self._tell(item.customer, texts_queue.inactivity_closed_customer)
            if item.agent is not None:
                await self.desk.send_quietly(
                    item.agent.telegram_id,
                    texts_queue.inactivity_closed_agent(item.conversation, item.customer),
                )

    async def _positions(self, session: AsyncSession) -> None:
        async with session.begin():
            notices = await estimate.position_updates(session, self.policy, self.now())
        for n in notices:
            await self._tell(n.customer, texts_queue.position, n.position, n.eta_seconds)

    # --- claims -----------------------------------------------------------------------
    def refusal(self, result: claims.ClaimResult, agent: Agent) -> str | None:
        if result.refused == claims.REFUSED_CAPACITY:
            return texts_queue.at_capacity(agent.max_chats)
        if result.refused == claims.REFUSED_TIER and result.conversation is not None:
            return texts_queue.not_your_tier(result.conversation.tier)
        if result.refused == claims.REFUSED_RESERVED:
            return texts_queue.reserved()
        return None


async def _online(session: AsyncSession) -> list[Agent]:
    return list(
        (
            await session.execute(
                select(Agent)
                .where(Agent.online.is_(True), Agent.active.is_(True))
                .order_by(Agent.id)
            )
        ).scalars()
    )
