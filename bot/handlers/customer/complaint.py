"""Customers and complaints: filing one, and answering its follow-up.

Filing (``/complaint``, the menu action ``complaint``, or the "File a complaint" button the
self-service "did not help" path offers when ``[complaints] selfservice_not_helped`` is on):

1. the category: a button per ``[complaints]`` category, labelled in the customer's language
   (state :attr:`ComplaintFlow.category`);
2. the description: the customer's next message, of any type (text, photo, voice, document,
   ...; state :attr:`ComplaintFlow.description`). In one transaction the case is opened
   (``routing.complaints.cases.open_by_customer``: a chat queued ``priority_boost`` ranks
   above the tier, or the chat already open, moved up), the message itself is stored in that
   chat's transcript and queued for its agent through the delivery queue, and a care task
   is made for a human_first customer (``routing.care.triggers.on_complaint``);
3. the customer gets the case number; then the desk pages about the chat and a human_first
   customer's account manager is told at once (:class:`bot.adapters.case_pager.BotCasePager`).

``/cancel`` (or the Cancel button) leaves the flow; any other command leaves it too. While a
chat with a person is open, the two states keep the customer's messages here: the relay of
an open chat (bot/handlers/customer/human.py) says ``~StateFilter(ComplaintFlow)``.

The follow-up after resolution is a survey-outbox push (:func:`render_follow_up`, sent by the
survey job); its Yes / No and 1-5 buttons are answered here (``surveys.complaint_follow_up``).
A "no" reopens the case: the chat is queued again and paged like a new complaint.
"""

from __future__ import annotations

import json
import logging
from html import escape

from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, StateFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.adapters.case_pager import BotCasePager
from bot.adapters.content import content_of
from bot.adapters.survey_transport import PackedMarkup
from bot.desk import Desk
from bot.handlers.customer.context import CustomerContext
from bot.i18n import for_agents, speaking
from bot.middlewares import alert
from routing.care import triggers
from routing.complaints import cases, chats
from routing.delivery import enqueue
from routing.policy.complaints import CategoryPolicy, local_text
from routing.queue import conversations
from routing.selfservice import deflection
from routing.store.care_models import Complaint
from routing.store.models import ASSIGNED, Conversation
from surveys.complaint_follow_up import FollowUpAnswer, FollowUpPush
from surveys.complaint_follow_up import answer as answer_follow_up
from surveys.complaint_follow_up import rate as rate_follow_up
from surveys.feedback import AnswerStatus

log = logging.getLogger(__name__)

router = Router(name="complaint")
# Answered before the handler runs: the press needs no text (as selfservice.ANSWER_FIRST).
_ANSWER_FIRST = {"callback_answer": {"pre": True}}
_CATEGORY = "complaint_category"  # the FSM data key


class ComplaintFlow(StatesGroup):
    category = State()
    description = State()


def _label(ctx: CustomerContext, category: CategoryPolicy) -> str:
    return local_text(category.label, ctx.locale, ctx.selfservice.default_language)


async def start(ctx: CustomerContext) -> None:
    """Ask for the category: the first step of every way in."""
    if not ctx.policy.complaints.enabled:
        await ctx.state.clear()
        await ctx.send(texts.complaint.off())
        return
    await ctx.state.set_state(ComplaintFlow.category)
    choices = [(c.key, _label(ctx, c)) for c in ctx.policy.complaints.categories]
    await ctx.send(texts.complaint.ask_category(), keyboards.complaint_categories(choices))


@router.message(Command("complaint"))
async def complaint_command(message: Message, ctx: CustomerContext) -> None:
    await ctx.state.clear()
    await start(ctx)


@router.callback_query(keyboards.ComplaintCb.filter(), flags=_ANSWER_FIRST)
async def complaint_button(query: CallbackQuery, ctx: CustomerContext) -> None:
    if query.message is not None:
        await start(ctx)


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> bool:
    """Rewrite the message under the pressed button (dropping its keyboard)."""
    if not isinstance(query.message, Message):
        return False
    try:
        await query.message.edit_text(text, reply_markup=markup)
    except TelegramAPIError as exc:
        log.debug("could not edit complaint message: %s", exc)
        return False
    return True


@router.callback_query(keyboards.ComplaintCategoryCb.filter())
async def category_picked(
    query: CallbackQuery,
    callback_data: keyboards.ComplaintCategoryCb,
    ctx: CustomerContext,
    callback_answer: CallbackAnswer,
) -> None:
    p = ctx.policy.complaints
    category = p.category(callback_data.key) if p.enabled else None
    if category is None:
        # A button from before a policy change (or complaints switched off since).
        alert(
            callback_answer, texts.complaint.category_gone() if p.enabled else texts.complaint.off()
        )
        return
    await ctx.state.set_state(ComplaintFlow.description)
    await ctx.state.update_data({_CATEGORY: category.key})
    ask = texts.complaint.ask_description(_label(ctx, category))
    # The keyboard goes with the edit: a later press of it would start another complaint.
    if not await _edit(query, ask, None):
        await ctx.send(ask)


@router.callback_query(keyboards.ComplaintCancelCb.filter())
async def cancel_button(query: CallbackQuery, ctx: CustomerContext) -> None:
    if await ctx.state.get_state() in (
        ComplaintFlow.category.state,
        ComplaintFlow.description.state,
    ):
        await ctx.state.clear()
    if not await _edit(query, texts.complaint.cancelled(), None):
        await ctx.send(texts.complaint.cancelled())


@router.message(Command("cancel"), StateFilter(ComplaintFlow))
async def cancel(message: Message, ctx: CustomerContext) -> None:
    await ctx.state.clear()
    await message.answer(texts.complaint.cancelled())


# ~F.contact: a contact card shared here identifies the customer (identify.py), or in an open
# chat goes to the person in it; it describes nothing.
@router.message(ComplaintFlow.category, ~F.text.startswith("/"), ~F.contact)
async def category_expected(message: Message) -> None:
    await message.answer(texts.complaint.pick_category_first())


@router.message(ComplaintFlow.description, ~F.text.startswith("/"), ~F.contact)
async def described(message: Message, ctx: CustomerContext) -> None:
    key = (await ctx.state.get_data()).get(_CATEGORY)
    category = ctx.policy.complaints.category(key) if isinstance(key, str) else None
    if category is None:
        await start(ctx)  # the policy changed under the flow: pick again
        return
    await file_complaint(message, ctx, category.key)


class _AlreadyFiled(Exception):
    """The description message is in a transcript already: its update was handled before."""


async def file_complaint(message: Message, ctx: CustomerContext, category: str) -> None:
    """Open the case with ``message`` as its description (see the module's docstring)."""
    session, customer, policy = ctx.session, ctx.customer, ctx.policy
    content = content_of(message)
    now = ctx.clock()
    try:
        async with session.begin():
            opened = await cases.open_by_customer(
                session,
                customer,
                category,
                cases.describe_message(content.content_type, content.text),
                now,
                policy,
            )
            queued = opened.queued
            assert queued is not None  # a customer's complaint always queues (or joins) a chat
            conv = await session.get(Conversation, queued.conversation_id, populate_existing=True)
            assert conv is not None
            # The message itself, once: a redelivered update must not open a second case.
            new = await conversations.add_message_once(
                session,
                conv,
                sender="customer",
                content_type=content.content_type,
                text=content.text,
                file_id=content.file_id,
                chat_id=message.chat.id,
                message_id=message.message_id,
                now=now,
            )
            if not new:
                raise _AlreadyFiled
            held = conv.status == ASSIGNED
            if held:
                # Someone holds the chat: the case reaches them before the message. (A queued
                # chat's case is in the hand-over's briefing, from the transcript.)
                with for_agents():
                    note = texts.complaint.case_note(queued.summary)
                await enqueue.note_to_agent(session, conv.id, note, now=ctx.desk.now())
            await enqueue.to_agent(
                session,
                conv.id,
                from_chat_id=message.chat.id,
                message_id=message.message_id,
                media_group_id=message.media_group_id,
                now=ctx.desk.now(),
            )
            await deflection.end(session, customer, deflection.HANDOFF, now, ctx.idle_timeout)
            await triggers.on_complaint(session, opened.complaint, policy, now)
            case = opened.complaint.id
    except _AlreadyFiled:
        async with session.begin():
            earlier = await session.scalar(
                select(Complaint.id)
                .where(Complaint.customer_id == customer.id)
                .order_by(Complaint.id.desc())
                .limit(1)
            )
        await ctx.state.clear()
        if earlier is not None:
            await message.answer(texts.complaint.filed(earlier))
        return
    except cases.ComplaintsOff:
        await ctx.state.clear()
        await message.answer(texts.complaint.off())
        return
    except cases.UnknownCategory:
        await start(ctx)
        return
    await ctx.state.clear()
    await message.answer(texts.complaint.filed(case))
    await chats.notify_queued(BotCasePager(session, ctx.desk), customer.id, queued)
    if held:  # a queued chat's messages wait for the hand-over, which sends them
        await ctx.desk.kick(queued.conversation_id)


# --- the follow-up ------------------------------------------------------------------------


def render_follow_up(p: FollowUpPush) -> tuple[str, PackedMarkup]:
    """The follow-up push: the policy's question, Yes / No in the customer's language."""
    with speaking(p.language):
        markup = keyboards.follow_up_question(p.survey_id)
    packed = json.dumps(markup.model_dump(exclude_none=True), separators=(",", ":"))
    return escape(p.text, quote=False), PackedMarkup(packed)


_REFUSALS = {
    AnswerStatus.ALREADY_ANSWERED: texts.survey.already_answered,
    AnswerStatus.EXPIRED: texts.survey.expired,
    AnswerStatus.UNKNOWN: texts.survey.unknown_survey,
}


def _refused(result: FollowUpAnswer, callback_answer: CallbackAnswer) -> bool:
    if result.status is AnswerStatus.RECORDED and result.texts is not None:
        return False
    callback_answer.text = _REFUSALS.get(result.status, texts.survey.unknown_survey)()
    return True


@router.callback_query(keyboards.FollowUpCb.filter())
async def follow_up_answered(
    query: CallbackQuery,
    callback_data: keyboards.FollowUpCb,
    ctx: CustomerContext,
    callback_answer: CallbackAnswer,
) -> None:
    session, customer = ctx.session, ctx.customer
    async with session.begin():
        result = await answer_follow_up(
            session,
            callback_data.id,
            customer.id,
            callback_data.yes,
            ctx.clock(),
            ctx.policy,
            ctx.locale,
        )
        reopened = result.outcome.reopened if result.outcome is not None else None
        held = reopened is not None and await _tell_holder(session, reopened.queued, ctx.desk)
    if _refused(result, callback_answer):
        return
    assert result.texts is not None
    t = result.texts
    parts = [escape(t["question"], quote=False)]
    if reopened is not None:
        parts.append(escape(t["reopened"], quote=False))
    recorded = result.outcome is not None and result.outcome.recorded
    if recorded:
        parts.append(escape(t["rating"], quote=False))
        await _edit(query, "\n\n".join(parts), keyboards.follow_up_rating(callback_data.id))
    else:
        parts.append(escape(t["thanks"], quote=False))
        await _edit(query, "\n\n".join(parts), None)
    if reopened is not None:
        await chats.notify_queued(BotCasePager(session, ctx.desk), customer.id, reopened.queued)
        if held:
            await ctx.desk.kick(reopened.queued.conversation_id)


async def _tell_holder(session: AsyncSession, queued: chats.Queued, desk: Desk) -> bool:
    """A reopened case that joined a chat someone holds: tell them (in the transaction).
    False if nobody holds it (then the hand-over's briefing has the case)."""
    conv = await session.get(Conversation, queued.conversation_id, populate_existing=True)
    if conv is None or conv.status != ASSIGNED:
        return False
    with for_agents():
        note = texts.complaint.reopened_note(queued.summary)
    await enqueue.note_to_agent(session, conv.id, note, now=desk.now())
    return True


@router.callback_query(keyboards.FollowUpScoreCb.filter())
async def follow_up_rated(
    query: CallbackQuery,
    callback_data: keyboards.FollowUpScoreCb,
    ctx: CustomerContext,
    callback_answer: CallbackAnswer,
) -> None:
    async with ctx.session.begin():
        result = await rate_follow_up(
            ctx.session,
            callback_data.id,
            ctx.customer.id,
            callback_data.score,
            ctx.clock(),
            ctx.policy,
            ctx.locale,
        )
    if _refused(result, callback_answer):
        return
    assert result.texts is not None
    callback_answer.text = texts.survey.thanks_score(callback_data.score, 5)
    await _edit(query, escape(result.texts["thanks"], quote=False), None)
