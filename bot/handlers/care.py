"""Agents and care tasks: ``/care`` (the agenda), the reminder's buttons *Start chat*,
*Done* (with a note) and *Snooze*, and ``/done NOTE`` / ``/cancel``.

One of the agents' feature routers (bot/handlers/__init__.py): it takes its commands, its
callback data (``keyboards.CareCb``) and, while an agent is asked for a Done note (the
``CareNote.note`` state), their next plain text. Everything else an agent sends still
reaches the relay in bot/handlers/fallback.py.

*Start chat* (``routing.care.outreach.start_chat``) opens an outbound chat assigned to the
agent and focuses it, so the agent's next message goes to the customer through the ordinary
relay and the customer's replies come back the same way; the chat closes with ``/close``
like any other, and its CSAT survey goes out as usual (the outbox's frequency cap and
quiet hours keep it from crowding a customer who was just surveyed).
"""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.desk import Desk
from bot.middlewares import alert, answer_now
from bot.texts import care as care_texts
from routing.care import agenda, outreach, tasks
from routing.care.outreach import Start
from routing.clock import Clock
from routing.policy.root import Policy
from routing.queue import conversations
from routing.store.care_models import CARE_DONE, CARE_STARTED, CareTask
from routing.store.models import Agent, Customer

log = logging.getLogger(__name__)

router = Router(name="care")


class CareNote(StatesGroup):
    """Done was pressed: the agent's next plain text is the task's note."""

    note = State()


# --- /care --------------------------------------------------------------------------------


@router.message(Command("care"))
async def show_agenda(
    message: Message, session: AsyncSession, agent: Agent, policy: Policy, clock: Clock
) -> None:
    now = clock()
    async with session.begin():
        items = await agenda.agenda(session, agent, now, policy)
    if not items.entries:
        await message.answer(care_texts.agenda_empty())
        return
    await message.answer(
        care_texts.agenda(items, now, assignee=agent.role == "supervisor"),
        reply_markup=keyboards.care_agenda(
            [(e.task.id, e.task.status == CARE_STARTED) for e in items.entries]
        ),
    )


# --- the buttons --------------------------------------------------------------------------


def _refusal(outcome: tasks.Outcome, task: CareTask | None) -> str:
    if outcome is tasks.Outcome.UNKNOWN:
        return care_texts.unknown()
    if outcome is tasks.Outcome.NOT_YOURS:
        return care_texts.not_yours()
    return care_texts.not_now(task)


def _only_task(markup: InlineKeyboardMarkup | None, task_id: int) -> bool:
    """The message's buttons are all about this task (a reminder, not a /care list)."""
    if markup is None:
        return False
    for row in markup.inline_keyboard:
        for button in row:
            try:
                if keyboards.CareCb.unpack(button.callback_data or "").id != task_id:
                    return False
            except (TypeError, ValueError):
                return False
    return True


async def _settle(query: CallbackQuery, task_id: int, markup: InlineKeyboardMarkup | None) -> None:
    """Rewrite a reminder's buttons after an action (a /care list keeps its own)."""
    msg = query.message
    if not isinstance(msg, Message) or not _only_task(msg.reply_markup, task_id):
        return
    try:
        await msg.edit_reply_markup(reply_markup=markup)
    except TelegramAPIError as exc:
        log.debug("could not edit care reminder %s: %s", msg.message_id, exc)


@router.callback_query(keyboards.CareCb.filter(F.action == "start"))
async def start_chat(
    query: CallbackQuery,
    callback_data: keyboards.CareCb,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        result = await outreach.start_chat(
            session, callback_data.id, agent, policy, clock(), delivery_now=desk.now()
        )
    how, conv, customer = result.how, result.conversation, result.customer
    if how in (Start.UNKNOWN, Start.NOT_YOURS, Start.NOT_NOW):
        alert(callback_answer, _refusal(tasks.Outcome(how.value), result.task))
        return
    if how is Start.AT_CAPACITY:
        alert(callback_answer, texts.agent.at_capacity(agent.max_chats))
        return
    assert customer is not None
    if how is Start.NO_CHAT:
        alert(callback_answer, care_texts.no_chat(customer))
        return
    assert conv is not None
    await answer_now(query, callback_answer)
    await _settle(query, callback_data.id, keyboards.care_task(callback_data.id, started=True))
    if how is Start.CLAIMED:
        # The customer's waiting chat: the queue's hand-over (briefing, backlog, greeting).
        await desk.hand_over(session, agent, conv)
        text = care_texts.claimed(conv.id, customer)
    elif how is Start.OPENED:
        text = care_texts.opened(conv.id, customer)
    elif how is Start.MINE:
        text = care_texts.mine(conv.id, customer)
    elif result.holder is not None:
        text = care_texts.held_elsewhere(conv.id, customer, result.holder.name)
    else:
        refusal = desk.queue.refusal(result.claim, agent) if result.claim else None
        text = care_texts.waiting_elsewhere(conv.id, customer, refusal or "")
    sent = await desk.bot.send_message(
        agent.telegram_id, text, reply_markup=keyboards.care_task(callback_data.id, started=True)
    )
    if how is not Start.ELSEWHERE:
        # Replying to this message addresses the chat, as replying to a relayed one does.
        async with session.begin():
            await conversations.link(session, agent.telegram_id, sent.message_id, conv.id, "header")


@router.callback_query(keyboards.CareCb.filter(F.action == "snooze"))
async def snooze(
    query: CallbackQuery,
    callback_data: keyboards.CareCb,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    clock: Clock,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        result = await tasks.snooze(session, callback_data.id, agent, clock(), policy)
    task = result.task
    if result.outcome is not tasks.Outcome.OK or task is None or task.snoozed_until is None:
        alert(callback_answer, _refusal(result.outcome, task))
        return
    callback_answer.text = care_texts.snoozed(task.id, task.snoozed_until)


@router.callback_query(keyboards.CareCb.filter(F.action == "done"))
async def done_button(
    query: CallbackQuery,
    callback_data: keyboards.CareCb,
    session: AsyncSession,
    agent: Agent,
    state: FSMContext,
    callback_answer: CallbackAnswer,
) -> None:
    async with session.begin():
        task = await session.get(CareTask, callback_data.id, populate_existing=True)
        customer = await session.get(Customer, task.customer_id) if task else None
    if task is None or customer is None:
        alert(callback_answer, care_texts.unknown())
        return
    if not tasks.may_act(task, agent):
        alert(callback_answer, care_texts.not_yours())
        return
    if task.status == CARE_DONE:
        alert(callback_answer, care_texts.not_now(task))
        return
    msg = query.message
    await state.set_state(CareNote.note)
    await state.set_data(
        {
            "care_task": task.id,
            "care_message": msg.message_id
            if isinstance(msg, Message) and _only_task(msg.reply_markup, task.id)
            else None,
        }
    )
    await _tell(query, care_texts.note_prompt(task.id, customer))


async def _tell(query: CallbackQuery, text: str) -> None:
    if query.bot is not None:
        await query.bot.send_message(query.from_user.id, text)


# --- the note -----------------------------------------------------------------------------


async def _noting(state: FSMContext) -> tuple[int | None, int | None]:
    """The task (and reminder message) a Done note is awaited for, if any."""
    if await state.get_state() != CareNote.note.state:
        return None, None
    data = await state.get_data()
    task_id, message_id = data.get("care_task"), data.get("care_message")
    return (
        int(task_id) if task_id is not None else None,
        int(message_id) if message_id is not None else None,
    )


async def _finish(
    message: Message,
    session: AsyncSession,
    agent: Agent,
    state: FSMContext,
    clock: Clock,
    task_id: int,
    note: str,
    reminder_id: int | None,
) -> None:
    async with session.begin():
        result = await tasks.done(session, task_id, agent, note, clock())
        task = result.task
        customer = await session.get(Customer, task.customer_id) if task else None
    await state.clear()
    if result.outcome is not tasks.Outcome.OK or customer is None:
        await message.answer(_refusal(result.outcome, task))
        return
    await message.answer(care_texts.done(task_id, customer))
    if reminder_id is not None and message.bot is not None:
        try:
            await message.bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=reminder_id, reply_markup=None
            )
        except TelegramAPIError as exc:
            log.debug("could not settle care reminder %s: %s", reminder_id, exc)


@router.message(CareNote.note, F.text, ~F.text.startswith("/"))
async def note(
    message: Message, session: AsyncSession, agent: Agent, state: FSMContext, clock: Clock
) -> None:
    task_id, reminder_id = await _noting(state)
    if task_id is None:  # pragma: no cover - the state filter matched
        return
    assert message.text is not None
    await _finish(message, session, agent, state, clock, task_id, message.text, reminder_id)


async def _task_of_chat(session: AsyncSession, agent: Agent, message: Message) -> int | None:
    """The started task linked to the chat a message addresses (reply, focus, only chat)."""
    reply_to = message.reply_to_message.message_id if message.reply_to_message else None
    async with session.begin():
        target = await conversations.resolve_target(session, agent, reply_to)
        if target.conversation is None:
            return None
        return (
            await session.execute(
                select(CareTask.id)
                .where(
                    CareTask.conversation_id == target.conversation.id,
                    CareTask.status == CARE_STARTED,
                )
                .order_by(CareTask.id)
                .limit(1)
            )
        ).scalar_one_or_none()


@router.message(Command("done"))
async def done_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    state: FSMContext,
    clock: Clock,
) -> None:
    """``/done NOTE``: the task Done was pressed for, else the one linked to the chat."""
    note_text = (command.args or "").strip()
    task_id, reminder_id = await _noting(state)
    if task_id is None:
        task_id = await _task_of_chat(session, agent, message)
    if task_id is None:
        await message.answer(care_texts.which_task())
        return
    if not note_text:
        await state.set_state(CareNote.note)
        await state.set_data({"care_task": task_id, "care_message": reminder_id})
        await message.answer(care_texts.note_needed())
        return
    await _finish(message, session, agent, state, clock, task_id, note_text, reminder_id)


@router.message(Command("cancel"), CareNote.note)
async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(care_texts.cancelled())
