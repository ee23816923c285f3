"""The queue's Telegram side: carrying out routing/'s plans for a newly queued chat (pages,
the manager-first window, offers), announcements to an agent coming online, requeues and
transfers, and the sweep (windows, offers, SLA alerts, silent agents, inactivity, positions).

Who gets a chat is decided by ``routing.queue.assignment`` and ``routing.queue.eligibility``
and recorded by routing/ in short transactions; the Telegram calls follow the commit, so a
slow API never holds the database and a crash repeats at most a message.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from aiogram.exceptions import TelegramAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards, texts
from bot.desk.handover import Handover, hold
from bot.desk.notify import Notices
from bot.http.metrics import metrics
from bot.i18n import for_agents
from routing.clock import Clock
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import agents, assignment, claims, conversations, estimate, offers, sla
from routing.queue.eligibility import AgentSlot, Chat, online_slots
from routing.store import cluster, direct, inbox
from routing.store.models import OPEN_STATUSES, QUEUED, Agent, Conversation, Customer, QueueOffer

if TYPE_CHECKING:
    from bot.desk.topics import TopicsView

log = logging.getLogger(__name__)


# pg_try_advisory_lock key: "queue" in ASCII.
LEADER_KEY = 0x7175657565


def leader(sessions: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[bool]:
    """Only one instance sweeps the queue on PostgreSQL, so two never both make an offer or
    page the same reminder (see routing.store.db.leader)."""
    return cluster.leader(sessions, LEADER_KEY)


class QueueDesk:
    def __init__(self, notices: Notices, handover: Handover, policy: Policy, clock: Clock) -> None:
        self.notices = notices
        self.handover = handover
        self.policy = policy
        self.clock = clock
        # Topics mode's view (bot/desk/topics.py, set by Desk): offers by mention in the
        # group, SLA marks in topic names, topics closed with their chats.
        self.topics: TopicsView | None = None

    def now(self) -> datetime:
        return self.clock()

    # --- a newly queued chat ----------------------------------------------------------
    async def on_queued(
        self, session: AsyncSession, conv: Conversation, customer: Customer, preview: str | None
    ) -> int:
        """Carry out the plan for a newly queued chat (``assignment.plan``): page the agents
        it names (the reserved one alone during a window), or offer it in offer mode.

        Returns how many online agents serve its tier (0: nobody is there)."""
        if direct.on_postgresql(session) and not session.in_transaction():
            # Its reads need no transaction (under READ COMMITTED each statement of one reads
            # a snapshot of its own anyway) and its one write is atomic by itself: BEGIN and
            # COMMIT were two of a VIP chat's round trips (issue 19).
            new = await offers.plan_new_chat(session, conv, customer, self.policy, self.now())
            if session.in_transaction():  # a read through the session began one after all
                await session.commit()
        else:
            async with session.begin():
                new = await offers.plan_new_chat(session, conv, customer, self.policy, self.now())
        plan = new.plan
        if plan.offer_mode:
            await self.route(session)
            return plan.serving
        pages = [(new.agents[a], a == plan.manager) for a in plan.page]
        await self.notices.page_all(session, pages, conv, customer, preview)
        return plan.serving

    async def announce_waiting(self, session: AsyncSession, agent: Agent) -> int:
        """Show an agent who just came online every chat that waited for somebody."""
        now = self.now()
        async with session.begin():
            items = await claims.waiting(session, self.policy.queue.queue_page_size)
            slot = AgentSlot.of(agent, await claims.load(session, agent.id))
            # Only chats this agent may be told of: their tiers, not held for someone else.
            shown = set(assignment.announce_to(slot, [(c.id, Chat.of(c)) for c, _ in items], now))
            previews = {c.id: await self.notices.preview(session, c.id) for c, _ in items}
        for conv, customer in items:
            if conv.id not in shown:
                continue
            is_manager = agents.find_manager([agent], customer.account_manager) is not None
            await self.notices.page(session, agent, conv, customer, previews[conv.id], is_manager)
        return len(items)

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
            previews = {n.conversation.id: await self.notices.preview(session, n.conversation.id)
                        for n in made}  # fmt: skip
        for e in ended:
            await self._end_offer_message(e.offer, e.conversation, e.customer, "expired")
        for n in made:
            markup = keyboards.offer(
                n.offer.id, texts.agent.accept_button(), texts.agent.decline_button()
            )
            if self.topics is not None:
                # Topics mode: by mention in the staff group's queue view.
                sent = await self.topics.post_offer(
                    n.agent, n.conversation, n.customer, previews[n.conversation.id], markup
                )
                if sent is None:
                    continue
            else:
                try:
                    sent = await self.notices.send_in_turn(
                        n.agent.telegram_id,
                        texts.agent.offer(
                            n.conversation,
                            n.customer,
                            previews[n.conversation.id],
                            self.policy.queue.offer_timeout_seconds,
                        ),
                        markup,
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
                    session, sent.chat.id, sent.message_id, n.conversation.id, "notification"
                )
            if offer is not None and offer.outcome in ("expired", "withdrawn"):
                # It ended (another instance's sweep, a jump of the clock) while the message
                # was on its way, when there was no message id to edit yet.
                await self._end_offer_message(offer, n.conversation, n.customer, offer.outcome)

    async def _end_offer_message(
        self, offer: QueueOffer, conv: Conversation, customer: Customer, outcome: str
    ) -> None:
        if offer.chat_id is None or offer.message_id is None:
            return
        await self.notices.edit(
            offer.chat_id, offer.message_id, texts.agent.offer_ended(conv, customer, outcome)
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

    async def agent_unreachable(self, session: AsyncSession, agent_id: int) -> None:
        """An agent's chat refuses the bot (they blocked it): offline, chats back in the queue."""
        async with session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                return
            agent.online = False
        log.warning("agent %s blocked the bot: offline, chats requeued", agent.telegram_id)
        await self.requeue_agent(session, agent)

    async def _after_requeue(
        self, session: AsyncSession, pairs: list[tuple[Conversation, Customer]]
    ) -> None:
        for conv, customer in pairs:
            await self.notices.tell(customer, texts.customer.requeued)
            await self._page_all(session, conv, customer)

    async def _page_all(
        self, session: AsyncSession, conv: Conversation, customer: Customer
    ) -> None:
        """Page a chat back in the queue to everyone who may take it (the manager first)."""
        if self.policy.queue.routing_mode == "offer":
            await self.route(session)
            return
        async with session.begin():
            slots = await online_slots(session)
            manager = await agents.manager_of(session, customer.account_manager)
            preview = await self.notices.preview(session, conv.id)
        manager_id = manager.id if manager is not None else None
        online = [s for _, s in slots.values()]
        targets = assignment.page_targets(Chat.of(conv), online, self.now(), manager=manager_id)
        pages = [(slots[a][0], a == manager_id) for a in targets]
        await self.notices.page_all(session, pages, conv, customer, preview)

    async def transfer_back(
        self, session: AsyncSession, agent: Agent, conv: Conversation, customer: Customer,
        note: str | None, *, update_id: int | None = None,
    ) -> None:  # fmt: skip
        """Put the chat back in the queue; ``update_id`` (the /transfer) records it
        (bot/desk/handover.py, ``earlier``)."""
        async with session.begin():
            await claims.requeue(session, conv, front=False, note=note, by=agent.id)
            if update_id is not None:
                effect = inbox.Effect(inbox.TRANSFERRED, conv.id)
                await inbox.record_effect(session, update_id, effect)
            if agent.focus_conversation_id == conv.id:
                agent.focus_conversation_id = None
                session.add(agent)
        await self.notices.send(agent.telegram_id, texts.agent.transferred_to_queue(conv, customer))
        await self.notices.tell(customer, texts.customer.transferred, None)
        await self._page_all(session, conv, customer)

    async def transfer_to(
        self, session: AsyncSession, agent: Agent, conv: Conversation, customer: Customer,
        name: str, note: str | None, *, update_id: int | None = None,
    ) -> str | None:  # fmt: skip
        """Hand the chat to the agent called ``name``. Returns an error text, or None.
        ``update_id`` (the /transfer) records it (bot/desk/handover.py, ``earlier``)."""
        async with session.begin():
            target = await agents.by_name(session, name)
            if target is None:
                return texts.agent.transfer_unknown(name)
            refused = await claims.transfer_to(session, conv, target, note, agent, self.now())
            if refused is None and update_id is not None:
                # The customer's messages wait for the new agent's briefing (hand_over).
                await hold(
                    session,
                    update_id,
                    conv,
                    target,
                    now=self.handover.now(),
                    kind=inbox.TRANSFERRED,
                )
            elif refused is None:
                await enqueue.hold_for_hand_over(
                    session, conv.id, target.id, now=self.handover.now()
                )
            if refused is None and agent.focus_conversation_id == conv.id:
                agent.focus_conversation_id = None
                session.add(agent)
        if refused is not None:
            return texts.agent.transfer_refused(target.name, refused)
        await self.notices.send(
            agent.telegram_id, texts.agent.transferred_to_agent(conv, customer, target.name)
        )
        await self.notices.tell(customer, texts.customer.transferred, target.name)
        await self.handover.hand_over(session, target, conv, greet=False)
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
            slots = await online_slots(session) if alerts else {}
        for a in alerts:
            metrics().sla_event(a.conversation.tier, a.kind, a.level)
            if self.topics is not None and a.conversation.status in OPEN_STATUSES:
                await self.topics.mark_sla(session, a.customer, a.level)
            if a.page:
                text = texts.supervisor.sla_alert(
                    a.conversation,
                    a.customer,
                    a.kind,
                    a.level,
                    a.elapsed_s,
                    a.target_s,
                    a.agent.name if a.agent else None,
                )
                for boss in bosses:
                    await self.notices.send_quietly(boss.telegram_id, text)
            if a.kind == sla.FIRST_RESPONSE and a.conversation.status == QUEUED and a.page:
                await self._reannounce(session, a, slots)

    async def _reannounce(
        self, session: AsyncSession, a: sla.Alert, slots: dict[int, tuple[Agent, AgentSlot]]
    ) -> None:
        """Put a chat that is about to miss (or missed) its target before every agent who may
        take it again."""
        text = texts.agent.reannounce(a.conversation, a.customer, a.level, a.elapsed_s)
        online = [s for _, s in slots.values()]
        targets = assignment.page_targets(Chat.of(a.conversation), online, self.now())
        if self.topics is not None:
            targets = targets[:1]  # one post in the customer's topic stands for them all
        for agent_id in targets:
            await self.notices.announce(
                session,
                slots[agent_id][0],
                a.conversation.id,
                text,
                keyboards.claim(a.conversation.id),
                what="re-announce to",
            )

    async def _silent_agents(self, session: AsyncSession) -> None:
        async with session.begin():
            gone = await sla.silent_agents(session, self.policy, self.now())
            pairs = [
                (agent, [(c, await session.get(Customer, c.customer_id)) for c in convs])
                for agent, convs in gone
            ]
        for agent, convs in pairs:
            await self.notices.send_quietly(agent.telegram_id, texts.agent.silent_agent(len(convs)))
            await self._after_requeue(session, [(c, cu) for c, cu in convs if cu is not None])

    async def _inactive_customers(self, session: AsyncSession) -> None:
        async with session.begin():
            found = await sla.inactive_customers(session, self.policy, self.now())
        for item in found:
            if not item.closed:
                await self.notices.tell(
                    item.customer, texts.customer.inactivity_warning, item.minutes_left
                )
                continue
            await self.notices.tell(item.customer, texts.customer.inactivity_closed)
            if self.topics is not None:
                await self.topics.close_topic(session, item.customer.id)
            if item.agent is not None:
                await self.notices.send_quietly(
                    item.agent.telegram_id,
                    texts.agent.inactivity_closed(item.conversation, item.customer),
                )

    async def _positions(self, session: AsyncSession) -> None:
        async with session.begin():
            notices = await estimate.position_updates(session, self.policy, self.now())
        for n in notices:
            await self.notices.tell(n.customer, texts.customer.position, n.position, n.eta_seconds)

    # --- claims -----------------------------------------------------------------------
    def refusal(self, result: claims.ClaimResult, agent: Agent) -> str | None:
        if result.refused == claims.REFUSED_CAPACITY:
            return texts.agent.at_capacity(agent.max_chats)
        if result.refused == claims.REFUSED_TIER and result.conversation is not None:
            return texts.agent.not_your_tier(result.conversation.tier)
        if result.refused == claims.REFUSED_RESERVED:
            return texts.agent.reserved()
        return None
