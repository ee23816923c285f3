"""Complaints through the real dispatcher and aiogram against the fake Bot API, in-process:
the customer's /complaint flow (category, a description of any type, the case number), the
agents' /complaint, /remedy and /resolve on the chat in hand, acknowledgement by the first
relayed message, the follow-up's buttons, the SLA job's pages, the self-service ways in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.complaint_jobs import ComplaintJobs
from bot.desk import Desk
from bot.survey_jobs import SurveyJobs
from routing.complaints import events
from routing.policy.root import Policy, parse_policy
from routing.store.care_models import CareTask, Complaint
from routing.store.models import ASSIGNED, CLOSED, QUEUED, Customer, Message, Survey
from tests.conftest import Db
from tests.fakes.bot_api import Call
from tests.integration.test_queue_bot import ANN, BC, BOB, SUE, T0, VIPC, Harness, _harness


async def _pinned(h: Harness, extra: dict[int, dict[str, Any]]) -> None:
    """Customers keep their tier: a case rescores them, and they have no orders."""
    async with h.db.sessions() as s, s.begin():
        for c in (await s.execute(select(Customer))).scalars():
            c.tier_override = c.tier
            for k, v in extra.get(c.telegram_id, {}).items():
                setattr(c, k, v)


@pytest.fixture
async def h(db: Db) -> AsyncIterator[Harness]:
    """On SQLite and PostgreSQL (when configured)."""
    async for x in _harness(db, Policy()):
        await _pinned(x, {VIPC: {"account_manager": "Ann"}})
        yield x


def _buttons(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


async def _delivered(h: Harness, chat: int, since: int, count: int) -> list[Call]:
    """The successful calls into ``chat`` since ``since``, once there are ``count`` of them
    (the delivery queue sends after the handler returned)."""
    for _ in range(200):
        calls = [c for c in h.api.calls[since:] if c.ok and c.chat_id == chat]
        if len(calls) >= count:
            return calls
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(calls)} calls into {chat}, expected {count}: {calls}")


def _last_to(h: Harness, chat: int, since: int = 0) -> Call:
    return [c for c in h.api.calls[since:] if c.ok and c.chat_id == chat][-1]


async def _cases(h: Harness) -> list[Complaint]:
    async with h.db.sessions() as s:
        return list((await s.execute(select(Complaint).order_by(Complaint.id))).scalars())


async def _file(h: Harness, customer: int, category: str, **message: Any) -> int:
    """/complaint, the category button, then the description; returns the mark before it."""
    mark = await h.say(customer, "/complaint")
    ask = _last_to(h, customer, mark)
    assert any(category in b for b in _buttons(ask))
    pressed = await h.press(customer, ask, category)
    assert any(c.method == "editMessageText" for c in h.api.calls[pressed:])  # the prompt
    h.api.user_message(customer, **message)
    await h.feed()
    return mark


async def test_a_customer_complaint_with_a_photo_is_queued_above_the_tier_and_briefed(
    h: Harness,
) -> None:
    mark = await h.say(BC, "/complaint")
    ask = _last_to(h, BC, mark)
    assert _buttons(ask) == [
        "Delivery (late, lost, damaged)",
        "Product quality",
        "Billing or refund",
        "Our service",
        "Something else",
        "✖️ Cancel",
    ]
    # Text instead of a button: asked again, nothing filed.
    again = await h.say(BC, "my parcel!")
    assert "pick a category" in h.texts(BC, again)[-1]
    mark = await h.press(BC, ask, "Delivery")
    edit = next(c for c in h.api.calls[mark:] if c.method == "editMessageText")
    assert "Complaint about: Delivery (late, lost, damaged)" in (edit.text or "")
    assert not _buttons(edit)  # the keyboard went: no second complaint from it
    mark = h.api.mark()
    photo = h.api.user_message(BC, photo=True, caption="box crushed")
    await h.feed()
    assert any("registered as case #1" in t for t in h.texts(BC, mark))

    [case] = await _cases(h)
    assert (case.category, case.description, case.status, case.opened_by) == (
        "delivery",
        "[photo] box crushed",
        "open",
        "customer",
    )
    conv = await h.conv(BC)
    assert conv.status == QUEUED and conv.origin == "complaint"
    assert conv.priority == h.policy.rank("B") - 1  # one rank above B: A's
    assert case.conversation_id == conv.id
    # Online agents are paged about it (the case is the page's preview).
    assert any("Complaint #1" in t for t in h.texts(BOB, mark))

    # Bob takes it: the briefing names the case, then the photo itself follows.
    mark = await h.say(BOB, "/next")
    # The notice edited, "you took", the case, the photo.
    briefing = await _delivered(h, BOB, mark, 4)
    assert any("Complaint #1 (delivery" in (c.text or "") for c in briefing)
    copied = [c for c in briefing if c.method in ("copyMessage", "copyMessages")]
    assert copied and copied[-1].params.get("from_chat_id") == BC
    assert photo["message_id"] in (
        copied[-1].params.get("message_ids") or [copied[-1].params.get("message_id")]
    )
    # His first message acknowledges the case.
    await h.say(BOB, "So sorry, we will fix this")
    [case] = await _cases(h)
    assert case.status == "acknowledged" and case.acknowledged_at == T0
    async with h.db.sessions() as s:
        assert [e.kind for e in await events.timeline(s, case.id)] == ["opened", "acknowledged"]


async def test_agent_remedy_resolve_and_close_are_separate(h: Harness) -> None:
    await _file(h, BC, "Billing", text="charged twice")
    await h.say(BOB, "/next")
    # Bad input: one line naming what is accepted; nothing recorded.
    mark = await h.say(BOB, "/remedy")
    assert h.texts(BOB, mark) == [
        "Usage: /remedy KIND [amount] [note]. Kinds: refund, replacement, apology, voucher."
    ]
    mark = await h.say(BOB, "/remedy cash 10")
    assert h.texts(BOB, mark) == [
        'No remedy kind "cash". Kinds: refund, replacement, apology, voucher.'
    ]
    mark = await h.say(BOB, "/remedy refund 12.345")
    assert 'Bad amount "12.345"' in h.texts(BOB, mark)[0]
    mark = await h.say(BOB, "/remedy refund -5")
    assert 'Bad amount "-5"' in h.texts(BOB, mark)[0]
    assert (await _cases(h))[0].remedy_kind is None

    mark = await h.say(BOB, "/remedy Refund 25,50 the second charge")
    assert h.texts(BOB, mark) == ["Remedy recorded on complaint #1: refund 25.50."]
    case = (await _cases(h))[0]
    assert (case.remedy_kind, case.remedy_amount_cents, case.remedy_note) == (
        "refund",
        2550,
        "the second charge",
    )
    # The command is not relayed to the customer, and did not acknowledge the case.
    assert case.status == "open"

    mark = await h.say(BOB, "/resolve refunded")
    assert "Complaint #1 resolved" in h.texts(BOB, mark)[0]
    assert any("has been resolved" in t for t in h.texts(BC, mark))
    case = (await _cases(h))[0]
    assert case.status == "resolved" and case.resolved_at == T0
    assert (await h.conv(BC)).status == ASSIGNED  # resolving does not close the chat
    async with h.db.sessions() as s:
        survey = (await s.execute(select(Survey))).scalar_one()
    assert (survey.kind, survey.complaint_id, survey.status) == ("complaint", 1, "scheduled")
    assert survey.due_at == T0 + timedelta(minutes=60)
    mark = await h.say(BOB, "/resolve")
    assert h.texts(BOB, mark) == ["Complaint #1 is already resolved."]

    # Closing the chat leaves the case as it is; and a case open at close stays open.
    await h.say(BOB, "/close")
    assert (await h.conv(BC)).status == CLOSED
    assert (await _cases(h))[0].status == "resolved"


async def test_closing_a_chat_does_not_resolve_its_case(h: Harness) -> None:
    await _file(h, BC, "Product", text="it broke")
    await h.say(BOB, "/next")
    await h.say(BOB, "/close")
    assert (await h.conv(BC)).status == CLOSED
    assert (await _cases(h))[0].status == "open"


async def test_agent_opens_a_case_on_the_chat_in_hand(h: Harness) -> None:
    await h.say(BC, "/human")
    await h.say(BOB, "/next")
    mark = await h.say(BOB, "/complaint")
    assert h.texts(BOB, mark) == [
        "Usage: /complaint CATEGORY [note]. Categories: delivery, product, billing, service, other."
    ]
    mark = await h.say(BOB, "/complaint refunds slow")
    assert h.texts(BOB, mark) == [
        'No complaint category "refunds". Categories: delivery, product, billing, service, other.'
    ]
    assert await _cases(h) == []
    mark = await h.say(BOB, "/complaint Billing charged twice for order 7")
    assert "Complaint #1 (billing) opened on this chat" in h.texts(BOB, mark)[0]
    assert any("registered as case #1 (Billing or refund)" in t for t in h.texts(BC, mark))
    [case] = await _cases(h)
    assert (case.status, case.opened_by, case.description) == (
        "acknowledged",
        "agent",
        "charged twice for order 7",
    )
    # /remedy and /resolve with no chat in hand: told so.
    await h.say(BOB, "/close")
    mark = await h.say(BOB, "/resolve")
    assert "no open chat" in h.texts(BOB, mark)[0]


async def test_several_chats_ask_which_one(h: Harness) -> None:
    async with h.db.sessions() as s, s.begin():  # no manager window: Bob may take both
        await s.execute(
            update(Customer).where(Customer.telegram_id == VIPC).values(account_manager=None)
        )
    await h.say(BC, "/human")
    await h.say(VIPC, "hello")
    await h.say(BOB, "/next")
    await h.say(BOB, "/next")
    mark = await h.say(BOB, "/complaint delivery")
    [reply] = [c for c in h.api.calls[mark:] if c.ok and c.chat_id == BOB]
    assert "You have 2 open chats" in (reply.text or "") and _buttons(reply)
    assert await _cases(h) == []


async def test_a_complaint_joins_the_chat_already_in_hand(h: Harness) -> None:
    await h.say(BC, "/human")
    await h.say(BOB, "/next")
    await h.say(BOB, "Hello, how can I help?")
    mark = await _file(h, BC, "Our service", voice=True)
    [case] = await _cases(h)
    assert case.description == "[voice]" and case.status == "open"
    # The same chat, still Bob's: he gets the case, then the voice message itself.
    conv = await h.conv(BC)
    assert conv.status == ASSIGNED and case.conversation_id == conv.id
    to_bob = await _delivered(h, BOB, mark, 2)  # the case, then the voice message
    assert any("Complaint #1 (service" in (c.text or "") for c in to_bob)
    assert any(c.method in ("copyMessage", "copyMessages") for c in to_bob)
    # The description went once into the transcript, not also as a chat message.
    async with h.db.sessions() as s:
        voices = (
            await s.execute(select(Message).where(Message.content_type == "voice"))
        ).scalars().all()  # fmt: skip
    assert len(voices) == 1


async def test_cancel_leaves_the_flow(h: Harness) -> None:
    mark = await h.say(BC, "/complaint")
    ask = _last_to(h, BC, mark)
    await h.press(BC, ask, "Product")
    mark = await h.say(BC, "/cancel")
    assert h.texts(BC, mark) == ["Cancelled: no complaint was filed."]
    # The next text is self-service again, not a description.
    await h.say(BC, "opening hours")
    assert await _cases(h) == []
    # /cancel outside the flow is not ours.
    mark = await h.say(BC, "/cancel")
    assert "do not know that command" in h.texts(BC, mark)[0]


async def test_menu_action_and_did_not_help_path(h: Harness) -> None:
    mark = await h.say(BC, "/menu")
    menu = _last_to(h, BC, mark)
    assert "File a complaint" in _buttons(menu)
    mark = await h.press(BC, menu, "File a complaint")
    assert "What is your complaint about?" in (_last_to(h, BC, mark).text or "")
    await h.say(BC, "/cancel")

    # An FAQ answer that did not help offers a complaint.
    mark = await h.say(BC, "how long does delivery take")
    answer = _last_to(h, BC, mark)
    mark = await h.press(BC, answer, "No")
    offer = _last_to(h, BC, mark)
    assert "📝 File a complaint" in _buttons(offer)
    mark = await h.press(BC, offer, "File a complaint")
    assert "What is your complaint about?" in (_last_to(h, BC, mark).text or "")


async def test_did_not_help_offers_no_complaint_when_the_policy_says_so(sqlite_db: Db) -> None:
    policy = parse_policy({"complaints": {"selfservice_not_helped": False}})
    async for h in _harness(sqlite_db, policy):
        mark = await h.say(BC, "how long does delivery take")
        answer = _last_to(h, BC, mark)
        mark = await h.press(BC, answer, "No")
        assert "📝 File a complaint" not in _buttons(_last_to(h, BC, mark))


async def test_a_vip_complaint_pages_the_manager_and_makes_a_care_task(h: Harness) -> None:
    async with h.db.sessions() as s, s.begin():
        await s.execute(update(Customer).where(Customer.telegram_id == VIPC).values(language="zh"))
    await h.say(ANN, "/offline")
    mark = await _file(h, VIPC, "配送", text="快递丢了")
    assert any("#1" in t and "投诉" in t for t in h.texts(VIPC, mark))
    page = next(
        c for c in h.api.calls[mark:] if c.chat_id == ANN and "has a complaint" in (c.text or "")
    )
    assert "Complaint #1 (delivery" in (page.text or "") and _buttons(page) == ["✋ Claim"]
    async with h.db.sessions() as s:
        tasks = (await s.execute(select(CareTask))).scalars().all()
    assert [t.reason for t in tasks] == ["complaint"]


async def test_the_sla_job_pages_supervisors_and_a_breached_vips_manager(h: Harness) -> None:
    await h.say(ANN, "/offline")
    await _file(h, VIPC, "Delivery", text="lost")
    desk: Desk = h.dp["desk"]
    jobs = ComplaintJobs(desk, h.policy, h.clock)
    h.now = T0 + timedelta(seconds=0.8 * 900)  # VIP: acknowledge within 15 min
    mark = h.api.mark()
    assert [(a.target, a.level) for a in await jobs.sweep(h.db.sessions)] == [
        ("acknowledge", "warn")
    ]
    warn = h.texts(SUE, mark)
    assert warn and "Complaint SLA warning (acknowledgement): #1 · VIP" in warn[0]
    assert "12 min elapsed of a 15 min target" in warn[0]
    assert not h.texts(ANN, mark)  # a warning is for supervisors only
    h.now = T0 + timedelta(seconds=901)
    mark = h.api.mark()
    assert [(a.target, a.level) for a in await jobs.sweep(h.db.sessions)] == [
        ("acknowledge", "breach")
    ]
    assert "Complaint SLA breach (acknowledgement)" in h.texts(SUE, mark)[0]
    assert "Complaint SLA breach" in h.texts(ANN, mark)[0]  # the account manager
    mark = h.api.mark()
    assert await jobs.sweep(h.db.sessions) == []  # once
    assert not h.texts(SUE, mark)


async def _push_follow_up(h: Harness) -> Call:
    """Run the survey tick as the scheduler would, once the follow-up is due."""
    h.now = T0 + timedelta(minutes=61)
    mark = h.api.mark()
    await SurveyJobs(h.db.sessions, h.policy, h.bot, h.clock).tick()
    return next(
        c
        for c in h.api.calls[mark:]
        if c.ok and c.chat_id == BC and "Your complaint #" in (c.text or "")
    )


async def test_follow_up_no_reopens_and_queues_then_the_rating(h: Harness) -> None:
    await _file(h, BC, "Delivery", text="late again")
    await h.say(BOB, "/next")
    await h.say(BOB, "Checking")
    await h.say(BOB, "/resolve")
    await h.say(BOB, "/close")
    question = await _push_follow_up(h)
    assert "Your complaint #1 (Delivery (late, lost, damaged)) was resolved" in (
        question.text or ""
    )
    assert _buttons(question) == ["👍 Yes, resolved", "👎 Not resolved"]

    mark = await h.press(BC, question, "Not resolved")
    edit = next(c for c in h.api.calls[mark:] if c.method == "editMessageText")
    assert "open again" in (edit.text or "") and "How would you rate" in (edit.text or "")
    assert _buttons(edit) == ["1", "2", "3", "4", "5"]
    case = (await _cases(h))[0]
    assert (case.status, case.reopen_count, case.outcome) == ("reopened", 1, "unsatisfied")
    # A new chat, queued above the tier, and the agents paged about it.
    conv = await h.conv(BC)
    assert conv.status == QUEUED and conv.id == case.conversation_id
    assert conv.priority == h.policy.rank("B") - 1
    assert any("Complaint #1" in t for t in h.texts(BOB, mark) + h.texts(ANN, mark))
    # A second press of the old question: answered politely, nothing changes.
    mark = await h.press(BC, question, "Yes, resolved")
    ack = next(c for c in h.api.calls[mark:] if c.method == "answerCallbackQuery")
    assert "already answered" in str(ack.params.get("text"))

    mark = await h.press(BC, edit, "2")
    thanks = next(c for c in h.api.calls[mark:] if c.method == "editMessageText")
    assert "Thank you for your feedback" in (thanks.text or "") and not _buttons(thanks)
    assert (await _cases(h))[0].follow_up_score == 2
    mark = await h.press(BC, edit, "5")
    again = next(c for c in h.api.calls[mark:] if c.method == "answerCallbackQuery")
    assert "already answered" in str(again.params.get("text"))
    assert (await _cases(h))[0].follow_up_score == 2

    # The reopened case is acknowledged by the next agent message in the new chat.
    await h.say(BOB, "/next")
    await h.say(BOB, "Let me try again")
    assert (await _cases(h))[0].status == "acknowledged"


async def test_follow_up_yes_is_not_held_back_by_the_chats_csat(h: Harness) -> None:
    await _file(h, BC, "Delivery", text="late")
    await h.say(BOB, "/next")
    await h.say(BOB, "/resolve")
    await h.say(BOB, "/close")
    # The chat's CSAT goes first (due 10 min after the close) ...
    h.now = T0 + timedelta(minutes=11)
    mark = h.api.mark()
    await SurveyJobs(h.db.sessions, h.policy, h.bot, h.clock).tick()
    assert any("How satisfied" in t for t in h.texts(BC, mark))
    # ... and the follow-up still goes an hour after the resolution (no frequency cap).
    question = await _push_follow_up(h)
    assert "Was it resolved to your satisfaction?" in (question.text or "")
    mark = await h.press(BC, question, "Yes, resolved")
    edit = next(c for c in h.api.calls[mark:] if c.method == "editMessageText")
    assert "How would you rate" in (edit.text or "") and "open again" not in (edit.text or "")
    case = (await _cases(h))[0]
    assert (case.status, case.outcome) == ("resolved", "satisfied")


async def test_a_follow_up_respects_the_opt_out(h: Harness) -> None:
    await _file(h, BC, "Delivery", text="late")
    await h.say(BOB, "/next")
    await h.say(BOB, "/resolve")
    await h.say(BC, "/stop_surveys")
    h.now = T0 + timedelta(minutes=61)
    mark = h.api.mark()
    await SurveyJobs(h.db.sessions, h.policy, h.bot, h.clock).tick()
    assert not [t for t in h.texts(BC, mark) if "satisfaction" in t]
    async with h.db.sessions() as s:
        survey = (await s.execute(select(Survey).where(Survey.kind == "complaint"))).scalar_one()
    assert survey.status == "skipped"
