"""Complaints in the real bot process against the fake Bot API: a B customer's complaint from
filing through acknowledgement, remedy, resolution, a "no" follow-up and the reopen; a VIP's
complaint paging the account manager at once, and again when it breaches. The bot runs on a
file clock the test moves (CONTACTBOT_CLOCK_FILE)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from routing.complaints import events
from routing.store.care_models import Complaint
from routing.store.models import Conversation
from tests.e2e.conftest import Env, buttons

T0 = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
BETH, VIC = 701, 601
BOB, SUE, MIA = 9002, 9009, 9003
FAST = """
[complaints]
sweep_seconds = 0.3
follow_up_delay_minutes = 1
[surveys]
sweep_seconds = 0.3
"""


async def _case(env: Env) -> tuple[Complaint, list[str]]:
    async def work(s: Any) -> tuple[Complaint, list[str]]:
        case = (await s.execute(select(Complaint))).scalar_one()
        return case, [e.kind for e in await events.timeline(s, case.id)]

    found: tuple[Complaint, list[str]] = await env.query(work)
    return found


async def _acknowledged(env: Env) -> tuple[Complaint, list[str]]:
    """The case once the agent's message acknowledged it (right after it was relayed)."""
    for _ in range(100):
        case, kinds = await _case(env)
        if case.status == "acknowledged":
            return case, kinds
        await asyncio.sleep(0.05)
    raise AssertionError(f"not acknowledged: {case.status}, {kinds}")


async def _convs(env: Env) -> list[Conversation]:
    async def work(s: Any) -> list[Conversation]:
        return list((await s.execute(select(Conversation).order_by(Conversation.id))).scalars())

    convs: list[Conversation] = await env.query(work)
    return convs


async def _people(env: Env) -> None:
    async def work(s: Any) -> None:
        from routing.queue.agents import add_agent

        people = ((BOB, "Bob", "agent", True), (SUE, "Sue", "supervisor", False),
                  (MIA, "Mia", "agent", False))  # fmt: skip
        for tg, name, role, online in people:
            agent, _ = await add_agent(s, tg, name, role=role, max_chats=3, now=env.now)
            agent.online = online

    await env.seed(work)


async def test_a_b_customers_complaint_to_a_remedy_a_no_and_the_reopen(env: Env) -> None:
    api = env.api
    env.use_clock(T0)
    env.policy_file(FAST)
    # Pinned to B: a case rescores the customer, who has no orders.
    await env.add_customer(
        external_id="B-1", name="Beth", tier="B", tier_override="B", telegram_id=BETH
    )
    await _people(env)
    await env.bot.start()

    # Filing: the categories, then a photo as the description, then the case number.
    ask = await env.say(BETH, "/complaint")
    assert "What is your complaint about?" in (ask.text or "")
    assert next(t for t, _ in buttons(ask)) == "Delivery (late, lost, damaged)"
    mark = await env.press(BETH, ask, "Delivery")
    await api.wait_for("editMessageText", chat_id=BETH, since=mark, text_contains="describe")
    mark = api.mark()
    api.user_message(BETH, photo=True, caption="the box arrived crushed")
    await api.wait_for("sendMessage", chat_id=BETH, since=mark, text_contains="case #1")
    page = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Complaint #1")
    [conv] = await _convs(env)
    assert conv.status == "queued" and conv.origin == "complaint" and conv.priority == 1  # A's

    # Nobody answered for 3.5 h of the 4 h acknowledgement target: the supervisor is warned.
    mark = api.mark()
    env.set_clock(T0 + timedelta(hours=3, minutes=30))
    warn = await api.wait_for("sendMessage", chat_id=SUE, since=mark, text_contains="Complaint SLA")
    assert "warning (acknowledgement): #1 · B · Beth" in (warn.text or "")

    # Bob claims: the briefing has the case, then the photo; his first message acknowledges.
    mark = await env.press(BOB, page, "Claim")
    await api.wait_for(
        "sendMessage", chat_id=BOB, since=mark, text_contains="Complaint #1 (delivery"
    )
    await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    mark = api.mark()
    api.user_message(BOB, "So sorry! A refund is on its way.")
    await api.wait_for("copyMessage", chat_id=BETH, since=mark)
    case, kinds = await _acknowledged(env)
    assert kinds == ["opened", "warn", "acknowledged"]

    # A bad amount is one line; then the remedy, then the resolution (the chat stays open).
    bad = await env.say(BOB, "/remedy refund 12,345")
    assert 'Bad amount "12,345"' in (bad.text or "")
    ok = await env.say(BOB, "/remedy refund 25 courier damage")
    assert ok.text == "Remedy recorded on complaint #1: refund 25.00."
    mark = api.mark()
    resolved_at = T0 + timedelta(hours=4)
    env.set_clock(resolved_at)
    done = await env.say(BOB, "/resolve refunded")
    assert "Complaint #1 resolved" in (done.text or "")
    await api.wait_for("sendMessage", chat_id=BETH, since=mark, text_contains="has been resolved")
    assert [c.status for c in await _convs(env)] == ["assigned"]
    await env.say(BOB, "/close")
    case, _ = await _case(env)
    assert (case.status, case.remedy_kind, case.remedy_amount_cents) == ("resolved", "refund", 2500)

    # The follow-up, a minute after the resolution: "no" reopens and queues the case again.
    mark = api.mark()
    env.set_clock(resolved_at + timedelta(minutes=2))
    question = await api.wait_for(
        "sendMessage", chat_id=BETH, since=mark, text_contains="resolved to your satisfaction"
    )
    assert [t for t, _ in buttons(question)] == ["👍 Yes, resolved", "👎 Not resolved"]
    mark = await env.press(BETH, question, "Not resolved")
    rating = await api.wait_for("editMessageText", chat_id=BETH, since=mark, text_contains="rate")
    assert "open again" in (rating.text or "")
    repage = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="New chat")
    assert "Complaint #1" in (repage.text or "")
    convs = await _convs(env)
    assert [(c.status, c.origin, c.priority) for c in convs] == [
        ("closed", "complaint", 1),
        ("queued", "complaint", 1),
    ]
    mark = await env.press(BETH, rating, "2")
    await api.wait_for("editMessageText", chat_id=BETH, since=mark, text_contains="Thank you")

    # Bob takes the reopened case's chat; his message acknowledges the new cycle.
    mark = await env.press(BOB, repage, "Claim")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="You took")
    mark = api.mark()
    api.user_message(BOB, "Let me sort this out properly.")
    await api.wait_for("copyMessage", chat_id=BETH, since=mark)
    case, kinds = await _acknowledged(env)
    assert (case.status, case.reopen_count, case.outcome, case.follow_up_score) == (
        "acknowledged",
        1,
        "unsatisfied",
        2,
    )
    assert case.conversation_id == convs[1].id
    assert kinds == [
        "opened", "warn", "acknowledged", "remedy", "resolved", "follow_up", "reopened",
        "follow_up", "acknowledged",
    ]  # fmt: skip


async def test_a_vip_complaint_pages_the_account_manager_at_once_and_at_the_breach(
    env: Env,
) -> None:
    api = env.api
    env.use_clock(T0)
    env.policy_file(FAST)
    await env.add_customer(
        external_id="V-1", name="Victor", tier="VIP", tier_override="VIP", telegram_id=VIC,
        account_manager="Mia",
    )  # fmt: skip
    await _people(env)  # Mia, his manager, is offline: the desk's pages do not reach her
    await env.bot.start()

    ask = await env.say(VIC, "/complaint")
    mark = await env.press(VIC, ask, "Product quality")
    await api.wait_for("editMessageText", chat_id=VIC, since=mark, text_contains="describe")
    mark = api.mark()
    api.user_message(VIC, voice=True)
    await api.wait_for("sendMessage", chat_id=VIC, since=mark, text_contains="case #1")
    page = await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="complaint")
    assert "Your customer Victor has a complaint" in (page.text or "")
    assert "Complaint #1 (product" in (page.text or "") and "[voice]" in (page.text or "")
    assert [t for t, _ in buttons(page)] == ["✋ Claim"]
    # Bob, online, was paged by the desk as for any waiting chat.
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Complaint #1")

    # Nobody answers within the VIP's 15 minutes: the supervisor and the manager hear of it.
    mark = api.mark()
    env.set_clock(T0 + timedelta(minutes=16))
    breach = "Complaint SLA breach (acknowledgement): #1 · VIP · Victor"
    await api.wait_for("sendMessage", chat_id=SUE, since=mark, text_contains=breach)
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains=breach)
    case, kinds = await _case(env)
    assert case.status == "open" and kinds == ["opened", "breach"]


async def test_in_topics_mode_the_holders_message_in_the_topic_acknowledges(env: Env) -> None:
    api = env.api
    group = -1001000000001
    api.make_forum(group)
    env.policy_file(f'[desk]\nmode = "topics"\ngroup_id = {group}\n' + FAST)
    await env.add_customer(
        external_id="B-1", name="Beth", tier="B", tier_override="B", telegram_id=BETH
    )
    await env.add_agent(BOB, "Bob", online=True)
    await env.bot.start()

    ask = await env.say(BETH, "/complaint")
    mark = await env.press(BETH, ask, "Delivery")
    await api.wait_for("editMessageText", chat_id=BETH, since=mark, text_contains="describe")
    mark = api.mark()
    api.user_message(BETH, "the parcel never came")
    await api.wait_for("sendMessage", chat_id=BETH, since=mark, text_contains="case #1")
    claim = await api.wait_for(
        "sendMessage", chat_id=group, since=mark, predicate=lambda c: bool(buttons(c))
    )
    thread = claim.params["message_thread_id"]
    api.press_in(group, BOB, int(claim.result["message_id"]), buttons(claim)[0][1])
    await api.wait_for(chat_id=group, since=mark, text_contains="the parcel never came")
    mark = api.mark()
    api.group_message(group, BOB, "Sorry Beth, on it", thread_id=thread)
    await api.wait_for("copyMessage", chat_id=BETH, since=mark)
    _, kinds = await _acknowledged(env)
    assert kinds == ["opened", "acknowledged"]
