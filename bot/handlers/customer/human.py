"""Customers and a person: asking for one, and what they send while a chat is open.

A human-first (VIP) tier's customer is queued by their first message; other tiers ask with
/human or the menu's button, as their tier's policy allows (never, after trying
self-service, always) and within its business hours.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.types import CallbackQuery, Message
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import keyboards, texts
from bot.adapters.content import Content, content_of
from bot.filters import InAChat, SurveyComment
from bot.handlers.customer.complaint import ComplaintFlow
from bot.handlers.customer.context import CustomerContext
from bot.handlers.customer.selfservice import ANSWER_FIRST, self_service, send_menu
from routing.delivery import enqueue
from routing.queue import claims, conversations
from routing.selfservice import deflection
from routing.store import direct
from routing.store.models import (
    ASSIGNED,
    QUEUED,
    TO_AGENT,
    Agent,
    Conversation,
    Customer,
    open_chat_of,
)
from routing.store.models import Message as Message_

router = Router(name="human")


async def _request_human(ctx: CustomerContext) -> tuple[str, bool]:
    """Queue the customer for a person, if the tier's policy allows it now.

    Returns what to tell them, and whether the request was refused (then the menu follows).
    """
    session, customer, policy = ctx.session, ctx.customer, ctx.policy
    access = ctx.selfservice.access(customer.tier)
    vip = not customer.is_guest and policy.is_human_first(customer.tier)
    now = ctx.clock()
    if not vip and access.human == "never":
        return texts.customer.human_never(), True
    async with session.begin():
        if not vip and access.human == "after_selfservice":
            tried = await deflection.tried_selfservice(session, customer, now, ctx.idle_timeout)
            if not tried:
                return texts.customer.human_after_selfservice(), True
        await deflection.end(session, customer, deflection.HANDOFF, now, ctx.idle_timeout)
        conv, created = await conversations.open_conversation(
            session, customer, policy, conversations.ORIGIN_REQUEST, now
        )
        if conv.status == ASSIGNED and conv.agent_id is not None:
            agent = await session.get(Agent, conv.agent_id)
            return texts.customer.already_with_agent(agent.name if agent else None), False
        pos = await claims.position(session, conv)
    if not created:
        return texts.customer.already_queued(pos), False
    if not access.is_open(now):
        # Recorded in the queue; agents see it on /online or /queue when they are back.
        return _out_of_hours(ctx), False
    online = await ctx.desk.page(session, conv, customer, None)
    return texts.customer.queued(pos, online), False


def _out_of_hours(ctx: CustomerContext) -> str:
    access = ctx.selfservice.access(ctx.customer.tier)
    return texts.customer.out_of_hours(
        texts.customer.opening_hours(list(access.hours), access.timezone)
    )


@router.message(Command("human"))
async def human(message: Message, ctx: CustomerContext) -> None:
    await ctx.state.clear()
    reply, refused = await _request_human(ctx)
    await message.answer(reply)
    if refused:
        await send_menu(ctx)


@router.callback_query(keyboards.HumanCb.filter(), flags=ANSWER_FIRST)
async def human_button(query: CallbackQuery, ctx: CustomerContext) -> None:
    if query.message is None:
        return
    # A hand-off ends whatever self-service prompt was open (an order number, say).
    await ctx.state.clear()
    reply, refused = await _request_human(ctx)
    await ctx.send(reply)
    if refused:
        await send_menu(ctx)


# ~SurveyComment(): a comment on a survey goes to the survey (which relays it to an open
# recovery chat's agent itself); see bot/filters.py. ~StateFilter(ComplaintFlow): a complaint
# being filed takes its category and description itself (bot/handlers/customer/complaint.py).
@router.message(InAChat(), ~F.text.startswith("/"), ~SurveyComment(), ~StateFilter(ComplaintFlow))
async def in_a_chat(
    message: Message, ctx: CustomerContext, open_conversation: Conversation | None
) -> None:
    """While a chat with a person is open, whatever the customer sends is for that person.

    A prompt left open (an order number, a customer code) must not answer "I could not find
    an order ..." to "my parcel never arrived", and a contact card is relayed, not taken as
    identification: those handlers say ``~InAChat()``, and the prompt is closed here.
    """
    await ctx.state.clear()
    await converse(message, ctx, open_conversation)


async def converse(
    message: Message, ctx: CustomerContext, open_conversation: Conversation | None
) -> None:
    """A message no feature took: into the open conversation, a new VIP conversation, or
    self-service."""
    customer, policy = ctx.customer, ctx.policy
    human_first = not customer.is_guest and policy.is_human_first(customer.tier)
    if open_conversation is None and not human_first:
        # Self-service, most messages: the middleware's lookup already found no open chat,
        # so there is nothing to store here and no transaction to open.
        await self_service(message, ctx)
        return
    content = content_of(message)
    conv, created, duplicate = await _store(
        message, ctx, content, open_conversation, human_first=human_first
    )
    if conv is None:
        await self_service(message, ctx)
    elif duplicate:
        return
    elif created:
        if not ctx.selfservice.access(customer.tier).is_open(ctx.clock()):
            await message.answer(_out_of_hours(ctx))
            return
        online = await ctx.desk.page(ctx.session, conv, customer, content.preview())
        await message.answer(texts.customer.vip_queued(online))
    else:
        await ctx.desk.kick(conv.id, TO_AGENT)


# Built once (every message of a customer in a chat): the customer's open chat, read in the
# transaction that stores the message (a claim or a close may have committed since the
# update's lookup), on the driver's connection (routing/store/direct.py).
_OPEN_CHAT_NOW = direct.Statement(
    select(Conversation.id).where(open_chat_of(bindparam("customer_id")))
)


def _relay_alone(pg: Any) -> Any:
    # PostgreSQL: a customer's message in their open chat, stored and queued in one
    # statement (see _store). Each part runs only if the one before it did.
    open_chat = select(Conversation.id).where(open_chat_of(bindparam("customer_id"))).cte()
    stored, spoke = conversations.customer_message_parts(pg, open_chat)
    queued = enqueue.to_agent_after(stored)
    return select(
        select(open_chat.c.id).scalar_subquery().label("open_id"),
        select(stored.c.id).scalar_subquery().label("stored"),
        select(func.count()).select_from(spoke).scalar_subquery().label("spoke"),
        select(queued.c.id).scalar_subquery().label("queued"),
    )


_RELAY_ALONE = direct.Statement(per_dialect=_relay_alone)


def _open_alone(pg: Any) -> Any:
    # PostgreSQL: a chat opened by the customer's message, the message stored into it and
    # queued for the agent, in one statement (see _store); no row if one is open already.
    opened, stored = conversations.opening_parts(pg)
    queued = enqueue.to_agent_after(stored, its_chat=True)
    return select(
        *opened.c,
        select(stored.c.id).scalar_subquery().label("stored"),
        select(queued.c.id).scalar_subquery().label("queued"),
    ).select_from(opened)


_OPEN_ALONE = direct.Statement(per_dialect=_open_alone)


async def _open_alone_pg(
    message: Message, ctx: CustomerContext, content: Content
) -> Conversation | None:
    """PostgreSQL: a human-first customer's message with no chat open (the lookup found
    none; not part of an album) opens one, is stored into it and queued for whoever will
    hold it, in one statement, one round trip and atomic by itself, where the transaction
    was seven (BEGIN, the open chat read again, the chat, the transcript row, the chat's
    mark, the queued row, COMMIT: a VIP's first message; issue 19). None: a chat is open
    after all (opened since the lookup); nothing was written and the transaction decides.
    The chat becomes the session's instance as loaded."""
    now = ctx.clock()
    params = {
        **conversations.open_params(ctx.customer, ctx.policy, conversations.ORIGIN_VIP, now),
        "v_type": content.content_type, "v_text": content.text, "v_file": content.file_id,
        "v_chat": message.chat.id, "v_message": message.message_id,
        "v_from": message.chat.id, "v_ids": json.dumps([message.message_id]),
        "v_next": ctx.desk.now(),
    }  # fmt: skip
    engine = ctx.session.bind
    assert isinstance(engine, AsyncEngine)
    rows = await _OPEN_ALONE.read(engine, params)
    if not rows:
        return None
    return conversations.attach_opened(ctx.session, rows[0])


async def _relay_alone_pg(
    message: Message, ctx: CustomerContext, content: Content, conv: Conversation
) -> bool:
    """PostgreSQL: the usual case of :func:`_store` (the message goes into the chat the
    lookup found, still open, and is not a redelivery or part of an album) as one statement,
    one round trip and atomic by itself, where the transaction was six (BEGIN, the chat read
    again, the transcript row, the chat's mark, the queued row, COMMIT; issue 19). False:
    nothing was written (the chat changed since the lookup, or the message is stored
    already): the transaction decides."""
    now = ctx.clock()
    params = {
        "customer_id": ctx.customer.id, "v_conv": conv.id, "v_type": content.content_type,
        "v_text": content.text, "v_file": content.file_id, "v_chat": message.chat.id,
        "v_message": message.message_id, "v_at": now, "v_from": message.chat.id,
        "v_ids": json.dumps([message.message_id]), "v_next": ctx.desk.now(),
    }  # fmt: skip
    engine = ctx.session.bind
    assert isinstance(engine, AsyncEngine)
    (row,) = await _RELAY_ALONE.read(engine, params)
    if row.stored is None:
        return False
    conversations.customer_spoke(conv, now)
    return True


async def _transcribe(
    on: AsyncSession | direct.Tx,
    conv: Conversation,
    message: Message,
    content: Content,
    now: datetime,
) -> bool:
    """The customer's Telegram message into the chat's transcript, unless it is there
    already (False: a redelivered update; it was queued for the agent with it)."""
    return await conversations.add_message_once(
        on,
        conv,
        sender="customer",
        content_type=content.content_type,
        text=content.text,
        file_id=content.file_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        now=now,
    )


async def _relay_direct(
    message: Message, ctx: CustomerContext, content: Content, conv: Conversation
) -> bool:
    """Other databases (SQLite): the usual case of :func:`_store` as the same statements in
    a direct transaction (routing/store/direct.py), without the session's transaction and
    its greenlets (a third of a relayed message's CPU before it is sent; issue 19). False:
    nothing was written (the chat changed since the lookup, or the message is stored
    already): the session's transaction decides."""
    engine = ctx.session.bind
    assert isinstance(engine, AsyncEngine)
    async with direct.transaction(engine) as tx:
        if await _OPEN_CHAT_NOW.scalar(tx, {"customer_id": ctx.customer.id}) != conv.id:
            return False
        new = await _transcribe(tx, conv, message, content, ctx.clock())
        if not new:
            return False
        await enqueue.to_agent(
            tx,
            conv.id,
            from_chat_id=message.chat.id,
            message_id=message.message_id,
            now=ctx.desk.now(),
        )
    return True


async def _store(
    message: Message,
    ctx: CustomerContext,
    content: Content,
    open_conversation: Conversation | None,
    *,
    human_first: bool,
) -> tuple[Conversation | None, bool, bool]:
    """Add the message to the customer's open chat (opening one for a human-first tier) and
    queue it for the agent, in one transaction: (chat, newly opened, already stored)."""
    session, customer = ctx.session, ctx.customer
    alone = message.media_group_id is None and not session.in_transaction()
    if (
        open_conversation is not None
        and alone
        and await (_relay_alone_pg if direct.on_postgresql(session) else _relay_direct)(
            message, ctx, content, open_conversation
        )
    ):
        return open_conversation, False, False
    if open_conversation is None and human_first and alone and direct.on_postgresql(session):
        opened = await _open_alone_pg(message, ctx, content)
        if opened is not None:
            return opened, True, False
    async with session.begin():
        conv_id = await _OPEN_CHAT_NOW.scalar(session, {"customer_id": customer.id})
        conv: Conversation | None = None
        if open_conversation is not None and open_conversation.id == conv_id:
            conv = open_conversation  # the one the lookup found: only its id is used here
        elif conv_id is not None:
            conv = await session.get(Conversation, conv_id, populate_existing=True)
        created = False
        if conv is None and human_first:
            conv, created = await conversations.open_conversation(
                session, customer, ctx.policy, conversations.ORIGIN_VIP, ctx.clock()
            )
        if conv is None:
            return None, False, False
        # False: this Telegram message is in the transcript already (a redelivered update);
        # it was queued for the agent with it.
        new = await _transcribe(session, conv, message, content, ctx.clock())
        if new:
            # For whoever holds the chat when it is sent: a queued chat's messages are the
            # hand-over's backlog, whatever the order of the claim and this commit.
            await enqueue.to_agent(
                session,
                conv.id,
                from_chat_id=message.chat.id,
                message_id=message.message_id,
                media_group_id=message.media_group_id,
                now=ctx.desk.now(),
            )
        elif await _opening_unfinished(session, conv, customer, message):
            # The process died after this message opened the chat and before anyone was
            # paged (the commit above and the pages are not one step): a redelivery must
            # finish the opening, or the chat would wait with nobody told and no reply.
            created = True
    return conv, created, not new and not created


async def _opening_unfinished(
    session: AsyncSession, conv: Conversation, customer: Customer, message: Message
) -> bool:
    """This message opened a chat that is still queued and nobody was paged about."""
    # Read the chat and the customer again, inside the transaction: the chat may be the
    # lookup's instance, read before this transaction began, and its status must be the
    # stored one (a claim may have committed since).
    await session.refresh(conv)
    await session.refresh(customer)
    if conv.status != QUEUED:
        return False
    first = (
        await session.execute(
            select(Message_.chat_id, Message_.message_id)
            .where(Message_.conversation_id == conv.id, Message_.sender == "customer")
            .order_by(Message_.id)
            .limit(1)
        )
    ).first()
    if first is None or tuple(first) != (message.chat.id, message.message_id):
        return False
    return not await conversations.notifications(session, conv.id)
