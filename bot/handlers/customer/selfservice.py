"""Customers' self-service: the menu tree, FAQ answers and search, actions on their own data.

Self-service steps are recorded (``routing.selfservice.deflection``) so that /stats can say
how many sessions ended without a person, and so that "after_selfservice" tiers get the
hand-off only once they tried.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import keyboards, texts
from bot.filters import InAChat
from bot.handlers.customer import complaint
from bot.handlers.customer.context import CustomerContext
from bot.middlewares import alert
from routing.customers import orders
from routing.policy.selfservice import SelfServicePolicy
from routing.policy.selfservice_parts import HUMAN, FaqEntry
from routing.selfservice import deflection
from routing.selfservice.knowledge import Match, decide, tokens
from routing.store import direct, inbox, lane

router = Router(name="selfservice")
# Answered before the handler runs: the press needs no text, the work may take a moment.
ANSWER_FIRST = {"callback_answer": {"pre": True}}


class SelfService(StatesGroup):
    order_id = State()


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


# The menus, suggestions and answers' keyboards, per policy and language (keyboards.Shared).
_SHARED = keyboards.Shared()


def _menu_view(
    ctx: CustomerContext, menu_id: str, *, handoff: bool = False
) -> tuple[str, InlineKeyboardMarkup]:
    tier, locale = ctx.customer.tier, ctx.locale
    return _SHARED.get(
        ctx.policy,
        ("menu", locale, tier, menu_id, handoff),
        lambda: _build_menu_view(ctx.selfservice, tier, locale, menu_id, handoff),
    )


def _build_menu_view(
    ss: SelfServicePolicy, tier: str, locale: str, menu_id: str, handoff: bool
) -> tuple[str, InlineKeyboardMarkup]:
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


async def send_menu(
    ctx: CustomerContext,
    menu_id: str | None = None,
    *,
    intro: str | None = None,
    handoff: bool = False,
) -> None:
    """The menu ``menu_id`` (by default the customer's tier's top menu)."""
    ss = ctx.selfservice
    node = menu_id if menu_id in ss.menus else ss.root_for(ctx.customer.tier)
    text, markup = _menu_view(ctx, node, handoff=handoff)
    await ctx.send(f"{intro}\n\n{text}" if intro else text, markup)


async def step(
    ctx: CustomerContext,
    *,
    answered: bool = False,
    searched: bool = False,
    node: str | None = None,
    question: str | None = None,
    last_write: bool = False,
) -> None:
    """Record a self-service step (a menu shown, an answer given, a search made); the node
    shown and the text searched for are what an agent is shown at a hand-off.

    ``last_write``: the handler only sends after it, and nothing in this update touched the
    session before (it is the update's only step). The session is then the one the
    update's lookup read, not read again (only this chat's updates change it, one at a
    time), and the step's writes go with the update's done mark (routing/store/inbox.py
    ``leave_to_mark``), not a transaction of their own: on SQLite in the marks' group
    commit (its own transaction was a sixth of a self-service answer's CPU), on PostgreSQL
    in the marks' one statement, the steps of the updates that finish together as one
    part of it (its own statement was a round trip in most updates; issue 19)."""
    # Direct statements, no session (routing/store/direct.py): most customer messages
    # record a step.
    engine = ctx.session.bind
    assert isinstance(engine, AsyncEngine)
    found = ctx.lookup
    live = (
        found.selfservice
        if last_write and found is not None and found.customer is not None
        and found.customer.id == ctx.customer.id
        else deflection.UNREAD
    )  # fmt: skip
    with_mark = last_write and inbox.collecting()
    if with_mark or live is not deflection.UNREAD:
        writes = await deflection.step_writes(
            engine, ctx.customer, ctx.clock(), ctx.idle_timeout, language=ctx.locale,
            answered=answered, searched=searched, node=node, question=question, live=live,
        )  # fmt: skip
        # PostgreSQL: one write (a step, or a first step's start) joins the marks' one
        # statement; a quiet session's end and the new start are a transaction of their own.
        if engine.dialect.name != "sqlite" and len(writes) > 1:
            with_mark = False
        if not (with_mark and inbox.leave_to_mark(writes)):
            await lane.write_all(engine, writes)
        return
    async with direct.transaction(engine) as tx:
        await deflection.step(
            tx, ctx.customer, ctx.clock(), ctx.idle_timeout, language=ctx.locale,
            answered=answered, searched=searched, node=node, question=question,
        )  # fmt: skip


async def _send_answer(ctx: CustomerContext, entry: FaqEntry) -> None:
    ss, locale = ctx.selfservice, ctx.locale
    text = texts.customer.answer(ss.text(entry.question, locale), ss.text(entry.answer, locale))
    tier = ctx.customer.tier
    markup = _SHARED.get(
        ctx.policy,
        ("answer", tier, entry.id),
        lambda: keyboards.answer(entry.id, entry.link, _nav(ss, entry.id, tier)),
    )
    if entry.image:
        await ctx.bot.send_photo(ctx.chat_id, entry.image, caption=text[:1024], reply_markup=markup)
    else:
        await ctx.send(text, markup)


def _offer(
    ctx: CustomerContext, matches: list[Match], *, complain: bool = False
) -> InlineKeyboardMarkup:
    """Suggested entries, the hand-off (unless the tier never gets one), with ``complain``
    "File a complaint", and Home."""
    tier, locale = ctx.customer.tier, ctx.locale
    ids = tuple(m.entry_id for m in matches)
    return _SHARED.get(
        ctx.policy,
        ("offer", locale, tier, ids, complain),
        lambda: _build_offer(ctx.selfservice, tier, locale, ids, complain),
    )


def _build_offer(
    ss: SelfServicePolicy, tier: str, locale: str, ids: tuple[str, ...], complain: bool
) -> InlineKeyboardMarkup:
    buttons = [keyboards.node_button(_label(ss, i, locale), i) for i in ids]
    if ss.access(tier).human != "never":
        buttons.append(keyboards.human_button())
    if complain:
        buttons.append(keyboards.complaint_button())
    return keyboards.rows(
        buttons, [keyboards.node_button(texts.customer.home_button(), ss.root_for(tier))]
    )


async def _open_node(ctx: CustomerContext, node_id: str) -> bool:
    """Show a node; False when it does not exist (any more) or the tier may not see it."""
    ss = ctx.selfservice
    if node_id == HUMAN or not ss.visible(node_id, ctx.customer.tier):
        return False
    if node_id in ss.menus:
        await step(ctx, node=node_id, last_write=True)  # then only sent
        await send_menu(ctx, node_id)
        return True
    if node_id in ss.actions:
        await step(ctx, answered=True, node=node_id)
        await _action(ctx, ss.actions[node_id].action, node_id)
        return True
    entry = ss.entry(node_id)
    if entry is None:
        return False
    await step(ctx, answered=True, node=node_id, last_write=True)  # then only sent
    await _send_answer(ctx, entry)
    return True


# --- actions on the customer's own data -------------------------------------------------
async def _action(ctx: CustomerContext, action: str, node_id: str) -> None:
    ss, customer = ctx.selfservice, ctx.customer
    if action == "complaint":  # guests may complain too
        await complaint.start(ctx)
        return
    nav = keyboards.rows([], _nav(ss, node_id, customer.tier))
    if action == "my_tier":
        if customer.is_guest:
            text = texts.customer.guest_tier(customer.tier)
        else:
            benefits = ss.text(ss.access(customer.tier).benefits, ctx.locale)
            text = texts.customer.my_tier(customer.tier, benefits)
        await ctx.send(text, nav)
        return
    if customer.is_guest:
        await ctx.send(texts.customer.guest_no_orders(), nav)
        return
    if action == "order_status":
        await ctx.state.set_state(SelfService.order_id)
        await ctx.send(texts.customer.ask_order_id(), nav)
        return
    async with ctx.session.begin():
        recent = await orders.recent_orders(ctx.session, customer, ss.recent_orders)
    if not recent:
        await ctx.send(texts.customer.no_orders(), nav)
        return
    lines = [
        texts.customer.order_line(o.order_id, o.ordered_at, o.amount_cents, o.status)
        for o in recent
    ]
    await ctx.send(texts.customer.my_orders(lines), nav)


# ~InAChat(): while a chat with a person is open, "my parcel never arrived" is for them, not
# an order number (bot/filters.py).
@router.message(SelfService.order_id, F.text, ~F.text.startswith("/"), ~InAChat())
async def order_id_given(message: Message, ctx: CustomerContext) -> None:
    assert message.text is not None
    async with ctx.session.begin():
        found = await orders.order_status(ctx.session, ctx.customer, message.text)
    nav = keyboards.rows([], _nav(ctx.selfservice, "order_status", ctx.customer.tier))
    if found is None:
        # Another customer's order reads exactly like a non-existent one.
        await message.answer(
            texts.customer.order_not_found(orders.clean_order_id(message.text)),
            reply_markup=nav,
        )
        return
    await ctx.state.clear()
    await message.answer(
        texts.customer.order_status(
            found.order_id, found.ordered_at, found.status, found.amount_cents
        ),
        reply_markup=nav,
    )


@router.message(Command("menu"))
async def menu(message: Message, ctx: CustomerContext) -> None:
    await ctx.state.clear()
    await step(ctx, node=ctx.selfservice.root_for(ctx.customer.tier))
    await send_menu(ctx)


@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer(texts.customer.help_text())


# --- buttons ---------------------------------------------------------------------------
@router.callback_query(keyboards.NodeCb.filter())
async def node_button(
    query: CallbackQuery,
    callback_data: keyboards.NodeCb,
    ctx: CustomerContext,
    callback_answer: CallbackAnswer,
) -> None:
    await ctx.state.clear()
    await _show_node(query, callback_data.id, ctx, callback_answer)


@router.callback_query(keyboards.FaqCb.filter())
async def faq(
    query: CallbackQuery,
    callback_data: keyboards.FaqCb,
    ctx: CustomerContext,
    callback_answer: CallbackAnswer,
) -> None:
    """FAQ buttons sent before the menu tree existed."""
    await _show_node(query, callback_data.id, ctx, callback_answer)


async def _show_node(
    query: CallbackQuery, node_id: str, ctx: CustomerContext, callback_answer: CallbackAnswer
) -> None:
    if query.message is None:
        return
    if not await _open_node(ctx, node_id):
        # A button from before a policy change, or a node this tier may not open.
        alert(callback_answer, texts.customer.topic_gone())


@router.callback_query(keyboards.MenuCb.filter(), flags=ANSWER_FIRST)
async def menu_button(query: CallbackQuery, ctx: CustomerContext) -> None:
    if query.message is not None:
        await send_menu(ctx)


@router.callback_query(keyboards.HelpedCb.filter(), flags=ANSWER_FIRST)
async def helped(
    query: CallbackQuery, callback_data: keyboards.HelpedCb, ctx: CustomerContext
) -> None:
    if query.message is None:
        return
    ss, customer = ctx.selfservice, ctx.customer
    if callback_data.yes:
        async with ctx.session.begin():
            await deflection.end(
                ctx.session, customer, deflection.RESOLVED, ctx.clock(), ctx.idle_timeout
            )
        await ctx.send(texts.customer.glad_to_help())
        return
    await step(ctx, searched=True)
    entry = ss.entry(callback_data.id)
    query_text = " ".join(ss.text(entry.question, lang) for lang in ss.languages) if entry else ""
    matches = ctx.knowledge.search(query_text, visible=lambda e: ss.visible(e, customer.tier))
    others = decide(matches, ss.search, exclude=callback_data.id).suggestions
    text = texts.customer.not_helped() if others else texts.customer.not_helped_no_more()
    # "This did not help" may become a complaint ([complaints] selfservice_not_helped).
    cp = ctx.policy.complaints
    await ctx.send(text, _offer(ctx, others, complain=cp.enabled and cp.selfservice_not_helped))


# --- free text ---------------------------------------------------------------------------
async def _search(message: Message, ctx: CustomerContext) -> None:
    assert message.text is not None
    ss, customer = ctx.selfservice, ctx.customer
    # Each branch records its step and then only sends: last_write.
    if not tokens(message.text):
        # "hi", "hello?": nothing to search for; the menu is the answer.
        await step(ctx, last_write=True)
        await send_menu(ctx)
        return
    matches = ctx.knowledge.search(message.text, visible=lambda e: ss.visible(e, customer.tier))
    result = decide(matches, ss.search)
    if result.best is not None:
        entry = ss.entry(result.best.entry_id)
        assert entry is not None
        await step(
            ctx,
            answered=True,
            searched=True,
            node=entry.id,
            question=message.text,
            last_write=True,
        )
        await _send_answer(ctx, entry)
        return
    await step(ctx, searched=True, question=message.text, last_write=True)
    if not result.suggestions:
        await send_menu(ctx, intro=texts.customer.no_match(), handoff=True)
        return
    await message.answer(texts.customer.suggestions(), reply_markup=_offer(ctx, result.suggestions))


async def self_service(message: Message, ctx: CustomerContext) -> None:
    """A message that is not for a person: a text is searched, anything else gets the menu."""
    if message.text:
        await _search(message, ctx)
    else:
        await send_menu(ctx)
