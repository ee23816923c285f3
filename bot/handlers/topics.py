"""Topics mode: what agents do in the staff forum supergroup.

The group is its own audience (``in_desk_group``): its updates come from a group chat, so
the session middleware loads no sender; :class:`AgentInGroup` loads the registered agent
writing there, and every handler here requires one: a group member who is not a registered
agent is ignored and never reaches a customer.

- anywhere in the group: Claim and Accept buttons, ``/queue`` (the queue view, posted
  afresh), ``/next``;
- in a customer's topic: a plain message goes to the customer (only from the agent holding
  the chat; every type, albums as albums); ``/note TEXT`` or a message starting with ``#`` is
  an internal note kept in the transcript and never sent; ``/r KEY`` sends a canned reply
  (from the holder only); ``/close``, ``/transfer``, ``/takeover`` (supervisors),
  ``/complaint``, ``/remedy``, ``/resolve`` act on the topic's chat without addressing; an
  agent's edit edits the customer's copy.
- a customer's edit (private chat) is shown in their topic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import Message, ReplyParameters, TelegramObject, Update
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.adapters.content import content_of
from bot.desk import Desk
from bot.desk.handover import earlier, hold
from bot.filters import IsAgent, IsCustomer, IsSupervisor
from bot.handlers import agent as agent_handlers
from bot.handlers import complaint as complaint_handlers
from bot.handlers import desk_tools
from bot.handlers import queue as queue_handlers
from bot.i18n import for_customer
from routing.clock import Clock
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.queue import agents, claims, conversations
from routing.queue import topics as records
from routing.store.models import ASSIGNED, TO_CUSTOMER, Agent, Conversation, Customer


class InDeskGroup(Filter):
    async def __call__(self, event: TelegramObject, policy: Policy | None = None) -> bool:
        if policy is None or not policy.desk.topics:
            return False
        msg = event if isinstance(event, Message) else getattr(event, "message", None)
        return isinstance(msg, Message) and msg.chat.id == policy.desk.group_id


class AgentInGroup(BaseMiddleware):
    """The registered agent who wrote in the staff group (``agent``), else None."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        policy: Policy | None = data.get("policy")
        session: AsyncSession = data["session"]
        in_group = policy is not None and chat is not None and chat.id == policy.desk.group_id
        if user is not None and not user.is_bot and in_group:
            async with session.begin():
                data["agent"] = await agents.by_telegram_id(session, user.id)
        return await handler(event, data)


async def show_queue(message: Message, session: AsyncSession, desk: Desk) -> None:
    if desk.topics is not None:
        await desk.topics.refresh_board(session, repost=True)


async def _topic_chat(
    session: AsyncSession, message: Message, desk: Desk
) -> tuple[Conversation | None, Customer | None]:
    """The open chat of the customer whose topic the message is in."""
    thread = message.message_thread_id if message.is_topic_message else None
    if thread is None or desk.topics is None:
        return None, None
    async with session.begin():
        customer_id = await records.customer_of_thread(session, desk.topics.group_id, thread)
        if customer_id is None:
            return None, None
        customer = await session.get(Customer, customer_id)
        conv = await conversations.open_for_customer(session, customer_id)
    return conv, customer


class InCustomerTopic(Filter):
    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and bool(event.is_topic_message)


async def note(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock
) -> None:
    conv, _customer = await _topic_chat(session, message, desk)
    if conv is None:
        await message.answer(texts.topics.no_open_chat())
        return
    text = (message.text or "").removeprefix("/note").strip() or (message.text or "")
    async with session.begin():
        # One representation of an internal note in both modes (the hand-over's labelled
        # transcript marks it; the relay guard keeps a redelivered note from doubling).
        await conversations.add_note(
            session, conv, agent_id=agent.id, text=text,
            chat_id=message.chat.id, message_id=message.message_id, now=clock(),
        )  # fmt: skip
    await message.reply(texts.topics.note_kept())


async def close(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, policy: Policy,
    clock: Clock,
) -> None:  # fmt: skip
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None:
        await message.answer(texts.topics.no_open_chat())
        return
    if conv.agent_id != agent.id and agent.role != "supervisor":
        await message.answer(texts.agent.not_yours())
        return
    async with session.begin():
        survey = await conversations.close(session, conv, customer, policy, clock())
    if survey is None:
        await message.answer(texts.agent.closed_already())
        return
    await message.answer(texts.topics.closed(agent.name))
    if customer.telegram_id is not None:
        with for_customer(customer):
            closed = texts.customer.conversation_closed()
        await desk.send_quietly(customer.telegram_id, closed)
    if desk.topics is not None:
        await desk.topics.close_topic(session, customer.id)
        await desk.topics.refresh_board(session)


async def transfer(
    message: Message, command: CommandObject, session: AsyncSession, agent: Agent, desk: Desk
) -> None:
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None or conv.status != ASSIGNED:
        await message.answer(texts.topics.no_open_chat())
        return
    if conv.agent_id != agent.id:
        await message.answer(texts.agent.not_yours())
        return
    async with session.begin():
        names = list(
            (await session.execute(select(Agent.name).where(Agent.active.is_(True)))).scalars()
        )
    name, text = queue_handlers.split_target(command.args or "", names)
    if name is None:
        await desk.queue.transfer_back(session, agent, conv, customer, text)
    else:
        error = await desk.queue.transfer_to(session, agent, conv, customer, name, text)
        if error is not None:
            await message.answer(error)
    if desk.topics is not None:
        await desk.topics.refresh_board(session)


async def takeover(
    message: Message,
    session: AsyncSession,
    agent: Agent,
    desk: Desk,
    clock: Clock,
    event_update: Update,
) -> None:
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None:
        await message.answer(texts.topics.no_open_chat())
        return
    async with session.begin():
        before = await earlier(session, event_update.update_id)
        if before is None:
            if conv.status == ASSIGNED and conv.agent_id != agent.id:
                await claims.requeue(session, conv, front=True)
            result = await claims.claim(session, conv.id, agent, clock())
            if result.won:
                await hold(session, event_update.update_id, conv, agent, now=desk.now())
    if before is not None:  # handled before a crash: only the hand-over it did not get to
        if before.hand_over is not None:
            await desk.hand_over(session, *before.hand_over)
        return
    if not result.won or result.conversation is None:
        refusal = desk.queue.refusal(result, agent)
        await message.answer(refusal or texts.agent.chat_gone())
        return
    await message.answer(texts.topics.taken_over(agent.name))
    await desk.hand_over(session, agent, result.conversation)


async def relay(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock
) -> None:
    """A message in a customer's topic goes to that customer, from the holder only."""
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None:
        return  # a topic without an open chat: agents may talk among themselves
    if conv.agent_id != agent.id or conv.status != ASSIGNED:
        holder = None
        if conv.agent_id is not None:
            async with session.begin():
                other = await session.get(Agent, conv.agent_id)
            holder = other.name if other is not None else None
        await message.reply(texts.topics.not_holder(holder))
        return
    if customer.telegram_id is None:
        await message.answer(texts.agent.not_reachable())
        return
    content = content_of(message)
    async with session.begin():
        new = await conversations.add_message_once(
            session, conv, sender="agent", agent_id=agent.id, content_type=content.content_type,
            text=content.text, file_id=content.file_id, chat_id=message.chat.id,
            message_id=message.message_id, now=clock(),
        )  # fmt: skip
        if new:
            await enqueue.to_customer(
                session, conv.id, customer.telegram_id, from_chat_id=message.chat.id,
                message_id=message.message_id, media_group_id=message.media_group_id,
                now=desk.now(),
            )  # fmt: skip
            # The chat's complaint cases waiting for a first answer are acknowledged by it.
            await complaint_handlers.acknowledge_relayed(
                session, agent.id, conv.id, desk.policy, clock
            )
    if new:
        await desk.kick(conv.id, TO_CUSTOMER)


async def canned(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> None:
    """``/r KEY`` in a customer's topic: the canned reply to that customer, from the holder
    only (bot/handlers/desk_tools.py does the rest, as in private mode)."""
    reply = await desk_tools.pick_canned(message, command, policy)
    if reply is None:
        return
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None:
        await message.answer(texts.topics.no_open_chat())
        return
    if conv.agent_id != agent.id or conv.status != ASSIGNED:
        async with session.begin():
            other = await session.get(Agent, conv.agent_id) if conv.agent_id else None
        await message.reply(texts.topics.not_holder(other.name if other else None))
        return
    await desk_tools.send_canned(
        message, reply, conv, customer, session, agent, policy, desk, clock
    )


async def _held(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk
) -> tuple[Conversation, Customer] | None:
    """The topic's chat if this agent holds it, else None after saying why."""
    conv, customer = await _topic_chat(session, message, desk)
    if conv is None or customer is None:
        await message.answer(texts.topics.no_open_chat())
        return None
    if conv.agent_id != agent.id or conv.status != ASSIGNED:
        async with session.begin():
            other = await session.get(Agent, conv.agent_id) if conv.agent_id else None
        await message.reply(texts.topics.not_holder(other.name if other else None))
        return None
    return conv, customer


async def complaint(
    message: Message, command: CommandObject, session: AsyncSession, agent: Agent,
    policy: Policy, desk: Desk, clock: Clock,
) -> None:  # fmt: skip
    """``/complaint``, ``/remedy``, ``/resolve`` in a customer's topic: on the topic's chat,
    without addressing (bot/handlers/complaint.py does the rest, as in private mode)."""
    if not (command.args or "").strip():  # the usage line, without a chat
        await complaint_handlers.complaint(message, command, session, agent, policy, desk, clock)
        return
    found = await _held(message, session, agent, desk)
    if found is not None:
        await complaint_handlers.complaint(
            message, command, session, agent, policy, desk, clock, in_hand=found
        )


async def remedy(
    message: Message, command: CommandObject, session: AsyncSession, agent: Agent,
    policy: Policy, desk: Desk, clock: Clock,
) -> None:  # fmt: skip
    if not (command.args or "").strip():
        await complaint_handlers.remedy(message, command, session, agent, policy, clock)
        return
    found = await _held(message, session, agent, desk)
    if found is not None:
        await complaint_handlers.remedy(
            message, command, session, agent, policy, clock, in_hand=found
        )


async def resolve(
    message: Message, command: CommandObject, session: AsyncSession, agent: Agent,
    policy: Policy, desk: Desk, clock: Clock,
) -> None:  # fmt: skip
    found = await _held(message, session, agent, desk)
    if found is not None:
        await complaint_handlers.resolve(
            message, command, session, agent, policy, desk, clock, in_hand=found
        )


async def agent_edit(message: Message, session: AsyncSession, agent: Agent, desk: Desk) -> None:
    """An agent's edit edits the customer's copy."""
    async with session.begin():
        copy = await records.copy_of(session, message.chat.id, message.message_id)
    if copy is None:
        return
    chat_id, message_id = copy
    try:
        if message.text is not None:
            await desk.bot.edit_message_text(
                text=message.text, chat_id=chat_id, message_id=message_id, entities=message.entities
            )
        elif message.caption is not None:
            await desk.bot.edit_message_caption(
                chat_id=chat_id, message_id=message_id, caption=message.caption,
                caption_entities=message.caption_entities,
            )  # fmt: skip
    except TelegramAPIError:
        pass  # not modified, or too old to edit (48 h)


async def customer_edit(
    message: Message, session: AsyncSession, desk: Desk, customer: Customer
) -> None:
    """A customer's edit is shown in their topic, under the copy it changes."""
    if desk.topics is None:
        return
    async with session.begin():
        copy = await records.copy_of(
            session, message.chat.id, message.message_id, desk.topics.group_id
        )
        thread = await records.thread_of(session, customer.id)
    if copy is None:
        return
    with contextlib.suppress(TelegramAPIError):
        # In the topic by its id, not only by the reply: without it a reply whose target
        # is gone would land in the General topic.
        await desk.bot.send_message(
            copy[0],
            texts.topics.customer_edited(message.text or message.caption or ""),
            message_thread_id=thread,
            reply_parameters=ReplyParameters(message_id=copy[1], allow_sending_without_reply=True),
        )


def routers() -> list[Router]:
    """The staff group's router and the customers' edits, built afresh for each dispatcher
    (a router attaches to one parent). Both match nothing in private mode."""
    group = Router(name="desk-group")
    for observer in (group.message, group.edited_message, group.callback_query):
        # An outer middleware: it runs before the filters, so IsAgent sees the agent.
        observer.outer_middleware(AgentInGroup())
        observer.filter(InDeskGroup(), IsAgent())
    # Claims and offers answer the same in the group as in a private chat.
    group.callback_query.register(agent_handlers.claim_button, keyboards.ClaimCb.filter())
    group.callback_query.register(queue_handlers.offer_answer, keyboards.OfferCb.filter())
    group.message.register(agent_handlers.next_, Command("next"))
    customer_edits = Router(name="desk-customer-edits")
    customer_edits.edited_message.filter(IsCustomer(), InTopicsMode())
    group.message.register(show_queue, Command("queue"))
    group.message.register(note, Command("note"), InCustomerTopic())
    group.message.register(note, F.text.startswith("#"), InCustomerTopic())
    group.message.register(close, Command("close"), InCustomerTopic())
    group.message.register(transfer, Command("transfer"), InCustomerTopic())
    group.message.register(takeover, Command("takeover"), InCustomerTopic(), IsSupervisor())
    group.message.register(canned, Command("r"), InCustomerTopic())
    group.message.register(complaint, Command("complaint"), InCustomerTopic())
    group.message.register(remedy, Command("remedy"), InCustomerTopic())
    group.message.register(resolve, Command("resolve"), InCustomerTopic())
    group.message.register(relay, InCustomerTopic(), ~F.text.startswith("/"))
    group.edited_message.register(agent_edit, InCustomerTopic())
    customer_edits.edited_message.register(customer_edit)
    return [group, customer_edits]


class InTopicsMode(Filter):
    async def __call__(self, event: TelegramObject, policy: Policy | None = None) -> bool:
        return policy is not None and policy.desk.topics
