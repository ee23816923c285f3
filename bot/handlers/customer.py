"""Customers: identification, self-service menu, queueing for a person, relay to the agent."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.clock import Clock
from bot.content import content_of
from bot.desk import Desk
from bot.filters import IsCustomer
from routing import conversations, customers, queue
from routing.customers import LinkStatus
from routing.models import ASSIGNED, Agent, Customer
from routing.policy import Policy

router = Router(name="customer")
router.message.filter(IsCustomer())
router.callback_query.filter(IsCustomer())


class Identify(StatesGroup):
    waiting = State()


async def _menu(message: Message, policy: Policy) -> None:
    await message.answer(policy.selfservice.greeting, reply_markup=keyboards.menu(policy))


async def _welcome(message: Message, customer: Customer, policy: Policy, *, back: bool) -> None:
    vip = policy.is_human_first(customer.tier)
    text = texts.welcome_back(customer, vip) if back else texts.identified(customer, vip)
    await message.answer(text, reply_markup=ReplyKeyboardRemove())
    if not vip:
        await _menu(message, policy)


@router.message(CommandStart())
async def start(message: Message, customer: Customer, policy: Policy, state: FSMContext) -> None:
    if not customer.is_guest:
        await state.clear()
        await _welcome(message, customer, policy, back=True)
        return
    await state.set_state(Identify.waiting)
    await message.answer(texts.ASK_IDENTIFY, reply_markup=keyboards.share_phone())


@router.message(F.contact)
async def shared_contact(
    message: Message,
    session: AsyncSession,
    policy: Policy,
    clock: Clock,
    state: FSMContext,
) -> None:
    contact = message.contact
    assert contact is not None and message.from_user is not None
    if contact.user_id != message.from_user.id:
        # A forwarded or typed-in contact proves nothing about who is writing.
        await message.answer(texts.FOREIGN_CONTACT, reply_markup=keyboards.share_phone())
        return
    async with session.begin():
        result = await customers.link_by_phone(
            session, message.from_user.id, contact.phone_number, policy=policy, now=clock()
        )
    if result.status is LinkStatus.LINKED and result.customer is not None:
        await state.clear()
        await _welcome(message, result.customer, policy, back=False)
        return
    await message.answer(texts.PHONE_NOT_FOUND, reply_markup=ReplyKeyboardRemove())
    await _menu(message, policy)


@router.message(Identify.waiting, F.text, ~F.text.startswith("/"))
async def customer_code(
    message: Message, session: AsyncSession, policy: Policy, clock: Clock, state: FSMContext
) -> None:
    assert message.from_user is not None and message.text is not None
    async with session.begin():
        result = await customers.link_by_code(
            session, message.from_user.id, message.text, now=clock()
        )
    if result.status is LinkStatus.LINKED and result.customer is not None:
        await state.clear()
        await _welcome(message, result.customer, policy, back=False)
    elif result.status is LinkStatus.TAKEN:
        await message.answer(texts.CODE_TAKEN, reply_markup=keyboards.share_phone())
    else:
        await message.answer(texts.CODE_NOT_FOUND, reply_markup=keyboards.share_phone())


@router.message(Command("menu"))
async def menu(message: Message, policy: Policy, state: FSMContext) -> None:
    await state.clear()
    await _menu(message, policy)


@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer(texts.CUSTOMER_HELP)


async def _request_human(
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> str:
    """Queue the customer for a person; returns what to tell them."""
    async with session.begin():
        conv, created = await conversations.open_conversation(
            session, customer, policy, conversations.ORIGIN_REQUEST, clock()
        )
        if conv.status == ASSIGNED and conv.agent_id is not None:
            agent = await session.get(Agent, conv.agent_id)
            return texts.already_with_agent(agent.name if agent else "an agent")
        pos = await queue.position(session, conv)
    if not created:
        return texts.already_queued(pos)
    online = await desk.page(session, conv, customer, None)
    return texts.queued(pos, online)


@router.message(Command("human"))
async def human(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    state: FSMContext,
) -> None:
    await state.clear()
    await message.answer(await _request_human(session, customer, policy, desk, clock))


@router.callback_query(keyboards.HumanCb.filter())
async def human_button(
    query: CallbackQuery,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> None:
    await query.answer()
    reply = await _request_human(session, customer, policy, desk, clock)
    if query.message is not None:
        await query.bot.send_message(query.message.chat.id, reply)  # type: ignore[union-attr]


@router.callback_query(keyboards.FaqCb.filter())
async def faq(query: CallbackQuery, callback_data: keyboards.FaqCb, policy: Policy) -> None:
    entry = policy.faq(callback_data.id)
    if entry is None:
        # A button from before a policy change.
        await query.answer("This topic is no longer available.", show_alert=True)
        return
    await query.answer()
    if query.message is not None:
        await query.bot.send_message(  # type: ignore[union-attr]
            query.message.chat.id,
            f"<b>{escape(entry.question)}</b>\n\n{entry.answer}",
            reply_markup=keyboards.after_answer(),
        )


@router.callback_query(keyboards.MenuCb.filter())
async def menu_button(query: CallbackQuery, policy: Policy) -> None:
    await query.answer()
    if query.message is not None:
        await query.bot.send_message(  # type: ignore[union-attr]
            query.message.chat.id, policy.selfservice.greeting, reply_markup=keyboards.menu(policy)
        )


@router.callback_query()
async def stale_button(query: CallbackQuery) -> None:
    await query.answer("This button is no longer active.")


@router.message(F.text.startswith("/"))
async def unknown_command(message: Message) -> None:
    await message.answer(f"{texts.UNKNOWN_COMMAND}\n\n{texts.CUSTOMER_HELP}")


@router.message()
async def converse(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> None:
    """Any other message: into the open conversation, a new VIP conversation, or self-service."""
    content = content_of(message)
    human_first = not customer.is_guest and policy.is_human_first(customer.tier)
    async with session.begin():
        conv = await conversations.open_for_customer(session, customer.id)
        created = False
        if conv is None and human_first:
            conv, created = await conversations.open_conversation(
                session, customer, policy, conversations.ORIGIN_VIP, clock()
            )
        if conv is not None:
            await conversations.add_message(
                session,
                conv,
                sender="customer",
                content_type=content.content_type,
                text=content.text,
                file_id=content.file_id,
                chat_id=message.chat.id,
                message_id=message.message_id,
                now=clock(),
            )
    if conv is None:
        await _menu(message, policy)
    elif created:
        online = await desk.page(session, conv, customer, content.preview())
        await message.answer(texts.vip_queued(online))
    elif conv.status == ASSIGNED:
        await desk.relay_to_agent(session, conv, customer, message)
