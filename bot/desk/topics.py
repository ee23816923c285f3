"""Topics mode's view: the staff forum supergroup, one topic per customer.

The desk service (bot/desk/queue.py, handover.py, routing/queue/) decides exactly as in
private mode; this module renders its decisions in the group instead of agents' private
chats:

- :class:`TopicsView` keeps each customer's topic (created once even when updates race,
  :mod:`routing.queue.topics`; retried after Telegram's 429; reopened for a new chat, closed
  with it; renamed with ⚠/⛔ when an SLA alert fires), posts the customer card and a Claim
  notice for each new chat, and keeps the queue view current by editing one message;
- it is also the delivery queue's router (``bot.delivery.Router``): rows for the agent go to
  the customer's topic, copies already there are not made twice, and every copy is recorded
  (``message_copies``) so edits can follow it;
- :class:`TopicNotices` is :class:`bot.desk.notify.Notices` for the group: pages, re-announces
  and offers land in the group (a mention names the agent) instead of private chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup
from aiogram.types import Message as SentMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards, texts
from bot.delivery import Destination
from bot.desk.briefing import card_text
from bot.desk.notify import Notices
from bot.i18n import for_agents
from routing.clock import Clock
from routing.delivery import enqueue
from routing.delivery.sending import Claimed
from routing.policy.root import Policy
from routing.queue import claims, conversations, sla
from routing.queue import topics as records
from routing.store.desk_models import TOPIC_CLOSED, TOPIC_OPEN
from routing.store.models import TO_AGENT, Agent, Conversation, Customer

log = logging.getLogger(__name__)

# Telegram's six topic icon colours, by tier rank (highest first).
ICON_COLORS = (0xFB6F5F, 0xFFD67E, 0x6FB9F0, 0x8EEE98, 0xCB86DB, 0xFF93B2)
# A topic's name starts with its chat's worst SLA level so far (routing.queue.sla levels).
SLA_MARKS = {sla.WARN: "⚠ ", sla.BREACH: "⛔ "}
# How many 429s a topic's creation waits out before it gives the lease back.
CREATE_TRIES = 5


def mention(agent: Agent) -> str:
    return f'<a href="tg://user?id={agent.telegram_id}">{escape(agent.name)}</a>'


class TopicsView:
    def __init__(self, bot: Bot, policy: Policy, clock: Clock) -> None:
        assert policy.desk.group_id is not None
        self.bot = bot
        self.policy = policy
        self.clock = clock
        self.group_id: int = policy.desk.group_id
        self.queue_thread = policy.desk.queue_topic_id
        self.sessions: async_sessionmaker[AsyncSession] | None = None  # set with the deliverer
        # Topic creation is queued: one at a time per process, each waiting out its 429s.
        self._creating = asyncio.Lock()

    # --- names --------------------------------------------------------------------------
    def name(self, customer: Customer, sla: str | None = None) -> str:
        who = customer.name or customer.external_id or f"guest {customer.id}"
        number = customer.external_id or str(customer.id)
        return (SLA_MARKS.get(sla or "", "") + f"{customer.tier} · {who} · #{number}")[:128]

    @staticmethod
    def sla_level(name: str | None) -> str | None:
        """The SLA level a topic's name shows (None: no mark)."""
        return next((lv for lv, mark in SLA_MARKS.items() if (name or "").startswith(mark)), None)

    def color(self, tier: str) -> int:
        return ICON_COLORS[min(self.policy.rank(tier), len(ICON_COLORS) - 1)]

    # --- the customer's topic -------------------------------------------------------------
    async def ensure_topic(self, session: AsyncSession, customer: Customer) -> int | None:
        """The customer's topic, created once (or reopened); None if it could not be made
        now (another update is creating it, or Telegram refused)."""
        async with session.begin():
            claim = await records.claim_creation(session, customer.id, self.group_id, self.clock())
        if claim.thread_id is not None:
            if claim.state == TOPIC_CLOSED:
                await self._call(self.bot.reopen_forum_topic(self.group_id, claim.thread_id))
                async with session.begin():
                    await records.set_state(session, customer.id, TOPIC_OPEN)
                # A new chat starts without the last one's SLA mark (and with today's tier).
                await self._rename(session, customer, claim.thread_id, claim.name, None)
            return claim.thread_id
        if not claim.create:
            return await self._wait_for_thread(session, customer.id)
        name = self.name(customer)
        async with self._creating:
            for _ in range(CREATE_TRIES):
                try:
                    topic = await self.bot.create_forum_topic(
                        self.group_id, name, icon_color=self.color(customer.tier)
                    )
                    break
                except TelegramRetryAfter as exc:
                    log.info("createForumTopic: 429, again in %ss", exc.retry_after)
                    await asyncio.sleep(exc.retry_after)
                except TelegramAPIError as exc:
                    log.warning("could not create the topic of customer %s: %s", customer.id, exc)
                    async with session.begin():
                        await records.creation_failed(session, customer.id)
                    return None
            else:
                async with session.begin():
                    await records.creation_failed(session, customer.id)
                return None
        async with session.begin():
            await records.created(session, customer.id, topic.message_thread_id, name)
        return int(topic.message_thread_id)

    async def _wait_for_thread(self, session: AsyncSession, customer_id: int) -> int | None:
        for _ in range(40):
            await asyncio.sleep(0.25)
            async with session.begin():
                thread = await records.thread_of(session, customer_id)
            if thread is not None:
                return thread
        return None

    async def _call(self, call: object) -> bool:
        try:
            await call  # type: ignore[misc]
        except TelegramBadRequest as exc:
            log.debug("topic call refused: %s", exc)  # TOPIC_NOT_MODIFIED and the like
            return False
        except TelegramAPIError as exc:
            log.warning("topic call failed: %s", exc)
            return False
        return True

    async def on_queued(
        self, session: AsyncSession, conv: Conversation, customer: Customer, preview: str | None
    ) -> None:
        """A new chat: the customer's topic (made or reopened), its card, a Claim notice,
        and the queue view."""
        thread = await self.ensure_topic(session, customer)
        if thread is not None:
            with for_agents():
                async with session.begin():
                    first = await records.mark_card(session, customer.id, conv.id)
                    # The card with the self-service path and question that led here; the
                    # hand-over does not post it again (bot.desk.briefing).
                    card = await card_text(session, self.policy, conv, customer) if first else ""
                notice = texts.topics.waiting(texts.agent.conv_label(conv, customer), preview)
            if first:
                if card:
                    await self._post(thread, card)
                sent = await self._post(thread, notice, keyboards.claim(conv.id))
                if sent is not None:
                    async with session.begin():
                        await conversations.link(
                            session, self.group_id, sent.message_id, conv.id, "notification"
                        )
        await self.refresh_board(session)

    async def _post(
        self, thread: int | None, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> SentMessage | None:
        try:
            return await self.bot.send_message(
                self.group_id, text, message_thread_id=thread, reply_markup=markup
            )
        except TelegramAPIError as exc:
            log.warning("could not post in the staff group: %s", exc)
            return None

    async def post_in_topic(
        self,
        session: AsyncSession,
        customer_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
    ) -> SentMessage | None:
        async with session.begin():
            thread = await records.thread_of(session, customer_id)
        return await self._post(thread, text, markup)

    async def close_topic(self, session: AsyncSession, customer_id: int) -> None:
        """The chat closed: its topic loses the SLA mark and is closed until the next one."""
        async with session.begin():
            customer = await session.get(Customer, customer_id)
        if customer is not None:
            await self.clear_sla(session, customer)
        async with session.begin():
            thread = await records.thread_of(session, customer_id)
            await records.set_state(session, customer_id, TOPIC_CLOSED)
        if thread is not None:
            await self._call(self.bot.close_forum_topic(self.group_id, thread))

    async def mark_sla(self, session: AsyncSession, customer: Customer, level: str) -> None:
        """An SLA warning or breach shows in the topic's name (a breach is never turned
        back into a warning by a later warning, e.g. the resolution target's)."""
        async with session.begin():
            row = await records.get(session, customer.id)
        if row is None or row.thread_id is None:
            return
        if level == sla.WARN and self.sla_level(row.name) == sla.BREACH:
            return
        await self._rename(session, customer, row.thread_id, row.name, level)

    async def clear_sla(
        self, session: AsyncSession, customer: Customer, *, only: str | None = None
    ) -> None:
        """Take the SLA mark off the topic's name (``only``: just a mark of that level, as a
        claim ends the wait a warning was about, not a breach that happened)."""
        async with session.begin():
            row = await records.get(session, customer.id)
        if row is None or row.thread_id is None:
            return
        level = self.sla_level(row.name)
        if level is None or (only is not None and level != only):
            return
        await self._rename(session, customer, row.thread_id, row.name, None)

    async def _rename(
        self,
        session: AsyncSession,
        customer: Customer,
        thread: int,
        current: str | None,
        level: str | None,
    ) -> None:
        name = self.name(customer, level)
        if name == current:
            return
        if await self._call(self.bot.edit_forum_topic(self.group_id, thread, name=name)):
            async with session.begin():
                row = await records.get(session, customer.id)
                if row is not None:
                    await records.set_state(session, customer.id, row.state, name=name)

    async def on_claimed(self, session: AsyncSession, conv: Conversation) -> None:
        """A chat was taken: its topic's SLA warning goes (the wait is over)."""
        async with session.begin():
            customer = await session.get(Customer, conv.customer_id)
        if customer is not None:
            await self.clear_sla(session, customer, only=sla.WARN)

    async def post_offer(
        self,
        agent: Agent,
        conv: Conversation,
        customer: Customer,
        preview: str | None,
        markup: InlineKeyboardMarkup,
    ) -> SentMessage | None:
        """Offer mode: the offer goes to its agent by mention in the queue view's thread,
        where the Accept and Decline buttons answer only them (bot/handlers/queue.py)."""
        with for_agents():
            text = texts.topics.offer(
                mention(agent),
                texts.agent.conv_label(conv, customer),
                round(self.policy.queue.offer_timeout_seconds),
            )
            if preview:
                text += "\n" + texts.topics.first_message(preview)
        return await self._post(self.queue_thread, text, markup)

    # --- the queue view -------------------------------------------------------------------
    async def refresh_board(self, session: AsyncSession, *, repost: bool = False) -> None:
        """Edit the queue view to show the waiting chats now (post it the first time, or
        again at the bottom when ``repost``)."""
        async with session.begin():
            items = await claims.waiting(session, self.policy.queue.queue_page_size)
            total = await claims.waiting_count(session)
            row = await records.board(session, self.group_id)
        with for_agents():
            lines = [texts.agent.conv_label(c, cu) for c, cu in items]
            text = texts.topics.board(lines, total)
        markup = keyboards.queue(items) if items else None
        if row is not None and row.message_id is not None and not repost:
            if row.text == text:
                return
            try:
                await self.bot.edit_message_text(
                    text=text, chat_id=self.group_id, message_id=row.message_id, reply_markup=markup
                )
            except TelegramBadRequest as exc:
                if "not modified" not in str(exc):
                    row = None  # deleted: post a new one
            except TelegramAPIError as exc:
                log.warning("could not edit the queue view: %s", exc)
                return
            if row is not None:
                async with session.begin():
                    await records.set_board(session, self.group_id, row.message_id, text)
                return
        sent = await self._post(self.queue_thread, text, markup)
        if sent is not None:
            async with session.begin():
                await records.set_board(session, self.group_id, sent.message_id, text)

    # --- the delivery queue's router ------------------------------------------------------
    async def destination(self, c: Claimed) -> Destination | None:
        if c.direction != TO_AGENT:
            if c.kind == enqueue.KIND_COPY:
                # "typing..." while an agent's message is on its way (Telegram does not tell
                # bots when a person is typing, so this is what the customer can be shown).
                with contextlib.suppress(TelegramAPIError):
                    await self.bot.send_chat_action(c.chat_id, "typing")
            return Destination(c.chat_id, None, c.message_ids)
        assert self.sessions is not None
        async with self.sessions() as s, s.begin():
            conv = await s.get(Conversation, c.conversation_id)
            if conv is None:
                return Destination(self.group_id, None, [])
            thread = await records.thread_of(s, conv.customer_id)
            if thread is None:
                return None
            ids = c.message_ids
            if c.from_chat_id == self.group_id:
                ids = []  # already in the topic (a transfer's transcript)
            elif c.from_chat_id is not None and ids:
                there = await records.copied_already(s, c.from_chat_id, ids, self.group_id)
                ids = [i for i in ids if i not in there]
        return Destination(self.group_id, thread, ids)

    async def sent(self, c: Claimed, dest: Destination, sent: list[int]) -> None:
        if c.kind != enqueue.KIND_COPY or c.from_chat_id is None or not sent:
            return
        assert self.sessions is not None
        async with self.sessions() as s, s.begin():
            await records.record_copies(s, c.from_chat_id, dest.message_ids, dest.chat_id, sent)


class TopicNotices(Notices):
    """Notices rendered in the staff group: a page or an offer names its agent there."""

    def __init__(self, bot: Bot, view: TopicsView) -> None:
        super().__init__(bot)
        self.view = view

    async def page(
        self,
        session: AsyncSession,
        agent: Agent,
        conv: Conversation,
        customer: Customer,
        preview: str | None,
        manager: bool,
    ) -> None:
        # The topic's Claim notice and the queue view stand for every agent's page; the
        # account manager is named in the topic.
        if manager:
            with for_agents():
                text = texts.topics.for_manager(mention(agent))
            await self.view.post_in_topic(session, customer.id, text)

    async def page_all(
        self,
        session: AsyncSession,
        pages: Sequence[tuple[Agent, bool]],
        conv: Conversation,
        customer: Customer,
        preview: str | None,
    ) -> None:
        # At most one post (the manager's mention): nothing to send together.
        for agent, manager in pages:
            await self.page(session, agent, conv, customer, preview, manager)

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
        conv = await session.get(Conversation, conv_id)
        if conv is None:
            return None
        sent = await self.view.post_in_topic(session, conv.customer_id, text, markup)
        if sent is not None:
            async with session.begin():
                await conversations.link(
                    session, self.view.group_id, sent.message_id, conv_id, "notification"
                )
        return sent
