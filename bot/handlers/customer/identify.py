"""Customers telling us who they are: a shared phone number, an invitation link (/start
<token>), or a typed customer code where the policy allows codes.

Until then a customer is a guest row. Linking moves the Telegram user onto the imported
customer record; a relink (the record had another Telegram user) is reported to the previous
user and, for human-first tiers, to the account manager.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message, ReplyKeyboardRemove
from sqlalchemy import select

from bot import keyboards, texts
from bot.filters import InAChat
from bot.handlers.customer.context import CustomerContext
from bot.handlers.customer.selfservice import send_menu
from bot.i18n import for_agents, for_customer
from routing.customers import identity as customers
from routing.customers import invitations
from routing.customers.identity import LinkResult, LinkStatus
from routing.policy.root import Policy
from routing.queue import agents
from routing.store.models import Agent, Customer

router = Router(name="identify")


class Identify(StatesGroup):
    waiting = State()


async def _welcome(message: Message, ctx: CustomerContext, *, back: bool) -> None:
    customer = ctx.customer
    vip = ctx.policy.is_human_first(customer.tier)
    text = (
        texts.customer.welcome_back(customer, vip)
        if back
        else texts.customer.identified(customer, vip)
    )
    await message.answer(text, reply_markup=ReplyKeyboardRemove())
    if not vip:
        await send_menu(ctx)


async def _tell_relink(ctx: CustomerContext, result: LinkResult, *, by_invitation: bool) -> None:
    """A customer moved to a new Telegram user: tell the previous one and, for human-first
    tiers, their account manager (best-effort, after the commit)."""
    customer, previous = result.customer, result.previous_telegram_id
    if customer is None or previous is None:
        return
    with for_customer(customer):
        away = texts.customer.relinked_away()
    await ctx.desk.send_quietly(previous, away)
    if not ctx.policy.is_human_first(customer.tier) or not customer.account_manager:
        return
    async with ctx.session.begin():
        staff = list(
            (await ctx.session.execute(select(Agent).where(Agent.active.is_(True)))).scalars()
        )
    manager = agents.find_manager(staff, customer.account_manager)
    if manager is None:
        return
    with for_agents():
        note = texts.agent.relink_note(customer, by_invitation)
    await ctx.desk.send_quietly(manager.telegram_id, note)


def _linked(result: LinkResult) -> Customer | None:
    return result.customer if result.status is LinkStatus.LINKED else None


async def _identified(
    message: Message, ctx: CustomerContext, result: LinkResult, *, by_invitation: bool
) -> bool:
    """Welcome a freshly linked customer and report a relink; False if not linked."""
    linked = _linked(result)
    if linked is None:
        return False
    await ctx.state.clear()
    await _welcome(message, ctx.about(linked), back=False)
    await _tell_relink(ctx, result, by_invitation=by_invitation)
    return True


@router.message(CommandStart())
async def start(message: Message, command: CommandObject, ctx: CustomerContext) -> None:
    assert message.from_user is not None
    token = (command.args or "").strip()
    if invitations.is_token(token):
        # /start <token>: an invitation deep link (t.me/<bot>?start=<token>).
        async with ctx.session.begin():
            result = await invitations.redeem(
                ctx.session, token, message.from_user.id, now=ctx.clock()
            )
        if not await _identified(message, ctx, result, by_invitation=True):
            await message.answer(
                texts.customer.invite_failed(), reply_markup=keyboards.share_phone()
            )
        return
    if not ctx.customer.is_guest:
        await ctx.state.clear()
        await _welcome(message, ctx, back=True)
        return
    if ctx.policy.identification.allow_code:
        await ctx.state.set_state(Identify.waiting)
        await message.answer(texts.customer.ask_identify(), reply_markup=keyboards.share_phone())
        return
    await ctx.state.clear()
    await message.answer(
        texts.customer.ask_identify_no_code(), reply_markup=keyboards.share_phone()
    )


# ~InAChat(): in an open chat a contact card is relayed to the person (bot/filters.py).
@router.message(F.contact, ~InAChat())
async def shared_contact(message: Message, ctx: CustomerContext) -> None:
    contact = message.contact
    assert contact is not None and message.from_user is not None
    if contact.user_id != message.from_user.id:
        # A forwarded or typed-in contact proves nothing about who is writing.
        await message.answer(texts.customer.foreign_contact(), reply_markup=keyboards.share_phone())
        return
    async with ctx.session.begin():
        result = await customers.link_by_phone(
            ctx.session,
            message.from_user.id,
            contact.phone_number,
            policy=ctx.policy,
            now=ctx.clock(),
        )
    if await _identified(message, ctx, result, by_invitation=False):
        return
    not_found = (
        texts.customer.phone_not_found()
        if ctx.policy.identification.allow_code
        else texts.customer.phone_not_found_no_code()
    )
    await message.answer(not_found, reply_markup=ReplyKeyboardRemove())
    await send_menu(ctx)


def _codes_allowed(message: Message, policy: Policy) -> bool:
    """Typed customer codes are an opt-in (``[identification] allow_code``)."""
    return policy.identification.allow_code


@router.message(Identify.waiting, F.text, ~F.text.startswith("/"), _codes_allowed, ~InAChat())
async def customer_code(message: Message, ctx: CustomerContext) -> None:
    assert message.from_user is not None and message.text is not None
    user = message.from_user.id
    result = LinkResult(LinkStatus.NOT_FOUND)
    async with ctx.session.begin():
        # Over a limit, nothing is looked up; every failure gets the same reply.
        if await customers.code_attempt_allowed(
            ctx.session, user, policy=ctx.policy, now=ctx.clock()
        ):
            result = await customers.link_by_code(ctx.session, user, message.text, now=ctx.clock())
    linked = _linked(result)
    if linked is not None:
        await ctx.state.clear()
        await _welcome(message, ctx.about(linked), back=False)
        return
    await message.answer(texts.customer.code_failed(), reply_markup=keyboards.share_phone())
