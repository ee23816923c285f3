"""Care that reaches out, in the real bot process against the fake Bot API: a VIP's follow-up
visit due by cadence and a VIP detractor's call, each reminded to the account manager and
done through *Start chat* (the agent's message reaches the customer, the reply comes back),
then *Done* with a note. The bot runs on a file clock the test moves (CONTACTBOT_CLOCK_FILE)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from routing.store.care_models import CareTask
from routing.store.models import Conversation, Customer, Order, Survey
from tests.e2e.conftest import Env, buttons

T0 = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
VIC, DORA = 611, 612
MIA = 9301
FAST_CARE = """
[care]
sweep_minutes = 0.01
"""


async def _task(env: Env, customer_tg: int) -> CareTask:
    async def work(s: Any) -> Any:
        return (
            await s.execute(
                select(CareTask)
                .join(Customer, Customer.id == CareTask.customer_id)
                .where(Customer.telegram_id == customer_tg)
                .order_by(CareTask.id.desc())
            )
        ).scalars().first()  # fmt: skip

    task: CareTask = await env.query(work)
    return task


async def _conv(env: Env, conv_id: int) -> Conversation:
    async def work(s: Any) -> Any:
        return await s.get(Conversation, conv_id)

    conv: Conversation = await env.query(work)
    return conv


async def test_a_vip_visit_due_by_cadence_done_through_start_chat(env: Env) -> None:
    api = env.api
    env.use_clock(T0)
    env.policy_file(FAST_CARE)
    created = T0 - timedelta(days=40)

    async def seed(s: Any) -> None:
        s.add_all(
            [
                Customer(external_id="V-1", name="Victor", tier="VIP", telegram_id=VIC,
                         account_manager="Mia", created_at=created, updated_at=created),
                Order(external_id="V-1", order_id="SO-77", amount_cents=1_250_000,
                      category="watches", ordered_at=T0 - timedelta(days=35),
                      status="delivered"),
            ]
        )  # fmt: skip

    await env.seed(seed)
    await env.add_agent(MIA, "Mia", online=True)
    await env.bot.start()

    # The sweep finds Victor's visit due (VIP: every 30 days; never contacted in 40) and
    # reminds Mia, his account manager, with the card and the three buttons.
    first = await api.wait_for("sendMessage", chat_id=MIA, text_contains="Care task #")
    text = first.text or ""
    assert "follow-up visit for Victor" in text and "Overdue by 10 d" in text
    assert "<b>Victor</b> · VIP" in text and "SO-77" in text
    assert [t for t, _ in buttons(first)] == ["💬 Start chat", "✅ Done", "💤 Snooze"]

    # Mia snoozes it: nothing more until the snooze ends on the bot's clock (24 h).
    mark = await env.press(MIA, first, "Snooze")
    ack = await api.wait_for("answerCallbackQuery", since=mark)
    assert "snoozed until 2026-11-24 12:00 UTC" in str(ack.params.get("text"))
    assert (await _task(env, VIC)).status == "snoozed"
    mark = api.mark()
    env.set_clock(T0 + timedelta(hours=25))
    again = await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="Care task #")
    assert "Overdue by 11 d" in (again.text or "")

    # Start chat: an outbound chat, Mia's at once and focused; Victor hears nothing yet.
    mark = await env.press(MIA, again, "Start chat")
    opened = await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="is open")
    assert "with Victor" in (opened.text or "")
    task = await _task(env, VIC)
    assert task.status == "started" and task.conversation_id is not None
    conv = await _conv(env, task.conversation_id)
    assert (conv.status, conv.origin) == ("assigned", "care")
    assert not [c for c in api.sent_to(VIC) if c.index >= mark]

    # Mia's first message reaches Victor from the bot; his reply comes back to her.
    mark = api.mark()
    api.user_message(MIA, "Hello Victor, how do you like the new watch?")
    to_vic = await api.wait_for("copyMessage", chat_id=VIC, since=mark)
    assert to_vic.params["from_chat_id"] == MIA
    mark = api.mark()
    api.user_message(VIC, "Love it, thanks for checking in!")
    to_mia = await api.wait_for("copyMessage", chat_id=MIA, since=mark)
    assert to_mia.params["from_chat_id"] == VIC

    # Done, with a note: the note is recorded, not sent to Victor.
    mark = await env.press(MIA, again, "Done")
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="short note")
    mark = api.mark()
    api.user_message(MIA, "Happy; send him the autumn catalogue")
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="is done")
    await api.wait_idle()
    assert not [c for c in api.calls_of("copyMessage", chat_id=VIC) if c.index >= mark]
    task = await _task(env, VIC)
    assert (task.status, task.outcome) == ("done", "Happy; send him the autumn catalogue")

    # The chat closes like any other.
    closed = await env.say(MIA, "/close")
    assert "closed" in (closed.text or "").lower()
    assert (await _conv(env, conv.id)).status == "closed"
    none_left = await env.say(MIA, "/care")
    assert "No pending care tasks." in (none_left.text or "")


async def test_a_vip_detractor_call_done_through_start_chat(env: Env) -> None:
    api = env.api
    env.use_clock(T0)
    env.policy_file(
        FAST_CARE
        + "score_drop = 0\ndowngrade_pending = false\n"
        + "[surveys]\nsweep_seconds = 0.3\n[surveys.nps]\ncampaigns = []\n"
    )

    async def seed(s: Any) -> None:
        dora = Customer(
            external_id="D-1", name="Dora", tier="VIP", tier_override="VIP",
            telegram_id=DORA, account_manager="Mia", created_at=T0, updated_at=T0,
        )  # fmt: skip
        s.add(dora)
        await s.flush()
        s.add(
            Survey(kind="nps", customer_id=dora.id, status="scheduled", due_at=T0,
                   created_at=T0, expires_at=T0 + timedelta(hours=72))
        )  # fmt: skip

    await env.seed(seed)
    await env.add_agent(MIA, "Mia", online=True)
    await env.bot.start()

    nps = await api.wait_for("sendMessage", chat_id=DORA, text_contains="recommend")
    mark = await env.press(DORA, nps, "3")
    # A detractor in a human_first tier: a care task for her manager, reminded at once
    # (beside the service-recovery chat the answer queues).
    reminder = await api.wait_for(
        "sendMessage", chat_id=MIA, since=mark, text_contains="detractor answer for Dora"
    )
    assert "Why: detractor answer (survey #" in (reminder.text or "")
    assert [t for t, _ in buttons(reminder)] == ["💬 Start chat", "✅ Done", "💤 Snooze"]
    task = await _task(env, DORA)
    assert (task.reason, task.status) == ("detractor", "open")
    skip = await api.wait_for("editMessageText", chat_id=DORA, since=mark)  # anything to add?
    mark = await env.press(DORA, skip, "Skip")
    await api.wait_for("editMessageText", chat_id=DORA, since=mark)

    # Start chat: Dora's recovery chat is waiting, so Mia takes that one (no second chat),
    # with the queue's hand-over: the survey answer first.
    mark = await env.press(MIA, reminder, "Start chat")
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="You took")
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="Survey answer: NPS 3")
    await api.wait_for(
        "sendMessage", chat_id=MIA, since=mark, text_contains="was already waiting in chat"
    )
    task = await _task(env, DORA)
    assert task.status == "started" and task.conversation_id is not None
    conv = await _conv(env, task.conversation_id)
    assert (conv.status, conv.origin) == ("assigned", "service_recovery")

    # Mia writes; Dora gets it from the bot and answers; the answer reaches Mia.
    mark = api.mark()
    api.user_message(MIA, "Dora, I am sorry about the wait. What happened?")
    to_dora = await api.wait_for("copyMessage", chat_id=DORA, since=mark)
    assert to_dora.params["from_chat_id"] == MIA
    mark = api.mark()
    api.user_message(DORA, "Nobody answered me for two days.")
    to_mia = await api.wait_for("copyMessage", chat_id=MIA, since=mark)
    assert to_mia.params["from_chat_id"] == DORA

    # Done with /done NOTE in the task's chat.
    done = await env.say(MIA, "/done apologised, voucher sent, she is fine now")
    assert "is done" in (done.text or "")
    task = await _task(env, DORA)
    assert (task.status, task.outcome) == ("done", "apologised, voucher sent, she is fine now")
