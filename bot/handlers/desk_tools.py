"""Agents' tools on the chat they address: internal notes (``/note``), canned replies
(``/r KEY``, and inline mode: ``@bot`` + words, which bot/handlers/fallback.py hands to
:func:`inline_canned`: an inline query has no command or prefix a feature could match).

The chat a command addresses is the one a message would go to (a reply to one of its
messages, else the focused chat, else the agent's only chat: bot/handlers/fallback.py's
relay). A note is kept in the transcript and never queued for the customer; a canned reply
is stored and delivered exactly like a message the agent typed, through the delivery queue.
"""

from __future__ import annotations

from html import escape

from aiogram import Router
from aiogram.enums import ParseMode
from aiogram.filters import Command, CommandObject
from aiogram.types import (
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultUnion,
    InputTextMessageContent,
    Message,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot import texts
from bot.desk import Desk
from bot.desk import canned as canned_replies
from bot.handlers import complaint as complaint_handlers
from bot.handlers.addressing import addressed
from routing.clock import Clock
from routing.delivery import enqueue
from routing.policy.desk import CannedReply
from routing.policy.root import Policy
from routing.queue import conversations
from routing.store.models import TO_CUSTOMER, Agent, Conversation, Customer

router = Router(name="desk-tools")

# Inline queries come from the agent's chat with the bot as "sender"; anywhere else (a chat
# with someone else) the replies are shown unfilled, so no customer's data leaves the desk.
FILLED_IN = frozenset({"sender"})


@router.message(Command("note"))
async def note(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    clock: Clock,
) -> None:
    """``/note TEXT``: an internal note on the chat, for agents only."""
    text = (command.args or "").strip()
    if not text:
        await message.answer(texts.desk.note_usage())
        return
    found = await addressed(message, session, agent)
    if found is None:
        return
    conv, customer = found
    async with session.begin():
        new = await conversations.add_note(
            session,
            conv,
            agent_id=agent.id,
            text=text,
            chat_id=message.chat.id,
            message_id=message.message_id,
            now=clock(),
        )
        if new:
            # Replying to the note later addresses the same chat.
            await conversations.link(session, message.chat.id, message.message_id, conv.id, "sent")
    if new:
        await message.answer(texts.desk.note_kept(conv, customer))


async def pick_canned(
    message: Message, command: CommandObject, policy: Policy
) -> CannedReply | None:
    """The reply ``/r KEY`` names; None after answering ``/r`` alone with the keys, or an
    unknown key with the keys that look like it."""
    words = (command.args or "").split()
    if not words:
        await message.answer(texts.desk.canned_list([c.key for c in policy.desk.canned]))
        return None
    reply = policy.desk.reply(words[0])
    if reply is None:
        close = canned_replies.close_matches(policy, words[0])
        await message.answer(texts.desk.canned_unknown(words[0], close))
    return reply


async def send_canned(
    message: Message,
    reply: CannedReply,
    conv: Conversation,
    customer: Customer,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> None:
    """``reply`` to the chat ``conv`` the agent holds, filled in the customer's language:
    stored and delivered like a message the agent typed (``message`` is the command, the
    transcript row's source). Both modes: private chat and the customer's topic."""
    if customer.telegram_id is None:
        await message.answer(texts.agent.not_reachable())
        return
    async with session.begin():
        filled = canned_replies.fill(
            policy, reply, customer, await canned_replies.values(session, customer)
        )
    if filled.text is None:
        await message.answer(texts.desk.canned_missing(reply.key, list(filled.missing)))
        return
    async with session.begin():
        new = await conversations.add_message_once(
            session,
            conv,
            sender="agent",
            agent_id=agent.id,
            content_type="text",
            text=filled.text,
            file_id=None,
            chat_id=message.chat.id,
            message_id=message.message_id,
            now=clock(),
        )
        if new:
            # Stored and queued in one transaction, in order with the agent's other messages.
            await enqueue.text_to_customer(
                session, conv.id, customer.telegram_id, escape(filled.text), now=desk.now()
            )
            await conversations.link(session, message.chat.id, message.message_id, conv.id, "sent")
            # An answer like any other: it acknowledges the chat's complaint cases.
            await complaint_handlers.acknowledge_relayed(session, agent.id, conv.id, policy, clock)
    if new:
        await desk.kick(conv.id, TO_CUSTOMER)
        await message.answer(texts.desk.canned_sent(conv, customer, filled.text))


@router.message(Command("r"))
async def canned(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> None:
    """``/r KEY``: the canned reply, in the customer's language, to the addressed chat;
    ``/r`` alone lists the keys."""
    reply = await pick_canned(message, command, policy)
    if reply is None:
        return
    found = await addressed(message, session, agent)
    if found is None:
        return
    conv, customer = found
    await send_canned(message, reply, conv, customer, session, agent, policy, desk, clock)


async def inline_canned(
    query: InlineQuery, session: AsyncSession, agent: Agent, policy: Policy
) -> None:
    """``@bot words``: the canned replies that match, filled for the agent's focused or only
    chat when asked from the chat with the bot; the picked one arrives as the agent's own
    message and is relayed like any other."""
    matches = canned_replies.search(policy.desk.canned, query.query)
    customer: Customer | None = None
    known: dict[str, str | None] = {}
    if query.chat_type in FILLED_IN and matches:
        async with session.begin():
            target = await conversations.resolve_target(session, agent, None)
            customer = target.customer
            if customer is not None:
                known = await canned_replies.values(session, customer)
    default = policy.selfservice.default_language
    results: list[InlineQueryResultUnion] = []
    for reply in matches:
        filled = canned_replies.fill(policy, reply, customer, known) if customer else None
        text = (
            filled.text
            if filled is not None and filled.text is not None
            else reply.text_for(None, default)
        )
        results.append(
            InlineQueryResultArticle(
                id=reply.key,
                title=reply.key,
                description=text[:120],
                # Said explicitly: aiogram does not apply the bot's default parse mode here.
                input_message_content=InputTextMessageContent(
                    message_text=escape(text), parse_mode=ParseMode.HTML
                ),
            )
        )
    # Personal and not cached: the filled text depends on the agent's chat of the moment.
    await query.answer(results, cache_time=0, is_personal=True)
