"""Care tasks through the real dispatcher and aiogram against the fake Bot API, in-process:
reminders (card, reason, due, buttons; once per interval; re-sent after a failed send),
*Start chat* (a new outbound chat, or the customer's own open chat), *Done* with a note,
*Snooze*, ``/care``, and the detractor trigger in the survey flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import select

from bot import keyboards
from bot.app import make_dispatcher
from bot.care_jobs import CareReminders, lease_of
from bot.handlers import get_routers
from bot.handlers.survey import score_keyboard
from routing.care import tasks
from routing.policy.root import Policy, parse_policy
from routing.queue import conversations
from routing.queue.agents import add_agent
from routing.store.care_models import CareTask
from routing.store.models import Agent, Conversation, Customer, Order, Survey
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, Call, FakeBotAPI

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MIA, BOB, SUE = 901, 902, 909
VIC, ALI, DORA = 501, 502, 503


@dataclass
class Harness:
    db: Db
    api: FakeBotAPI
    bot: Bot
    dp: Dispatcher
    policy: Policy
    now: datetime
    care: CareReminders

    def clock(self) -> datetime:
        return self.now

    async def feed(self) -> None:
        while self.api._pending:
            raw = self.api._pending.popleft()
            await self.dp.feed_update(
                self.bot, Update.model_validate(raw, context={"bot": self.bot})
            )

    async def say(self, user: int, text: str, **kw: Any) -> int:
        mark = self.api.mark()
        self.api.user_message(user, text, **kw)
        await self.feed()
        return mark

    async def press(self, user: int, call: Call, label: str) -> int:
        mark = self.api.mark()
        data = next(
            b["callback_data"]
            for row in call.params["reply_markup"]["inline_keyboard"]
            for b in row
            if label in b["text"]
        )
        self.api.press(user, int(call.result["message_id"]), data)
        await self.feed()
        return mark

    async def sweep(self) -> int:
        mark = self.api.mark()
        await self.care.sweep(self.db.sessions)
        return mark

    def sent(self, chat: int, since: int = 0, method: str = "sendMessage") -> list[Call]:
        return [
            c for c in self.api.calls[since:] if c.ok and c.chat_id == chat and c.method == method
        ]

    def texts(self, chat: int, since: int = 0) -> list[str]:
        return [c.text or "" for c in self.api.calls[since:] if c.ok and c.chat_id == chat]

    def answers(self, since: int) -> list[str]:
        return [
            str(c.params.get("text"))
            for c in self.api.calls[since:]
            if c.method == "answerCallbackQuery"
        ]

    async def task(self, customer_tg: int) -> CareTask:
        async with self.db.sessions() as s:
            row = (
                await s.execute(
                    select(CareTask)
                    .join(Customer, Customer.id == CareTask.customer_id)
                    .where(Customer.telegram_id == customer_tg)
                    .order_by(CareTask.id.desc())
                )
            ).scalars().first()  # fmt: skip
        assert row is not None
        return row

    async def conv(self, customer_tg: int) -> Conversation | None:
        async with self.db.sessions() as s:
            return (
                await s.execute(
                    select(Conversation)
                    .join(Customer, Customer.id == Conversation.customer_id)
                    .where(Customer.telegram_id == customer_tg)
                    .order_by(Conversation.id.desc())
                )
            ).scalars().first()  # fmt: skip


def buttons(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


def _detach_routers() -> None:
    for router in get_routers():
        router._parent_router = None


async def _harness(db: Db, policy: Policy) -> AsyncIterator[Harness]:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        h = Harness(db, api, bot, None, policy, T0, None)  # type: ignore[arg-type]
        h.care = CareReminders(bot, policy, h.clock, sweep_retry=3.0, now_retry=3.0)
        _detach_routers()
        h.dp = make_dispatcher(db.sessions, policy, bot, clock=h.clock)
        created = T0 - timedelta(days=40)
        async with db.sessions() as s, s.begin():
            for tg, name, role in ((MIA, "Mia", "agent"), (BOB, "Bob", "agent"),
                                   (SUE, "Sue", "supervisor")):  # fmt: skip
                a, _ = await add_agent(s, tg, name, role=role, max_chats=2, now=T0)
                a.online = True
            # Victor (VIP, Mia's) is due a visit since day 30; Alice (A, no manager) at 90.
            s.add_all(
                [
                    Customer(external_id="V-1", name="Victor", tier="VIP", telegram_id=VIC,
                             account_manager="Mia", created_at=created, updated_at=created),
                    Customer(external_id="A-1", name="Alice", tier="A", telegram_id=ALI,
                             created_at=created, updated_at=created),
                    Customer(external_id="D-1", name="Dora", tier="VIP", telegram_id=DORA,
                             account_manager="Mia", created_at=T0, updated_at=T0),
                    Order(external_id="V-1", order_id="SO-77", amount_cents=1_250_000,
                          category="watches", ordered_at=T0 - timedelta(days=35),
                          status="delivered"),
                ]
            )  # fmt: skip
        try:
            yield h
        finally:
            await bot.session.close()
            _detach_routers()


@pytest.fixture
async def h(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, Policy()):
        yield x


# --- reminders --------------------------------------------------------------------------


async def test_cadence_reminder_card_reason_due_and_buttons_once_per_interval(
    h: Harness,
) -> None:
    mark = await h.sweep()
    (reminder,) = h.sent(MIA, mark)
    text = reminder.text or ""
    assert "Care task #" in text and "follow-up visit for Victor" in text
    assert "VIP: a visit every 30 days" in text  # why
    assert "Overdue by 10 d (due 2026-11-13 12:00 UTC)" in text
    assert "<b>Victor</b> · VIP" in text and "SO-77" in text  # the customer card
    assert buttons(reminder) == ["💬 Start chat", "✅ Done", "💤 Snooze"]
    # Nobody else hears of Mia's task; nothing is due for Alice (A: 90 days).
    assert not h.sent(BOB, mark) and not h.sent(SUE, mark)
    # Claimed once per interval: the next sweeps send nothing until remind_every_hours.
    mark = await h.sweep()
    assert not h.sent(MIA, mark)
    h.now = T0 + timedelta(hours=23)
    mark = await h.sweep()
    assert not h.sent(MIA, mark)
    h.now = T0 + timedelta(hours=24, minutes=1)
    mark = await h.sweep()
    assert len(h.sent(MIA, mark)) == 1


async def test_a_pool_task_goes_to_the_supervisors_without_a_pool(h: Harness) -> None:
    h.now = T0 + timedelta(days=55)  # Alice's visit (A: 90 days) is due
    mark = await h.sweep()
    (to_sue,) = [c for c in h.sent(SUE, mark) if "Alice" in (c.text or "")]
    assert "A pool task: whoever starts it takes it." in (to_sue.text or "")
    assert not [c for c in h.sent(BOB, mark) if "Alice" in (c.text or "")]


async def test_a_reminder_nobody_received_is_sent_again_after_the_lease(h: Harness) -> None:
    # Telegram answers 502 for longer than the sender's retry window: not delivered, and
    # not confirmed either.
    h.api.fail_next("sendMessage", 502, times=1000, chat_id=MIA)
    await h.sweep()
    h.api._failures.clear()
    task = await h.task(VIC)
    assert task.reminded_at == T0 - timedelta(hours=24) + lease_of(h.policy)
    mark = await h.sweep()  # still leased: nothing yet
    assert not h.sent(MIA, mark)
    h.now = T0 + lease_of(h.policy)
    mark = await h.sweep()
    assert len(h.sent(MIA, mark)) == 1
    assert (await h.task(VIC)).reminded_at == h.now  # confirmed: next one in 24 h


async def test_a_429_is_waited_out_and_the_reminder_confirmed(h: Harness) -> None:
    h.api.fail_next("sendMessage", 429, retry_after=1, chat_id=MIA)
    mark = await h.sweep()
    assert len(h.sent(MIA, mark)) == 1
    assert h.api.count_429 == 1
    assert (await h.task(VIC)).reminded_at == T0


# --- Start chat, the relay, Done ------------------------------------------------------------


async def test_start_chat_opens_an_outbound_chat_then_done_with_a_note(h: Harness) -> None:
    await h.sweep()
    reminder = h.sent(MIA)[-1]
    # Bob may not act on Mia's task (the same buttons in his chat).
    task_id = (await h.task(VIC)).id
    await h.bot.send_message(BOB, "fwd", reply_markup=keyboards.care_task(task_id))
    mark = await h.press(BOB, h.sent(BOB)[-1], "Start chat")
    assert h.answers(mark) == ["This care task is another agent's."]
    mark = await h.press(MIA, reminder, "Start chat")
    conv = await h.conv(VIC)
    assert conv is not None
    assert (conv.status, conv.origin, conv.tier) == ("assigned", "care", "VIP")
    async with h.db.sessions() as s:
        mia = (await s.execute(select(Agent).where(Agent.telegram_id == MIA))).scalar_one()
    assert conv.agent_id == mia.id and mia.focus_conversation_id == conv.id
    task = await h.task(VIC)
    assert (task.status, task.conversation_id) == ("started", conv.id)
    opened = [t for t in h.texts(MIA, mark) if f"Chat #{conv.id} with Victor is open" in t]
    assert opened
    # The reminder now offers Done alone.
    edits = [c for c in h.api.calls[mark:] if c.method == "editMessageReplyMarkup"]
    assert edits and [b["text"] for r in edits[-1].params["reply_markup"]["inline_keyboard"]
                      for b in r] == ["✅ Done"]  # fmt: skip
    assert not h.texts(VIC, mark)  # the customer hears nothing before the agent writes
    # A second press: one line, nothing new.
    mark = await h.press(MIA, reminder, "Start chat")
    assert "started already" in h.answers(mark)[0]

    # Mia's first message goes to Victor from the bot; his reply comes back to her.
    mark = await h.say(MIA, "Hello Victor, how is the new watch?")
    (copy,) = h.sent(VIC, mark, "copyMessage")
    assert copy.params["from_chat_id"] == MIA
    mark = await h.say(VIC, "Great, thanks for asking!")
    (back,) = h.sent(MIA, mark, "copyMessage")
    assert back.params["from_chat_id"] == VIC

    # Done: the next message is the note, not a message for Victor.
    mark = await h.press(MIA, reminder, "Done")
    assert any("send a short note" in t for t in h.texts(MIA, mark))
    mark = await h.say(MIA, "Happy; wants the autumn catalogue")
    assert not h.sent(VIC, mark, "copyMessage")
    assert any("is done; your note is recorded" in t for t in h.texts(MIA, mark))
    task = await h.task(VIC)
    assert (task.status, task.outcome) == ("done", "Happy; wants the autumn catalogue")
    # Back to normal: Mia's next message goes to Victor again; /close closes as any chat.
    mark = await h.say(MIA, "Bye!")
    assert len(h.sent(VIC, mark, "copyMessage")) == 1
    await h.say(MIA, "/close")
    async with h.db.sessions() as s:
        survey = (await s.execute(select(Survey).where(Survey.conversation_id == conv.id))).one()
    assert survey[0].kind == "csat" and survey[0].status == "scheduled"
    # Done twice: a clear line.
    mark = await h.press(MIA, reminder, "Done")
    assert h.answers(mark) == ["This care task is done already."]


async def test_done_command_cancel_and_the_chat_linked_task(h: Harness) -> None:
    await h.sweep()
    reminder = h.sent(MIA)[-1]
    await h.press(MIA, reminder, "Done")
    mark = await h.say(MIA, "/cancel")
    assert h.texts(MIA, mark) == ["Nothing recorded: the task stays open."]
    assert (await h.task(VIC)).status == "open"
    mark = await h.say(MIA, "/done")
    assert "Which task?" in h.texts(MIA, mark)[0]
    await h.press(MIA, reminder, "Start chat")
    # /done NOTE in the task's chat (focused): recorded at once.
    mark = await h.say(MIA, "/done called, all fine")
    assert any("is done" in t for t in h.texts(MIA, mark))
    assert (await h.task(VIC)).outcome == "called, all fine"


async def test_start_chat_when_the_customer_already_has_a_chat(h: Harness) -> None:
    await h.sweep()
    reminder = h.sent(MIA)[-1]
    # Victor wrote first: his chat waits in the queue (Mia's manager window). Start chat
    # takes that chat instead of opening a second, with the queue's hand-over.
    await h.say(VIC, "Hi, a question about my order")
    waiting = await h.conv(VIC)
    assert waiting is not None and waiting.status == "queued"
    mark = await h.press(MIA, reminder, "Start chat")
    conv = await h.conv(VIC)
    assert conv is not None and conv.id == waiting.id and conv.status == "assigned"
    texts = h.texts(MIA, mark)
    assert any("You took" in t for t in texts)
    assert any("was already waiting in chat" in t for t in texts)
    assert (await h.task(VIC)).conversation_id == conv.id
    assert len(h.sent(MIA, mark, "copyMessage")) == 1  # his message, after the briefing


async def test_start_chat_on_another_agents_chat_links_it(h: Harness) -> None:
    h.now = T0 + timedelta(days=55)
    await h.sweep()
    reminder = next(c for c in h.sent(SUE) if "Alice" in (c.text or ""))
    await h.say(ALI, "/human")
    await h.say(BOB, "/next")
    mark = await h.press(SUE, reminder, "Start chat")
    assert any("with Bob" in t and "no second chat" in t for t in h.texts(SUE, mark))
    task = await h.task(ALI)
    async with h.db.sessions() as s:
        sue = (await s.execute(select(Agent).where(Agent.telegram_id == SUE))).scalar_one()
    assert task.status == "started" and task.agent_id == sue.id  # a pool task: hers now


async def test_start_chat_refusals(h: Harness) -> None:
    await h.sweep()
    reminder = h.sent(MIA)[-1]
    # At capacity (2): no chat is opened.
    await h.say(ALI, "/human")
    await h.say(DORA, "hello")
    await h.say(MIA, "/next")
    await h.say(MIA, "/next")
    mark = await h.press(MIA, reminder, "Start chat")
    assert "your maximum" in h.answers(mark)[0]
    assert (await h.task(VIC)).status == "open"
    # No Telegram chat with the bot.
    async with h.db.sessions() as s, s.begin():
        vic = (await s.execute(select(Customer).where(Customer.telegram_id == VIC))).scalar_one()
        vic.telegram_id = None
    mark = await h.press(MIA, reminder, "Start chat")
    assert "has no Telegram chat with the bot" in h.answers(mark)[0]
    # Unknown task.
    h.api.press(MIA, int(reminder.result["message_id"]), "care:start:99999")
    mark = h.api.mark()
    await h.feed()
    assert h.answers(mark) == ["This care task does not exist."]


async def test_snooze_then_reminded_when_it_ends(h: Harness) -> None:
    await h.sweep()
    reminder = h.sent(MIA)[-1]
    mark = await h.press(MIA, reminder, "Snooze")
    assert h.answers(mark) == [
        f"Task #{(await h.task(VIC)).id} snoozed until 2026-11-24 12:00 UTC: "
        "you will be reminded then."
    ]
    h.now = T0 + timedelta(hours=23)
    mark = await h.sweep()
    assert not h.sent(MIA, mark)
    h.now = T0 + timedelta(hours=24, minutes=1)
    mark = await h.sweep()
    assert len(h.sent(MIA, mark)) == 1
    mark = await h.sweep()
    assert not h.sent(MIA, mark)  # once, not at every sweep


async def test_care_lists_overdue_first_and_supervisors_see_everyone(h: Harness) -> None:
    async with h.db.sessions() as s, s.begin():
        cust = {c.telegram_id: c for c in (await s.execute(select(Customer))).scalars()}
        await tasks.create(s, cust[DORA], tasks.DETRACTOR, due_at=T0 + timedelta(days=2),
                           dedupe_key="later", now=T0)  # fmt: skip
        await tasks.create(s, cust[VIC], tasks.CADENCE, due_at=T0 - timedelta(days=3),
                           dedupe_key="late", now=T0)  # fmt: skip
        await tasks.create(s, cust[ALI], tasks.SCORE_DROP, due_at=T0 - timedelta(hours=2),
                           dedupe_key="pool", now=T0, detail="score 80 -> 65")  # fmt: skip
    mark = await h.say(MIA, "/care")
    (listing,) = h.sent(MIA, mark)
    lines = (listing.text or "").splitlines()
    assert lines[0] == "<b>Care tasks</b>: 2 pending, 1 overdue."
    assert (
        lines[2].startswith("⚠️ #") and "Victor (VIP) · follow-up visit · overdue by 3 d" in lines[2]
    )
    assert lines[3].startswith("• #") and "Dora (VIP) · detractor answer · due in 2 d" in lines[3]
    assert "Alice" not in (listing.text or "")  # the pool's, and Mia is not in a pool
    vic_id = (await h.task(VIC)).id
    assert buttons(listing)[:3] == [f"💬 #{vic_id}", f"✅ #{vic_id}", f"💤 #{vic_id}"]
    mark = await h.say(SUE, "/care")
    (everyone,) = h.sent(SUE, mark)
    text = everyone.text or ""
    assert "3 pending, 2 overdue" in text
    assert (
        "Victor (VIP) · follow-up visit · overdue by 3 d (due 2026-11-20 12:00 UTC) · Mia" in text
    )
    assert "Alice (A) · score drop · overdue by 2 h (due 2026-11-23 10:00 UTC) · pool" in text
    # A button in the list acts as the reminder's does; the list keeps its buttons.
    mark = await h.press(SUE, everyone, f"💤 #{vic_id}")
    assert "snoozed until" in h.answers(mark)[0]
    assert not [c for c in h.api.calls[mark:] if c.method == "editMessageReplyMarkup"]
    mark = await h.say(BOB, "/care")
    assert h.texts(BOB, mark) == ["No pending care tasks."]


async def test_pool_agents_see_the_pool_tasks(sqlite_db: Db) -> None:
    policy = parse_policy({"care": {"pool": ["Bob"]}})
    async for h in _harness(sqlite_db, policy):
        h.now = T0 + timedelta(days=55)
        mark = await h.sweep()
        assert [c for c in h.sent(BOB, mark) if "Alice" in (c.text or "")]
        assert not [c for c in h.sent(SUE, mark) if "Alice" in (c.text or "")]
        mark = await h.say(BOB, "/care")
        assert "Alice (A) · follow-up visit" in h.texts(BOB, mark)[0]


# --- the detractor trigger ------------------------------------------------------------------


async def _sent_survey(h: Harness, customer_tg: int, kind: str = "nps") -> tuple[int, Call]:
    async with h.db.sessions() as s, s.begin():
        cu = (
            await s.execute(select(Customer).where(Customer.telegram_id == customer_tg))
        ).scalar_one()
        sv = Survey(kind=kind, customer_id=cu.id, status="sent", due_at=h.now,
                    created_at=h.now, sent_at=h.now, expires_at=h.now + timedelta(hours=72),
                    chat_id=customer_tg)  # fmt: skip
        s.add(sv)
        await s.flush()
        survey_id = sv.id
    await h.bot.send_message(customer_tg, "NPS?", reply_markup=score_keyboard(survey_id, kind))
    return survey_id, h.sent(customer_tg)[-1]


async def test_a_vip_detractor_gets_a_care_task_reminded_at_once(h: Harness) -> None:
    survey_id, question = await _sent_survey(h, DORA)
    mark = await h.press(DORA, question, "3")
    task = await h.task(DORA)
    assert (task.reason, task.status, task.dedupe_key) == (
        "detractor",
        "open",
        f"detractor:{survey_id}",
    )
    reminders = [t for t in h.texts(MIA, mark) if "Care task #" in t]
    assert len(reminders) == 1 and "detractor answer for Dora" in reminders[0]
    assert f"Why: detractor answer (survey #{survey_id})" in reminders[0]
    # The sweep does not remind it again within the interval.
    mark = await h.sweep()
    assert not [t for t in h.texts(MIA, mark) if "Dora" in t]
    # Start chat takes Dora's service-recovery chat (queued by the answer) for Mia.
    reminder = next(c for c in h.sent(MIA) if "detractor answer for Dora" in (c.text or ""))
    mark = await h.press(MIA, reminder, "Start chat")
    conv = await h.conv(DORA)
    assert conv is not None and conv.origin == "service_recovery" and conv.status == "assigned"
    assert any("Survey answer: NPS 3" in t for t in h.texts(MIA, mark))
    assert (await h.task(DORA)).conversation_id == conv.id


async def test_no_task_for_a_promoter_or_a_lower_tier(h: Harness) -> None:
    _, question = await _sent_survey(h, DORA)
    await h.press(DORA, question, "9")
    _, question = await _sent_survey(h, ALI)  # A is not human_first
    await h.press(ALI, question, "2")
    async with h.db.sessions() as s:
        assert not list((await s.execute(select(CareTask))).scalars())


async def test_a_detractor_task_reminded_once_across_a_redelivered_press(h: Harness) -> None:
    _, question = await _sent_survey(h, DORA)
    await h.press(DORA, question, "2")
    mark = await h.press(DORA, question, "1")  # a second press: already answered
    assert not [t for t in h.texts(MIA, mark) if "Care task #" in t]
    async with h.db.sessions() as s:
        assert len(list((await s.execute(select(CareTask))).scalars())) == 1


def test_conversations_origin_constant() -> None:
    from routing.care.outreach import ORIGIN_CARE

    assert ORIGIN_CARE == "care" and conversations.ORIGIN_REQUEST != ORIGIN_CARE
