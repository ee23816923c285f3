"""Survey buttons, follow-up comments, and the customer's survey switches.

One of the customers' feature routers (bot/handlers/__init__.py): its presses have their own
callback data, and a comment is recognised by the ``SurveyComment`` filter (bot/filters.py),
which the relay of an open chat excludes, so no router order is needed. State lives in the
database: the survey row's status decides whether a press counts, and ``comment_state``
whether the next text is a comment, so a restart between the question and the answer changes
nothing. Whether a text is a comment is read by :func:`find_awaiting_comment` from the
update's opening lookup, and only for a customer's plain text.
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
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject, Update
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.keyboard import InlineKeyboardBuilder
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from bot import care_jobs, texts
from bot.adapters.case_pager import ManagerPager
from bot.adapters.survey_transport import PackedMarkup
from bot.desk import Desk
from bot.filters import SurveyComment
from bot.handlers.customer.complaint import render_follow_up
from bot.i18n import speaking
from bot.keyboards import RowId
from routing.clock import Clock
from routing.policy.root import Policy
from routing.scoring.model import CSAT
from routing.store.models import Customer
from routing.store.update_lookup import Lookup
from surveys import feedback, outbox
from surveys.complaint_follow_up import FollowUpPush
from surveys.feedback import AnswerStatus, scale
from surveys.news import NewsPush
from surveys.outbox_claims import SurveyPush
from surveys.push_transport import Push

log = logging.getLogger(__name__)

router = Router(name="survey")


class ScoreCb(CallbackData, prefix="sv"):
    id: RowId
    # Wider than any scale (NPS is 0-10); the survey's own scale is checked on the answer.
    score: Annotated[int, Field(ge=0, le=100)]


class SkipCb(CallbackData, prefix="svskip"):
    id: RowId


def score_keyboard(survey_id: int, kind: str) -> InlineKeyboardMarkup:
    low, high = scale(kind)
    kb = InlineKeyboardBuilder()
    for n in range(low, high + 1):
        kb.button(text=str(n), callback_data=ScoreCb(id=survey_id, score=n))
    # 0-10 does not fit one row on a phone: two rows of 6 and 5 (1-5 stays one row).
    kb.adjust(6)
    return kb.as_markup()


def skip_keyboard(survey_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=texts.survey.skip_button(), callback_data=SkipCb(id=survey_id))
    return kb.as_markup()


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


def render(push: Push) -> tuple[str, PackedMarkup | None]:
    """The survey message for one outbox push (what ``AiogramTransport`` renders); an
    announcement (kind ``news``) is its text as written, without buttons."""
    if isinstance(push.payload, NewsPush):
        return escape(push.payload.text, quote=False), None
    if isinstance(push.payload, FollowUpPush):  # a complaint's: Yes / No
        return render_follow_up(push.payload)
    p: SurveyPush = push.payload
    # A push goes out from a scheduler job, outside any update: speak the customer's language.
    with speaking(p.language):
        text = texts.survey.csat_question() if p.kind == CSAT else texts.survey.nps_question()
    return text, score_markup(p.survey_id, p.kind)


# --- the domain's pager, over Telegram ---------------------------------------------------


class BotRecoveryPager(ManagerPager):
    """:class:`surveys.feedback.RecoveryPager`: a detractor's recovery chat."""

    def manager_text(self, customer: Customer, summary: str, conversation_id: int) -> str:
        return texts.agent.vip_detractor_page(
            escape(customer.name or customer.external_id or str(customer.id)),
            escape(summary),
            conversation_id,
        )


# --- keeping reachability true -----------------------------------------------------------


class ReachableAgain(BaseMiddleware):
    """A customer marked unreachable (403) who writes again has unblocked the bot.

    An inner middleware of the customers' router (bot/handlers/__init__.py): it runs for
    every customer message, whichever handler takes it.
    """

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
    callback_answer: CallbackAnswer,
) -> None:
    tier = customer.tier  # as they answered: the answer may rescore them
    async with session.begin():
        result = await feedback.answer(
            session, callback_data.id, customer.id, callback_data.score, clock(), policy
        )
        care_task = await care_jobs.detractor_task(
            session, result, customer.id, callback_data.id, tier, policy, clock()
        )
    if result.status is not AnswerStatus.RECORDED:
        # Nothing changes: a second press, a press on an expired or foreign survey.
        callback_answer.text = _REFUSALS[result.status]()
        return
    assert result.kind is not None and result.score is not None
    _, high = scale(result.kind)
    callback_answer.text = texts.survey.thanks_score(result.score, high)
    parts = [
        texts.survey.thanks_score(result.score, high),
        texts.survey.csat_comment_prompt() if result.kind == CSAT else texts.survey.nps_followup(),
    ]
    if result.recovery is not None:
        parts.append(texts.survey.recovery_note())
    await _edit(query, "\n\n".join(parts), skip_keyboard(callback_data.id))
    await feedback.notify_recovery(BotRecoveryPager(session, desk), result)
    if care_task is not None:  # an at-risk VIP: their care task is reminded now
        await care_jobs.CareReminders(desk.bot, policy, clock).remind_new(session, care_task)


@router.callback_query(SkipCb.filter())
async def skipped(
    query: CallbackQuery,
    callback_data: SkipCb,
    session: AsyncSession,
    customer: Customer,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        ok = await feedback.skip_comment(session, callback_data.id, customer.id)
    if not ok:
        callback_answer.text = texts.survey.comment_done()
        return
    await _edit(query, texts.survey.skipped_thanks(), None)


async def find_awaiting_comment(
    session: AsyncSession, update: Update, data: dict[str, Any]
) -> None:
    """Sets ``awaiting_survey``: the survey whose follow-up question a customer's plain text
    answers, else None (what the ``SurveyComment`` filter reads).

    A preload of ``DbSessionMiddleware``: the sender's lookup (routing/store/update_lookup.py)
    fetched it in the same statement, so a customer's ordinary text costs nothing more; it
    counts only for a plain text of a customer (not a command, media, a press, an agent).
    """
    data["awaiting_survey"] = None
    message = update.message
    customer: Customer | None = data.get("customer")
    found: Lookup | None = data.get("lookup")
    if (
        message is None
        or not message.text
        or message.text.startswith("/")
        or customer is None
        or data.get("agent") is not None
        or found is None
    ):
        return
    data["awaiting_survey"] = found.awaiting_survey


@router.message(F.text, SurveyComment())
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
