"""Agents and the queue: /transfer, and Accept / Pass on offers (offer mode)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, Update
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.desk import Desk
from bot.desk.handover import earlier, hold
from bot.middlewares import alert, answer_now
from routing.clock import Clock
from routing.queue import claims, conversations
from routing.queue.conversations import TargetHow
from routing.store.models import Agent, Customer, QueueOffer

router = Router(name="queue")

# `/transfer queue [note]`: back to the queue with a note.
QUEUE_WORDS = frozenset({"queue", "-"})


def split_target(args: str, names: list[str]) -> tuple[str | None, str | None]:
    """``NAME [note]`` -> (name, note). Names may have spaces: the longest match wins.

    (None, note) means back to the queue; an unknown first word comes back as the name so
    the agent hears "no agent called ...".
    """
    words = args.split()
    if not words:
        return None, None
    if words[0].casefold() in QUEUE_WORDS:
        return None, " ".join(words[1:]) or None
    known = {n.casefold() for n in names}
    for k in range(len(words), 0, -1):
        candidate = " ".join(words[:k])
        if candidate.casefold() in known:
            return candidate, " ".join(words[k:]) or None
    return words[0], " ".join(words[1:]) or None


@router.message(Command("transfer"))
async def transfer(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    desk: Desk,
    event_update: Update,
) -> None:
    reply_to = message.reply_to_message.message_id if message.reply_to_message else None
    async with session.begin():
        before = await earlier(session, event_update.update_id)
        if before is None:
            target = await conversations.resolve_target(session, agent, reply_to)
            names = list(
                (await session.execute(select(Agent.name).where(Agent.active.is_(True)))).scalars()
            )
    if before is not None:
        # Handled before a crash lost its done mark: the chat it transferred is transferred
        # (resolving "the chat I am in" again would move the agent's next one).
        if before.hand_over is not None:
            await desk.hand_over(session, *before.hand_over, greet=False)
        return
    conv, customer = target.conversation, target.customer
    if conv is None or customer is None:
        if target.how is TargetHow.AMBIGUOUS:
            await message.answer(texts.agent.ambiguous(2) + "\n\n" + texts.agent.transfer_usage())
        elif target.how is TargetHow.NOT_YOURS:
            await message.answer(texts.agent.not_yours())
        else:
            await message.answer(texts.agent.no_open_chats())
        return
    name, note = split_target(command.args or "", names)
    if name is None:
        await desk.queue.transfer_back(
            session, agent, conv, customer, note, update_id=event_update.update_id
        )
        return
    error = await desk.queue.transfer_to(
        session, agent, conv, customer, name, note, update_id=event_update.update_id
    )
    if error is not None:
        await message.answer(error)


@router.callback_query(keyboards.OfferCb.filter())
async def offer_answer(
    query: CallbackQuery,
    callback_data: keyboards.OfferCb,
    session: AsyncSession,
    agent: Agent,
    desk: Desk,
    clock: Clock,
    callback_answer: CallbackAnswer,
    event_update: Update,
) -> None:
    if not callback_data.accept:
        if not await desk.queue.decline(session, callback_data.id, agent):
            alert(callback_answer, texts.agent.offer_gone())
        return
    result, conv, customer = None, None, None
    async with session.begin():
        before = await earlier(session, event_update.update_id)
        if before is None:
            offer = await session.get(QueueOffer, callback_data.id)
            ok = offer is not None and offer.agent_id == agent.id and offer.outcome == "pending"
            result = (
                await claims.claim(session, offer.conversation_id, agent, clock())
                if ok and offer is not None
                else None
            )
            conv = result.conversation if result is not None else None
            if result is not None and result.won and conv is not None:
                await hold(session, event_update.update_id, conv, agent, now=desk.now())
            customer = await session.get(Customer, conv.customer_id) if conv is not None else None
    if before is not None:  # handled before a crash: only the hand-over it did not get to
        await answer_now(query, callback_answer)
        if before.hand_over is not None:
            await desk.hand_over(session, *before.hand_over)
        return
    if result is None or conv is None or customer is None:
        alert(callback_answer, texts.agent.offer_gone())
        return
    refusal = desk.queue.refusal(result, agent)
    if refusal is not None:
        alert(callback_answer, refusal)
        return
    if not result.won:
        alert(callback_answer, texts.agent.offer_gone())
        return
    await answer_now(query, callback_answer)
    await desk.hand_over(session, agent, conv)
