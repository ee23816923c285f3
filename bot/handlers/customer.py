"""Customers: identification, the self-service tree and search, queueing for a person, relay."""

from __future__ import annotations

from datetime import timedelta

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.adapters.content import content_of
from bot.desk import Desk
from bot.filters import IsCustomer
from bot.i18n import for_agents, for_customer
from routing.clock import Clock
from routing.customers import identity as customers
from routing.customers import invitations, orders
from routing.customers.identity import LinkResult, LinkStatus
from routing.delivery import enqueue
from routing.policy.root import Policy
from routing.policy.selfservice import SelfServicePolicy
from routing.policy.selfservice_parts import HUMAN, FaqEntry
from routing.queue import agents, claims, conversations
from routing.selfservice import deflection
from routing.selfservice.knowledge import KnowledgeIndex, Match, decide, tokens
from routing.store.models import ASSIGNED, OPEN_STATUSES, Agent, Conversation, Customer

router = Router(name="customer")
router.message.filter(IsCustomer())
router.callback_query.filter(IsCustomer())


class Identify(StatesGroup):
    waiting = State()


class SelfService(StatesGroup):
    order_id = State()


def _timeout(policy: Policy) -> timedelta:
    return timedelta(minutes=policy.selfservice.session_minutes)


def _chat_id(query: CallbackQuery) -> int:
    assert query.message is not None
    return query.message.chat.id


# --- the menu tree ----------------------------------------------------------------------
def _label(ss: SelfServicePolicy, node_id: str, locale: str) -> str:
    if node_id in ss.menus:
        return ss.text(ss.menus[node_id].title, locale)
    if node_id in ss.actions:
        return ss.text(ss.actions[node_id].title, locale)
    entry = ss.entry(node_id)
    return ss.text(entry.question, locale) if entry else node_id


def _nav(ss: SelfServicePolicy, node_id: str, tier: str) -> list[InlineKeyboardButton]:
    """Back (to the node's menu) and Home, except at the tier's own top menu."""
    home = ss.root_for(tier)
    if node_id == home:
        return []
    parent = ss.parents().get(node_id, home)
    nav = []
    if parent != home and ss.visible(parent, tier):
        nav.append(keyboards.node_button(texts.customer.back_button(), parent))
    nav.append(keyboards.node_button(texts.customer.home_button(), home))
    return nav


def _menu_view(
    ss: SelfServicePolicy, menu_id: str, customer: Customer, locale: str, *, handoff: bool = False
) -> tuple[str, InlineKeyboardMarkup]:
    tier = customer.tier
    menu = ss.menus[menu_id]
    buttons = []
    for item in menu.items:
        if not ss.visible(item, tier):
            continue
        if item == HUMAN:
            # "after_selfservice" tiers get the hand-off once an answer did not help.
            if ss.access(tier).human == "always" or handoff:
                buttons.append(keyboards.human_button())
            continue
        buttons.append(keyboards.node_button(_label(ss, item, locale), item))
    return ss.text(menu.text, locale), keyboards.rows(buttons, _nav(ss, menu_id, tier))


async def _send_menu(
    bot: Bot,
    chat_id: int,
    policy: Policy,
    customer: Customer,
    locale: str,
    menu_id: str | None,
    *,
    intro: str | None = None,
    handoff: bool = False,
) -> None:
    ss = policy.selfservice
    node = menu_id if menu_id in ss.menus else ss.root_for(customer.tier)
    text, markup = _menu_view(ss, node, customer, locale, handoff=handoff)
    await bot.send_message(chat_id, f"{intro}\n\n{text}" if intro else text, reply_markup=markup)


async def _menu(message: Message, policy: Policy, customer: Customer, locale: str) -> None:
    assert message.bot is not None
    await _send_menu(message.bot, message.chat.id, policy, customer, locale, None)


async def _step(
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    *,
    answered: bool = False,
    searched: bool = False,
) -> None:
    async with session.begin():
        await deflection.step(
            session,
            customer,
            clock(),
            _timeout(policy),
            language=locale,
            answered=answered,
            searched=searched,
        )


async def _send_answer(
    bot: Bot, chat_id: int, ss: SelfServicePolicy, entry: FaqEntry, customer: Customer, locale: str
) -> None:
    text = texts.customer.answer(ss.text(entry.question, locale), ss.text(entry.answer, locale))
    markup = keyboards.answer(entry.id, entry.link, _nav(ss, entry.id, customer.tier))
    if entry.image:
        await bot.send_photo(chat_id, entry.image, caption=text[:1024], reply_markup=markup)
    else:
        await bot.send_message(chat_id, text, reply_markup=markup)


def _offer(
    ss: SelfServicePolicy, matches: list[Match], customer: Customer, locale: str, *, human: bool
) -> InlineKeyboardMarkup:
    buttons = [keyboards.node_button(_label(ss, m.entry_id, locale), m.entry_id) for m in matches]
    if human and ss.access(customer.tier).human != "never":
        buttons.append(keyboards.human_button())
    return keyboards.rows(
        buttons, [keyboards.node_button(texts.customer.home_button(), ss.root_for(customer.tier))]
    )


async def _open_node(
    bot: Bot,
    chat_id: int,
    node_id: str,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> bool:
    """Show a node; False when it does not exist (any more) or the tier may not see it."""
    ss = policy.selfservice
    if node_id == HUMAN or not ss.visible(node_id, customer.tier):
        return False
    if node_id in ss.menus:
        await _step(session, customer, policy, clock, locale)
        await _send_menu(bot, chat_id, policy, customer, locale, node_id)
        return True
    if node_id in ss.actions:
        await _step(session, customer, policy, clock, locale, answered=True)
        await _action(
            bot,
            chat_id,
            ss.actions[node_id].action,
            node_id,
            session,
            customer,
            policy,
            locale,
            state,
        )
        return True
    entry = ss.entry(node_id)
    if entry is None:
        return False
    await _step(session, customer, policy, clock, locale, answered=True)
    await _send_answer(bot, chat_id, ss, entry, customer, locale)
    return True


# --- actions on the customer's own data -------------------------------------------------
async def _action(
    bot: Bot,
    chat_id: int,
    action: str,
    node_id: str,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    locale: str,
    state: FSMContext,
) -> None:
    ss = policy.selfservice
    nav = keyboards.rows([], _nav(ss, node_id, customer.tier))
    if action == "my_tier":
        if customer.is_guest:
            text = texts.customer.guest_tier(customer.tier)
        else:
            text = texts.customer.my_tier(
                customer.tier, ss.text(ss.access(customer.tier).benefits, locale)
            )
        await bot.send_message(chat_id, text, reply_markup=nav)
        return
    if customer.is_guest:
        await bot.send_message(chat_id, texts.customer.guest_no_orders(), reply_markup=nav)
        return
    if action == "order_status":
        await state.set_state(SelfService.order_id)
        await bot.send_message(chat_id, texts.customer.ask_order_id(), reply_markup=nav)
        return
    async with session.begin():
        recent = await orders.recent_orders(session, customer, ss.recent_orders)
    if not recent:
        await bot.send_message(chat_id, texts.customer.no_orders(), reply_markup=nav)
        return
    lines = [
        texts.customer.order_line(o.order_id, o.ordered_at, o.amount_cents, o.status)
        for o in recent
    ]
    await bot.send_message(chat_id, texts.customer.my_orders(lines), reply_markup=nav)


def _in_a_chat(message: Message, open_conversation: Conversation | None) -> bool:
    """The customer has a chat with a person open (queued or assigned)."""
    return open_conversation is not None


@router.message(_in_a_chat, ~F.text.startswith("/"))
async def in_a_chat(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    knowledge: KnowledgeIndex,
    locale: str,
    open_conversation: Conversation | None,
    state: FSMContext,
) -> None:
    """Registered before every prompt and the contact handler: while a chat with a person is
    open, whatever the customer sends is for that person. A prompt left open (an order
    number, a customer code) must not answer "I could not find an order ..." to "my parcel
    never arrived", and a contact card is relayed, not taken as identification."""
    await state.clear()
    await converse(
        message, session, customer, policy, desk, clock, knowledge, locale, open_conversation
    )


@router.message(SelfService.order_id, F.text, ~F.text.startswith("/"))
async def order_id_given(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    locale: str,
    state: FSMContext,
) -> None:
    assert message.text is not None
    async with session.begin():
        found = await orders.order_status(session, customer, message.text)
    nav = keyboards.rows([], _nav(policy.selfservice, "order_status", customer.tier))
    if found is None:
        # Another customer's order reads exactly like a non-existent one.
        await message.answer(
            texts.customer.order_not_found(orders.clean_order_id(message.text)), reply_markup=nav
        )
        return
    await state.clear()
    await message.answer(
        texts.customer.order_status(
            found.order_id, found.ordered_at, found.status, found.amount_cents
        ),
        reply_markup=nav,
    )


# --- identification --------------------------------------------------------------------
async def _welcome(
    message: Message, customer: Customer, policy: Policy, locale: str, *, back: bool
) -> None:
    vip = policy.is_human_first(customer.tier)
    text = (
        texts.customer.welcome_back(customer, vip)
        if back
        else texts.customer.identified(customer, vip)
    )
    await message.answer(text, reply_markup=ReplyKeyboardRemove())
    if not vip:
        await _menu(message, policy, customer, locale)


async def _tell_relink(
    session: AsyncSession, desk: Desk, policy: Policy, result: LinkResult, *, by_invitation: bool
) -> None:
    """A customer moved to a new Telegram user: tell the previous one and, for human-first
    tiers, their account manager (best-effort, after the commit)."""
    customer, previous = result.customer, result.previous_telegram_id
    if customer is None or previous is None:
        return
    with for_customer(customer):
        away = texts.customer.relinked_away()
    await desk.send_quietly(previous, away)
    if not policy.is_human_first(customer.tier) or not customer.account_manager:
        return
    async with session.begin():
        staff = list((await session.execute(select(Agent).where(Agent.active.is_(True)))).scalars())
    manager = agents.find_manager(staff, customer.account_manager)
    if manager is None:
        return
    with for_agents():
        note = texts.agent.relink_note(customer, by_invitation)
    await desk.send_quietly(manager.telegram_id, note)


async def _identified(
    message: Message,
    result: LinkResult,
    session: AsyncSession,
    policy: Policy,
    locale: str,
    state: FSMContext,
    desk: Desk,
    *,
    by_invitation: bool,
) -> bool:
    """Welcome a freshly linked customer and report a relink; False if not linked."""
    if result.status is not LinkStatus.LINKED or result.customer is None:
        return False
    await state.clear()
    await _welcome(message, result.customer, policy, locale, back=False)
    await _tell_relink(session, desk, policy, result, by_invitation=by_invitation)
    return True


@router.message(CommandStart())
async def start(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
    desk: Desk,
) -> None:
    assert message.from_user is not None
    token = (command.args or "").strip()
    if invitations.is_token(token):
        # /start <token>: an invitation deep link (t.me/<bot>?start=<token>).
        async with session.begin():
            result = await invitations.redeem(session, token, message.from_user.id, now=clock())
        if not await _identified(
            message, result, session, policy, locale, state, desk, by_invitation=True
        ):
            await message.answer(
                texts.customer.invite_failed(), reply_markup=keyboards.share_phone()
            )
        return
    if not customer.is_guest:
        await state.clear()
        await _welcome(message, customer, policy, locale, back=True)
        return
    if policy.identification.allow_code:
        await state.set_state(Identify.waiting)
        await message.answer(texts.customer.ask_identify(), reply_markup=keyboards.share_phone())
        return
    await state.clear()
    await message.answer(
        texts.customer.ask_identify_no_code(), reply_markup=keyboards.share_phone()
    )


@router.message(F.contact)
async def shared_contact(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
    desk: Desk,
) -> None:
    contact = message.contact
    assert contact is not None and message.from_user is not None
    if contact.user_id != message.from_user.id:
        # A forwarded or typed-in contact proves nothing about who is writing.
        await message.answer(texts.customer.foreign_contact(), reply_markup=keyboards.share_phone())
        return
    async with session.begin():
        result = await customers.link_by_phone(
            session, message.from_user.id, contact.phone_number, policy=policy, now=clock()
        )
    if await _identified(
        message, result, session, policy, locale, state, desk, by_invitation=False
    ):
        return
    not_found = (
        texts.customer.phone_not_found()
        if policy.identification.allow_code
        else texts.customer.phone_not_found_no_code()
    )
    await message.answer(not_found, reply_markup=ReplyKeyboardRemove())
    await _menu(message, policy, customer, locale)


def _codes_allowed(message: Message, policy: Policy) -> bool:
    """Typed customer codes are an opt-in (``[identification] allow_code``)."""
    return policy.identification.allow_code


@router.message(Identify.waiting, F.text, ~F.text.startswith("/"), _codes_allowed)
async def customer_code(
    message: Message,
    session: AsyncSession,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    assert message.from_user is not None and message.text is not None
    user = message.from_user.id
    result = LinkResult(LinkStatus.NOT_FOUND)
    async with session.begin():
        # Over a limit, nothing is looked up; every failure gets the same reply.
        if await customers.code_attempt_allowed(session, user, policy=policy, now=clock()):
            result = await customers.link_by_code(session, user, message.text, now=clock())
    if result.status is LinkStatus.LINKED and result.customer is not None:
        await state.clear()
        await _welcome(message, result.customer, policy, locale, back=False)
        return
    await message.answer(texts.customer.code_failed(), reply_markup=keyboards.share_phone())


@router.message(Command("menu"))
async def menu(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    await state.clear()
    await _step(session, customer, policy, clock, locale)
    await _menu(message, policy, customer, locale)


@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer(texts.customer.help_text())


# --- a person --------------------------------------------------------------------------
async def _request_human(
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
) -> tuple[str, bool]:
    """Queue the customer for a person, if the tier's policy allows it now.

    Returns what to tell them, and whether the request was refused (then the menu follows).
    """
    ss = policy.selfservice
    access = ss.access(customer.tier)
    vip = not customer.is_guest and policy.is_human_first(customer.tier)
    now = clock()
    if not vip and access.human == "never":
        return texts.customer.human_never(), True
    async with session.begin():
        if not vip and access.human == "after_selfservice":
            tried = await deflection.tried_selfservice(session, customer, now, _timeout(policy))
            if not tried:
                return texts.customer.human_after_selfservice(), True
        await deflection.end(session, customer, deflection.HANDOFF, now, _timeout(policy))
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
        return _out_of_hours(policy, customer), False
    online = await desk.page(session, conv, customer, None)
    return texts.customer.queued(pos, online), False


def _out_of_hours(policy: Policy, customer: Customer) -> str:
    access = policy.selfservice.access(customer.tier)
    return texts.customer.out_of_hours(
        texts.customer.opening_hours(list(access.hours), access.timezone)
    )


@router.message(Command("human"))
async def human(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    await state.clear()
    reply, refused = await _request_human(session, customer, policy, desk, clock)
    await message.answer(reply)
    if refused:
        await _menu(message, policy, customer, locale)


@router.callback_query(keyboards.HumanCb.filter())
async def human_button(
    query: CallbackQuery,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    await query.answer()
    if query.message is None or query.bot is None:
        return
    # A hand-off ends whatever self-service prompt was open (an order number, say).
    await state.clear()
    reply, refused = await _request_human(session, customer, policy, desk, clock)
    await query.bot.send_message(_chat_id(query), reply)
    if refused:
        await _send_menu(query.bot, _chat_id(query), policy, customer, locale, None)


# --- buttons ---------------------------------------------------------------------------
@router.callback_query(keyboards.NodeCb.filter())
async def node_button(
    query: CallbackQuery,
    callback_data: keyboards.NodeCb,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    await state.clear()
    await _show_node(query, callback_data.id, session, customer, policy, clock, locale, state)


@router.callback_query(keyboards.FaqCb.filter())
async def faq(
    query: CallbackQuery,
    callback_data: keyboards.FaqCb,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    """FAQ buttons sent before the menu tree existed."""
    await _show_node(query, callback_data.id, session, customer, policy, clock, locale, state)


async def _show_node(
    query: CallbackQuery,
    node_id: str,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    locale: str,
    state: FSMContext,
) -> None:
    if query.message is None or query.bot is None:
        await query.answer()
        return
    shown = await _open_node(
        query.bot, _chat_id(query), node_id, session, customer, policy, clock, locale, state
    )
    # A button from before a policy change, or a node this tier may not open.
    await query.answer(None if shown else texts.customer.topic_gone(), show_alert=not shown)


@router.callback_query(keyboards.MenuCb.filter())
async def menu_button(
    query: CallbackQuery, customer: Customer, policy: Policy, locale: str
) -> None:
    await query.answer()
    if query.message is not None and query.bot is not None:
        await _send_menu(query.bot, _chat_id(query), policy, customer, locale, None)


@router.callback_query(keyboards.HelpedCb.filter())
async def helped(
    query: CallbackQuery,
    callback_data: keyboards.HelpedCb,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    knowledge: KnowledgeIndex,
    locale: str,
) -> None:
    await query.answer()
    if query.message is None or query.bot is None:
        return
    ss = policy.selfservice
    if callback_data.yes:
        async with session.begin():
            await deflection.end(session, customer, deflection.RESOLVED, clock(), _timeout(policy))
        await query.bot.send_message(_chat_id(query), texts.customer.glad_to_help())
        return
    await _step(session, customer, policy, clock, locale, searched=True)
    entry = ss.entry(callback_data.id)
    query_text = " ".join(ss.text(entry.question, lang) for lang in ss.languages) if entry else ""
    matches = knowledge.search(query_text, visible=lambda e: ss.visible(e, customer.tier))
    others = decide(matches, ss.search, exclude=callback_data.id).suggestions
    text = texts.customer.not_helped() if others else texts.customer.not_helped_no_more()
    await query.bot.send_message(
        _chat_id(query), text, reply_markup=_offer(ss, others, customer, locale, human=True)
    )


@router.callback_query()
async def stale_button(query: CallbackQuery) -> None:
    await query.answer(texts.customer.button_gone())


@router.message(F.text.startswith("/"))
async def unknown_command(message: Message) -> None:
    await message.answer(f"{texts.customer.unknown_command()}\n\n{texts.customer.help_text()}")


# --- free text, and everything else ----------------------------------------------------
async def _search(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    knowledge: KnowledgeIndex,
    locale: str,
) -> None:
    assert message.text is not None and message.bot is not None
    ss = policy.selfservice
    if not tokens(message.text):
        # "hi", "hello?": nothing to search for; the menu is the answer.
        await _step(session, customer, policy, clock, locale)
        await _menu(message, policy, customer, locale)
        return
    matches = knowledge.search(message.text, visible=lambda e: ss.visible(e, customer.tier))
    result = decide(matches, ss.search)
    if result.best is not None:
        entry = ss.entry(result.best.entry_id)
        assert entry is not None
        await _step(session, customer, policy, clock, locale, answered=True, searched=True)
        await _send_answer(message.bot, message.chat.id, ss, entry, customer, locale)
        return
    await _step(session, customer, policy, clock, locale, searched=True)
    if not result.suggestions:
        await _send_menu(
            message.bot, message.chat.id, policy, customer, locale, None,
            intro=texts.customer.no_match(), handoff=True,
        )  # fmt: skip
        return
    await message.answer(
        texts.customer.suggestions(),
        reply_markup=_offer(ss, result.suggestions, customer, locale, human=True),
    )


async def _self_service(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    knowledge: KnowledgeIndex,
    locale: str,
) -> None:
    if message.text:
        await _search(message, session, customer, policy, clock, knowledge, locale)
    else:
        await _menu(message, policy, customer, locale)


@router.message()
async def converse(
    message: Message,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    knowledge: KnowledgeIndex,
    locale: str,
    open_conversation: Conversation | None,
) -> None:
    """Any other message: into the open conversation, a new VIP conversation, or self-service."""
    content = content_of(message)
    human_first = not customer.is_guest and policy.is_human_first(customer.tier)
    if open_conversation is None and not human_first:
        # Self-service, most messages: the middleware's lookup already found no open chat,
        # so there is nothing to store here and no transaction to open.
        await _self_service(message, session, customer, policy, clock, knowledge, locale)
        return
    duplicate = False
    async with session.begin():
        # Read fresh: the identity map may hold this chat as it was before a claim committed.
        conv = (
            await session.execute(
                select(Conversation)
                .where(
                    Conversation.customer_id == customer.id,
                    Conversation.status.in_(OPEN_STATUSES),
                )
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        created = False
        if conv is None and human_first:
            conv, created = await conversations.open_conversation(
                session, customer, policy, conversations.ORIGIN_VIP, clock()
            )
        if conv is not None:
            # False: this Telegram message is in the transcript already (a redelivered
            # update); it was queued for the agent with it.
            duplicate = not await conversations.add_message_once(
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
            if not duplicate:
                # For whoever holds the chat when it is sent: a queued chat's messages are
                # the hand-over's backlog, whatever the order of the claim and this commit.
                await enqueue.to_agent(
                    session,
                    conv.id,
                    from_chat_id=message.chat.id,
                    message_id=message.message_id,
                    media_group_id=message.media_group_id,
                    now=desk.now(),
                )
    if conv is None:
        await _self_service(message, session, customer, policy, clock, knowledge, locale)
    elif duplicate:
        return
    elif created:
        if not policy.selfservice.access(customer.tier).is_open(clock()):
            await message.answer(_out_of_hours(policy, customer))
            return
        online = await desk.page(session, conv, customer, content.preview())
        await message.answer(texts.customer.vip_queued(online))
    else:
        await desk.kick(conv.id)
