"""Agents: presence, the queue, claims, addressing and relaying, closing.

What no agent feature takes (stale buttons, unknown commands, messages for customers) is in
bot/handlers/fallback.py, which calls :func:`relay` and :func:`help_text` here.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message, Update
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import keyboards, texts
from bot.adapters.content import Content, content_of
from bot.desk import Desk
from bot.desk.handover import earlier, hold
from bot.filters import IsSupervisor
from bot.handlers import complaint as complaint_handlers
from bot.i18n import for_customer
from bot.middlewares import alert, answer_now
from routing.clock import Clock
from routing.complaints import cases
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import claims, conversations, eligibility
from routing.queue.conversations import TargetHow
from routing.selfservice import deflection
from routing.store import direct, inbox
from routing.store.models import ASSIGNED, QUEUED, TO_CUSTOMER, Agent, Conversation, Customer
from surveys import status as survey_status

router = Router(name="agent")


def help_text(agent: Agent) -> str:
    return texts.agent.help_text(supervisor=agent.role == "supervisor")


@router.message(Command("help", "start"))
async def help_(message: Message, agent: Agent) -> None:
    await message.answer(help_text(agent))


@router.message(Command("online"))
async def online(message: Message, session: AsyncSession, agent: Agent, desk: Desk) -> None:
    async with session.begin():
        agent.online = True
        agent.last_active_at = desk.clock()
        session.add(agent)
    await message.answer(texts.agent.now_online())
    # Chats that waited while nobody was online are shown (claim mode) or offered at once.
    if desk.policy.queue.routing_mode == "offer":
        await desk.queue.route(session)
    else:
        await desk.announce_waiting(session, agent)


@router.message(Command("offline"))
async def offline(message: Message, session: AsyncSession, agent: Agent, desk: Desk) -> None:
    async with session.begin():
        agent.online = False
        session.add(agent)
    await message.answer(texts.agent.now_offline())
    # Open chats do not wait for an agent who left: back to the front of their tier.
    requeued = await desk.queue.requeue_agent(session, agent)
    if requeued:
        await message.answer(texts.agent.requeued_chats(requeued))


@router.message(Command("queue"))
async def show_queue(message: Message, session: AsyncSession, policy: Policy) -> None:
    async with session.begin():
        items = await claims.waiting(session, policy.queue.queue_page_size)
        total = await claims.waiting_count(session)
    if not items:
        await message.answer(texts.agent.queue_empty())
        return
    await message.answer(
        texts.agent.queue_list(len(items), total), reply_markup=keyboards.queue(items)
    )


@router.message(Command("next"))
async def next_(
    message: Message,
    session: AsyncSession,
    agent: Agent,
    desk: Desk,
    clock: Clock,
    event_update: Update,
) -> None:
    full = False
    conv: Conversation | None = None
    async with session.begin():
        before = await earlier(session, event_update.update_id)
        if before is None:
            # Checked first rather than caught: a rollback would expire `agent` for what follows.
            full = not eligibility.has_capacity(
                await claims.load(session, agent.id), agent.max_chats
            )
            conv = None if full else await claims.claim_next(session, agent, clock())
            if conv is not None:
                await hold(session, event_update.update_id, conv, agent, now=desk.now())
    if before is not None:
        if before.hand_over is not None:
            await desk.hand_over(session, *before.hand_over)
        return
    if full:
        await message.answer(texts.agent.at_capacity(agent.max_chats))
        return
    if conv is None:
        await message.answer(texts.agent.queue_empty())
        return
    await desk.hand_over(session, agent, conv)


@router.callback_query(keyboards.ClaimCb.filter())
async def claim_button(
    query: CallbackQuery,
    callback_data: keyboards.ClaimCb,
    session: AsyncSession,
    agent: Agent,
    desk: Desk,
    clock: Clock,
    callback_answer: CallbackAnswer,
    event_update: Update,
) -> None:
    async with session.begin():
        before = await earlier(session, event_update.update_id)
        if before is not None:
            result, customer = None, None
        else:
            result = await claims.claim(session, callback_data.conv, agent, clock())
            if result.won and result.conversation is not None:
                await hold(
                    session, event_update.update_id, result.conversation, agent, now=desk.now()
                )
            customer = (
                await session.get(Customer, result.conversation.customer_id)
                if result.conversation
                else None
            )
    if before is not None or result is None:  # handled before a crash: what it did not get to
        await answer_now(query, callback_answer)
        if before is None:
            return
        if before.hand_over is not None:
            await desk.hand_over(session, *before.hand_over)
        return
    conv = result.conversation
    if conv is None or customer is None:
        alert(callback_answer, texts.agent.chat_gone())
        return
    refusal = desk.queue.refusal(result, agent)
    if refusal is not None:
        alert(callback_answer, refusal)
        return
    if result.won:
        await answer_now(query, callback_answer)
        await desk.hand_over(session, agent, conv)
        return
    holder = result.holder.name if result.holder else texts.agent.someone_else()
    if conv.status != ASSIGNED:
        alert(callback_answer, texts.agent.chat_closed())
        return
    alert(callback_answer, texts.agent.lost_claim(holder))
    msg = query.message
    # Only single-chat notifications are rewritten; a /queue list keeps its other buttons.
    if (
        isinstance(msg, Message)
        and msg.reply_markup is not None
        and len(msg.reply_markup.inline_keyboard) == 1
    ):
        await desk.settle_lost(msg.chat.id, msg.message_id, conv, customer, holder)


@router.message(Command("chats"))
async def chats(message: Message, session: AsyncSession, agent: Agent) -> None:
    async with session.begin():
        items = await conversations.agent_chats(session, agent)
    if not items:
        await message.answer(texts.agent.no_open_chats())
        return
    await message.answer(texts.agent.chats_list(len(items)), reply_markup=keyboards.chats(items))


@router.callback_query(keyboards.FocusCb.filter())
async def focus(
    query: CallbackQuery,
    callback_data: keyboards.FocusCb,
    session: AsyncSession,
    agent: Agent,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        conv = await session.get(Conversation, callback_data.conv)
        if conv is None or conv.agent_id != agent.id or conv.status != ASSIGNED:
            alert(callback_answer, texts.agent.not_yours())
            return
        customer = await session.get(Customer, conv.customer_id)
        assert customer is not None
        agent.focus_conversation_id = conv.id
        session.add(agent)
    await query.bot.send_message(agent.telegram_id, texts.agent.focused(conv, customer))  # type: ignore[union-attr]


async def _targets(
    session: AsyncSession, agent: Agent, message: Message
) -> tuple[conversations.Target, list[tuple[Conversation, Customer]]]:
    reply_to = message.reply_to_message.message_id if message.reply_to_message else None
    target = await conversations.resolve_target(session, agent, reply_to)
    if target.how is not TargetHow.AMBIGUOUS:
        return target, []
    return target, await conversations.agent_chats(session, agent)


async def _close(
    session: AsyncSession,
    agent: Agent,
    conv: Conversation,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    update_id: int | None = None,
) -> None:
    async with session.begin():
        survey = await conversations.close(session, conv, customer, policy, clock())
        if update_id is not None and survey is not None:
            await inbox.record_effect(session, update_id, inbox.Effect(inbox.CLOSED, conv.id))
        if agent.focus_conversation_id == conv.id:
            agent.focus_conversation_id = None
            session.add(agent)
    if survey is None:
        await desk.bot.send_message(agent.telegram_id, texts.agent.closed_already())
        return
    await desk.bot.send_message(agent.telegram_id, texts.agent.closed_for_agent(conv, customer))
    if customer.telegram_id is not None:
        with for_customer(customer):
            closed = texts.customer.conversation_closed()
        await desk.send_quietly(customer.telegram_id, closed)
    if desk.topics is not None:
        # Topics mode, closed from the agent's private chat: the customer's topic closes (and
        # sheds its SLA mark) as when /close is said in the topic.
        await desk.topics.close_topic(session, customer.id)
        await desk.topics.refresh_board(session)


@router.message(Command("close"))
async def close(
    message: Message,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    event_update: Update,
) -> None:
    async with session.begin():
        # Handled before a crash lost its done mark: the chat it closed is closed. Resolving
        # "the chat I am in" again would close the agent's next one.
        if await inbox.effect_of(session, event_update.update_id) is not None:
            return
        target, items = await _targets(session, agent, message)
    if target.conversation is not None and target.customer is not None:
        await _close(
            session,
            agent,
            target.conversation,
            target.customer,
            policy,
            desk,
            clock,
            event_update.update_id,
        )
    elif target.how is TargetHow.AMBIGUOUS:
        await message.answer(
            texts.agent.which_chat_to_close(), reply_markup=keyboards.close_choice(items)
        )
    elif target.how is TargetHow.NOT_YOURS:
        await message.answer(texts.agent.not_yours())
    else:
        await message.answer(texts.agent.no_open_chats())


@router.callback_query(keyboards.CloseCb.filter())
async def close_button(
    query: CallbackQuery,
    callback_data: keyboards.CloseCb,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        conv = await session.get(Conversation, callback_data.conv)
        ok = conv is not None and conv.agent_id == agent.id and conv.status == ASSIGNED
        customer = await session.get(Customer, conv.customer_id) if ok and conv else None
    if not ok or conv is None or customer is None:
        alert(callback_answer, texts.agent.not_yours())
        return
    await _close(session, agent, conv, customer, policy, desk, clock)


@router.message(Command("stats"), IsSupervisor())
async def stats(message: Message, session: AsyncSession, policy: Policy, clock: Clock) -> None:
    async with session.begin():
        by_tier = dict(
            (
                await session.execute(
                    select(Conversation.tier, func.count())
                    .where(Conversation.status == QUEUED)
                    .group_by(Conversation.tier)
                )
            ).all()
        )
        online = await session.scalar(
            select(func.count()).select_from(Agent).where(Agent.online.is_(True))
        )
        open_chats = await session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.status == ASSIGNED)
        )
        csat = await survey_status.agent_csat(session)
        idle = timedelta(minutes=policy.selfservice.session_minutes)
        selfserve = await deflection.deflection(session, clock(), idle)
    ordered = {t: int(by_tier.get(t, 0)) for t in policy.tier_names}
    await message.answer(
        texts.supervisor.stats(ordered, int(online or 0), int(open_chats or 0))
        + "\n\n"
        + texts.supervisor.agent_csat(csat)
        + "\n\n"
        + texts.supervisor.deflection(
            selfserve.deflected, selfserve.ended, selfserve.handoff, selfserve.live
        )
    )


def _relay_alone(pg: Any) -> Any:
    # PostgreSQL: an agent's message stored, queued for the customer and linked in one
    # statement (see _relay_alone_pg). Each part runs only if the one before it did.
    conv = bindparam("v_conv", type_=Conversation.id.type)
    target = (
        select(Conversation.id)
        .where(
            Conversation.id == conv,
            Conversation.agent_id == bindparam("v_agent", type_=Conversation.agent_id.type),
            Conversation.status == ASSIGNED,
            ~exists().where(cases.waiting_for_an_answer(conv)),
        )
        .cte("target")
    )
    stored, spoke, active, linked = conversations.agent_message_parts(pg, target)
    queued = enqueue.to_customer_after(stored)
    return select(
        select(stored.c.id).scalar_subquery().label("stored"),
        *(select(func.count()).select_from(p).scalar_subquery() for p in (spoke, active, linked)),
        select(queued.c.id).scalar_subquery().label("queued"),
    )


_RELAY_ALONE = direct.Statement(per_dialect=_relay_alone)


async def _relay_alone_pg(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock,
    content: Content, target: conversations.Target,
) -> bool:  # fmt: skip
    """PostgreSQL: the usual agent message (to a chat they still hold, not a redelivery, not
    part of an album, no case of the chat waiting for its first answer) in one statement,
    after one read of the agent's chats, where the transaction was nine round trips (BEGIN,
    the chats, the transcript row, the chat's and the agent's marks, the queued row, the
    link, the cases, COMMIT; issue 19). False: nothing was written, and the transaction
    decides as it always did."""
    conv, customer = target.conversation, target.customer
    assert conv is not None and customer is not None and customer.telegram_id is not None
    now = clock()
    params = {
        "v_conv": conv.id, "v_agent": agent.id, "v_type": content.content_type,
        "v_text": content.text, "v_file": content.file_id, "v_chat": message.chat.id,
        "v_message": message.message_id, "v_at": now, "v_to": customer.telegram_id,
        "v_from": message.chat.id, "v_ids": json.dumps([message.message_id]),
        "v_next": desk.now(),
    }  # fmt: skip
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    (row,) = await _RELAY_ALONE.read(engine, params)
    if row.stored is None:
        return False
    conversations.agent_spoke(conv, now)
    return True


def _deliverable(target: conversations.Target) -> bool:
    customer = target.customer
    return (
        target.conversation is not None
        and customer is not None
        and (customer.telegram_id is not None)
    )


async def _nowhere(
    message: Message, target: conversations.Target, items: list[tuple[Conversation, Customer]]
) -> None:
    """The agent's message has no chat to go to: say why (and offer the chats to pick)."""
    if target.conversation is None or target.customer is None:
        if target.how is TargetHow.AMBIGUOUS:
            await message.answer(
                texts.agent.ambiguous(len(items)), reply_markup=keyboards.chats(items)
            )
        elif target.how is TargetHow.NOT_YOURS:
            await message.answer(texts.agent.not_yours())
        else:
            await message.answer(texts.agent.no_open_chats())
    else:
        await message.answer(texts.agent.not_reachable())


def _still_theirs() -> direct.Statement:
    # The chat the agent's chats were read for, still theirs, and no case of it waiting for
    # its first answer (that acknowledgement is the session transaction's).
    conv = bindparam("v_conv", type_=Conversation.id.type)
    return direct.Statement(
        select(Conversation.id).where(
            Conversation.id == conv,
            Conversation.agent_id == bindparam("v_agent", type_=Conversation.agent_id.type),
            Conversation.status == ASSIGNED,
            ~exists().where(cases.waiting_for_an_answer(conv)),
        )
    )


_STILL_THEIRS = _still_theirs()


async def _transcribe(
    on: AsyncSession | direct.Tx,
    conv: Conversation,
    agent: Agent,
    message: Message,
    content: Content,
    now: datetime,
) -> bool:
    """The agent's Telegram message into the chat's transcript, unless it is there already
    (False: a redelivered update)."""
    return await conversations.add_message_once(
        on,
        conv,
        sender="agent",
        agent_id=agent.id,
        content_type=content.content_type,
        text=content.text,
        file_id=content.file_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        now=now,
    )


async def _relay_direct(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock,
    content: Content, target: conversations.Target,
) -> bool:  # fmt: skip
    """Other databases (SQLite): the usual agent message as :func:`_relay_alone_pg` decides
    it, in a direct transaction (routing/store/direct.py) instead of the session's and its
    greenlets (a fifth of a relayed answer's CPU; issue 19). False: nothing was written."""
    conv, customer = target.conversation, target.customer
    assert conv is not None and customer is not None and customer.telegram_id is not None
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    async with direct.transaction(engine) as tx:
        if await _STILL_THEIRS.scalar(tx, {"v_conv": conv.id, "v_agent": agent.id}) is None:
            return False
        new = await _transcribe(tx, conv, agent, message, content, clock())
        if not new:
            return False
        await enqueue.to_customer(
            tx,
            conv.id,
            customer.telegram_id,
            from_chat_id=message.chat.id,
            message_id=message.message_id,
            now=desk.now(),
        )
        await conversations.link(
            tx, agent.telegram_id, message.message_id, conv.id, conversations.LINK_SENT
        )
    return True


async def relay(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock
) -> Conversation | None:
    """An agent's message goes to exactly one customer, or nowhere with a question back.
    Returns the chat it went to (also when a redelivery finds it there already)."""
    content = content_of(message)
    if message.media_group_id is None and not session.in_transaction():
        # Which chat, read with no transaction, then the message stored, queued and linked
        # in one statement (PostgreSQL, _relay_alone_pg) or a direct transaction (SQLite,
        # _relay_direct), or nothing written and the session's transaction below decides.
        target, items = await _targets(session, agent, message)
        if not _deliverable(target):
            await _nowhere(message, target, items)
            return None
        alone = _relay_alone_pg if direct.on_postgresql(session) else _relay_direct
        if await alone(message, session, agent, desk, clock, content, target):
            assert target.conversation is not None
            await desk.kick(target.conversation.id, TO_CUSTOMER)
            return target.conversation
    # One transaction: which chat, and the message stored and queued for it.
    async with session.begin():
        target, items = await _targets(session, agent, message)
        conv, customer = target.conversation, target.customer
        if not _deliverable(target):
            new = False
        else:
            assert conv is not None
            new = await _transcribe(session, conv, agent, message, content, clock())
        if new:
            assert conv is not None and customer is not None and customer.telegram_id is not None
            # The transcript row and its delivery in one transaction: sent in order, retried
            # through outages and flood limits; a refusal is reported by the deliverer.
            await enqueue.to_customer(
                session,
                conv.id,
                customer.telegram_id,
                from_chat_id=message.chat.id,
                message_id=message.message_id,
                media_group_id=message.media_group_id,
                now=desk.now(),
            )
            # Replying to this agent message later addresses the same chat.
            await conversations.link(
                session, agent.telegram_id, message.message_id, conv.id, conversations.LINK_SENT
            )
            await complaint_handlers.acknowledge_relayed(
                session, agent.id, conv.id, desk.policy, clock
            )
    if conv is None or customer is None or customer.telegram_id is None:
        await _nowhere(message, target, items)
        return None
    if new:
        await desk.kick(conv.id, TO_CUSTOMER)
    return conv
