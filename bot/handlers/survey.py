"""Survey buttons, follow-up comments, and the customer's survey switches.

Registered before the customer router, whose catch-alls would otherwise take survey button
presses ("no longer active") and comments (a new chat). State lives in the database: the
survey row's status decides whether a press counts, and ``comment_state`` whether the next
text is a comment, so a restart between the question and the answer changes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from html import escape
from typing import Annotated, Any

from aiogram import BaseMiddleware, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
)
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.adapters.survey_transport import PackedMarkup
from bot.desk import Desk
from bot.filters import IsCustomer
from bot.i18n import speaking
from bot.keyboards import RowId
from routing.clock import Clock
from routing.policy.root import Policy
from routing.queue import agents, conversations
from routing.scoring.model import CSAT
from routing.store.models import Agent, Conversation, Customer
from surveys import feedback, outbox
from surveys.feedback import AnswerStatus, scale
from surveys.outbox_claims import SurveyPush
from surveys.push_transport import Push

log = logging.getLogger(__name__)

router = Router(name="survey")
router.message.filter(IsCustomer())
router.callback_query.filter(IsCustomer())


class ScoreCb(CallbackData, prefix="sv"):
    id: RowId
    # Wider than any scale (NPS is 0-10); the survey's own scale is checked on the answer.
    score: Annotated[int, Field(ge=0, le=100)]


class SkipCb(CallbackData, prefix="svskip"):
    id: RowId


def score_keyboard(survey_id: int, kind: str) -> InlineKeyboardMarkup:
    low, high = scale(kind)
    buttons = [
        InlineKeyboardButton(text=str(n), callback_data=ScoreCb(id=survey_id, score=n).pack())
        for n in range(low, high + 1)
    ]
    # 0-10 does not fit one row on a phone: two rows of 6 and 5.
    grid = [buttons] if len(buttons) <= 5 else [buttons[:6], buttons[6:]]
    return InlineKeyboardMarkup(inline_keyboard=grid)


def skip_keyboard(survey_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=texts.survey.skip_button(), callback_data=SkipCb(id=survey_id).pack()
                )
            ]
        ]
    )


# Stands for the survey id while a kind's keyboard is serialised once (see _score_template).
_ID_MARK = 987_654_321_987_654_321


@functools.cache
def _score_template(kind: str) -> tuple[str, ...]:
    """The kind's score keyboard as Bot API JSON, split where the survey id goes.

    A campaign sends the same keyboard thousands of times a second but for the id in the
    callback data: building 11 buttons, packing their callback data and dumping them per
    push was most of a campaign's CPU. The labels are digits, so no locale in the key.
    """
    markup = score_keyboard(_ID_MARK, kind)
    # Compact: the form encoding percent-quotes every byte of it, per push.
    dumped = json.dumps(markup.model_dump(exclude_none=True), separators=(",", ":"))
    parts = tuple(dumped.split(str(_ID_MARK)))
    low, high = scale(kind)
    if len(parts) != high - low + 2:  # one id per button, nowhere else
        raise RuntimeError(f"unexpected {kind} keyboard template: {parts!r}")
    return parts


def score_markup(survey_id: int, kind: str) -> PackedMarkup:
    """``score_keyboard(survey_id, kind)``, serialised, from the cached template."""
    return PackedMarkup(str(int(survey_id)).join(_score_template(kind)))


def render(push: Push) -> tuple[str, PackedMarkup]:
    """The survey message for one outbox push (what ``AiogramTransport`` renders)."""
    p: SurveyPush = push.payload
    # A push goes out from a scheduler job, outside any update: speak the customer's language.
    with speaking(p.language):
        text = texts.survey.csat_question() if p.kind == CSAT else texts.survey.nps_question()
    return text, score_markup(p.survey_id, p.kind)


# --- the domain's pager, over Telegram ---------------------------------------------------


class BotRecoveryPager:
    """:class:`surveys.feedback.RecoveryPager` with the desk's paging and a direct message."""

    def __init__(self, session: AsyncSession, desk: Desk) -> None:
        self.session = session
        self.desk = desk

    async def _load(self, conversation_id: int) -> tuple[Conversation, Customer] | None:
        async with self.session.begin():
            conv = await self.session.get(Conversation, conversation_id)
            customer = await self.session.get(Customer, conv.customer_id) if conv else None
        return (conv, customer) if conv is not None and customer is not None else None

    async def page_agents(self, conversation_id: int, summary: str) -> int:
        loaded = await self._load(conversation_id)
        if loaded is None:
            return 0
        conv, customer = loaded
        return await self.desk.page(self.session, conv, customer, summary)

    async def page_manager(
        self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
    ) -> bool:
        async with self.session.begin():
            customer = await self.session.get(Customer, customer_id)
            everyone = list(
                (await self.session.execute(select(Agent).where(Agent.active.is_(True)))).scalars()
            )
        manager = agents.find_manager(everyone, customer.account_manager if customer else None)
        if manager is None or customer is None:
            return False
        if manager.online and agents_paged:
            return True  # the desk's page went to them first, with the claim button
        text = texts.agent.vip_detractor_page(
            escape(customer.name or customer.external_id or str(customer.id)),
            escape(summary),
            conversation_id,
        )
        try:
            sent = await self.desk.bot.send_message(
                manager.telegram_id, text, reply_markup=keyboards.claim(conversation_id)
            )
        except TelegramAPIError as exc:
            log.warning("could not page account manager %s: %s", manager.telegram_id, exc)
            return False
        async with self.session.begin():
            await conversations.link(
                self.session, manager.telegram_id, sent.message_id, conversation_id, "notification"
            )
        return True


# --- keeping reachability true -----------------------------------------------------------


class ReachableAgain(BaseMiddleware):
    """A customer marked unreachable (403) who writes again has unblocked the bot."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        customer: Customer | None = data.get("customer")
        session: AsyncSession | None = data.get("session")
        if customer is not None and session is not None and customer.unreachable_at is not None:
            async with session.begin():
                await outbox.clear_unreachable(session, customer.id)
            customer.unreachable_at = None
        return await handler(event, data)


router.message.outer_middleware(ReachableAgain())


# --- switches ---------------------------------------------------------------------------


@router.message(Command("stop_surveys"))
async def stop_surveys(message: Message, session: AsyncSession, customer: Customer) -> None:
    async with session.begin():
        skipped = await outbox.set_opt_out(session, customer.id, True)
    await message.answer(texts.survey.stopped(skipped))


@router.message(Command("start_surveys"))
async def start_surveys(message: Message, session: AsyncSession, customer: Customer) -> None:
    async with session.begin():
        await outbox.set_opt_out(session, customer.id, False)
    await message.answer(texts.survey.started())


# --- answers ----------------------------------------------------------------------------

_REFUSALS: dict[AnswerStatus, Callable[[], str]] = {
    AnswerStatus.ALREADY_ANSWERED: texts.survey.already_answered,
    AnswerStatus.EXPIRED: texts.survey.expired,
    AnswerStatus.UNKNOWN: texts.survey.unknown_survey,
}


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    message = query.message
    if not isinstance(message, Message):
        return
    try:
        await message.edit_text(text, reply_markup=markup)
    except TelegramAPIError as exc:
        log.debug("could not edit survey message: %s", exc)


@router.callback_query(ScoreCb.filter())
async def scored(
    query: CallbackQuery,
    callback_data: ScoreCb,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    desk: Desk,
) -> None:
    async with session.begin():
        result = await feedback.answer(
            session, callback_data.id, customer.id, callback_data.score, clock(), policy
        )
    if result.status is not AnswerStatus.RECORDED:
        # Nothing changes: a second press, a press on an expired or foreign survey.
        await query.answer(_REFUSALS[result.status]())
        return
    assert result.kind is not None and result.score is not None
    _, high = scale(result.kind)
    await query.answer(texts.survey.thanks_score(result.score, high))
    parts = [
        texts.survey.thanks_score(result.score, high),
        texts.survey.csat_comment_prompt() if result.kind == CSAT else texts.survey.nps_followup(),
    ]
    if result.recovery is not None:
        parts.append(texts.survey.recovery_note())
    await _edit(query, "\n\n".join(parts), skip_keyboard(callback_data.id))
    await feedback.notify_recovery(BotRecoveryPager(session, desk), result)


@router.callback_query(SkipCb.filter())
async def skipped(
    query: CallbackQuery, callback_data: SkipCb, session: AsyncSession, customer: Customer
) -> None:
    async with session.begin():
        ok = await feedback.skip_comment(session, callback_data.id, customer.id)
    if not ok:
        await query.answer(texts.survey.comment_done())
        return
    await query.answer()
    await _edit(query, texts.survey.skipped_thanks(), None)


class AwaitingComment(Filter):
    """The customer's text answers a survey's follow-up question (state in the database)."""

    async def __call__(
        self,
        message: Message,
        session: AsyncSession,
        policy: Policy,
        clock: Clock,
        state: FSMContext,
        customer: Customer | None = None,
    ) -> bool | dict[str, Any]:
        if customer is None or not message.text or message.text.startswith("/"):
            return False
        if await state.get_state() is not None:
            return False  # the customer is in the middle of another flow (e.g. an order id)
        async with session.begin():
            survey = await feedback.awaiting_comment(session, customer.id, clock(), policy)
        return {"survey_id": survey.id} if survey is not None else False


@router.message(F.text, AwaitingComment())
async def commented(
    message: Message,
    survey_id: int,
    session: AsyncSession,
    customer: Customer,
    policy: Policy,
    clock: Clock,
    desk: Desk,
) -> None:
    assert message.text is not None
    async with session.begin():
        result = await feedback.comment(
            session,
            survey_id,
            customer.id,
            message.text,
            chat_id=message.chat.id,
            message_id=message.message_id,
            now=clock(),
            policy=policy,
        )
    if result.conversation is not None and result.conversation.agent_id is not None:
        await desk.relay_to_agent(session, result.conversation, customer, message)
    await message.answer(
        texts.survey.comment_thanks() if result.saved else texts.survey.comment_done()
    )
