"""Which chat an agent's command addresses (by reply, focus or the only chat held), or a
one-line answer saying why none: shared by the desk tools (/note, /r) and the complaint
commands (/complaint, /remedy, /resolve)."""

from __future__ import annotations

from collections.abc import Callable

from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from routing.queue import conversations
from routing.queue.conversations import TargetHow
from routing.store.models import Agent, Conversation, Customer


async def addressed(
    message: Message,
    session: AsyncSession,
    agent: Agent,
    which: Callable[[int], str] = texts.agent.ambiguous,
) -> tuple[Conversation, Customer] | None:
    """The chat ``message`` addresses; None after telling the agent why there is none
    (``which(n)`` asks which of ``n`` chats is meant)."""
    reply_to = message.reply_to_message.message_id if message.reply_to_message else None
    async with session.begin():
        target = await conversations.resolve_target(session, agent, reply_to)
        items = (
            await conversations.agent_chats(session, agent)
            if target.how is TargetHow.AMBIGUOUS
            else []
        )
    if target.conversation is not None and target.customer is not None:
        return target.conversation, target.customer
    if target.how is TargetHow.AMBIGUOUS:
        await message.answer(which(len(items)), reply_markup=keyboards.chats(items))
    elif target.how is TargetHow.NOT_YOURS:
        await message.answer(texts.agent.not_yours())
    else:
        await message.answer(texts.agent.no_open_chats())
    return None
