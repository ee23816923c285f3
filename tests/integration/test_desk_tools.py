"""The agents' desk tools through the real dispatcher against the fake Bot API, in-process:
canned replies (/r and inline mode), internal notes, the customer card at a hand-over with
the self-service question, the labelled transcript of a transfer, the complete /help."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from routing.policy.root import parse_policy
from routing.store.models import Conversation, Customer, Message, Order
from tests.conftest import Db
from tests.integration.test_queue_bot import ANN, BC, BOB, SUE, T0, VIPC, Harness, _harness

ZHC = 503  # a Chinese-speaking A customer with an order and an account manager

POLICY = {
    "desk": {
        "timezone": "Asia/Shanghai",
        "canned": [
            {
                "key": "hello",
                "text": {
                    "en": "Hello {name}, you are {tier}.",
                    "zh_Hans": "{name}您好（{tier}）。",
                },
            },
            {"key": "order", "text": "Your order {last_order}; {manager} will call you."},
            {"key": "thanks", "text": {"en": "Thank you!", "zh_Hans": "谢谢！"}},
            {"key": "markup", "text": "Type <b> & {name} as you see them"},
        ],
    }
}


@pytest.fixture
async def h(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, parse_policy(POLICY)):
        async with sqlite_db.sessions() as s, s.begin():
            s.add(Customer(external_id="Z-1", name="李雷", tier="A", telegram_id=ZHC,
                           language="zh-CN", account_manager="Bob",
                           created_at=T0, updated_at=T0))  # fmt: skip
            s.add(Order(external_id="Z-1", order_id="SO-88", amount_cents=99_00,
                        ordered_at=T0 - timedelta(days=3), status="shipped"))  # fmt: skip
        yield x


def _plain(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def sent_to(h: Harness, chat: int, since: int = 0) -> list[str]:
    return [_plain(t) for t in h.texts(chat, since)]


def briefing(h: Harness, agent: int, since: int) -> str:
    """The hand-over's first message (not the edit of the agent's page)."""
    return next(
        _plain(c.text or "")
        for c in h.api.calls[since:]
        if c.ok
        and c.method == "sendMessage"
        and c.chat_id == agent
        and "You took" in (c.text or "")
    )


async def _transcript(h: Harness, customer_tg: int) -> list[Message]:
    conv = await h.conv(customer_tg)
    async with h.db.sessions() as s:
        rows = await s.execute(
            select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
        )
        return list(rows.scalars())


async def _take(h: Harness, agent: int, customer: int, first: str = "/human") -> None:
    await h.say(customer, first)
    await h.say(agent, "/next")
    await h.api.wait_idle(quiet=0.2)


# --- canned replies --------------------------------------------------------------------


async def test_canned_reply_in_the_customers_language_with_placeholders(h: Harness) -> None:
    await _take(h, BOB, ZHC)
    mark = await h.say(BOB, "/r HELLO")
    await h.api.wait_idle(quiet=0.2)
    assert sent_to(h, ZHC, mark) == ["李雷您好（A）。"]
    assert any(t.startswith("↪️ Sent to #") and "李雷您好" in t for t in sent_to(h, BOB, mark))
    mark = await h.say(BOB, "/r order")
    await h.api.wait_idle(quiet=0.2)
    # One text for every language; the newest order and the manager (a registered agent).
    assert sent_to(h, ZHC, mark) == ["Your order SO-88 (2026-11-20); Bob will call you."]
    rows = await _transcript(h, ZHC)
    agent_rows = [(m.sender, m.content_type, m.text) for m in rows if m.sender == "agent"]
    assert agent_rows == [
        ("agent", "text", "李雷您好（A）。"),
        ("agent", "text", "Your order SO-88 (2026-11-20); Bob will call you."),
    ]
    conv = await h.conv(ZHC)
    assert conv.first_response_at == T0  # a canned reply answers the customer


async def test_r_alone_lists_unknown_key_suggests_missing_value_refuses(h: Harness) -> None:
    mark = await h.say(BOB, "/r")
    assert any("hello, order, thanks, markup" in t for t in sent_to(h, BOB, mark))
    mark = await h.say(BOB, "/r helo")
    [line] = sent_to(h, BOB, mark)
    assert "No canned reply helo" in line and "hello" in line and "\n" not in line
    # Beth has no orders and no manager: the reply is not sent with blanks.
    await _take(h, BOB, BC)
    mark = await h.say(BOB, "/r order")
    await h.api.wait_idle(quiet=0.2)
    assert sent_to(h, BC, mark) == []
    [line] = sent_to(h, BOB, mark)
    assert "Not sent" in line and "{last_order}, {manager}" in line
    # English customer, table text: the default language.
    mark = await h.say(BOB, "/r thanks")
    await h.api.wait_idle(quiet=0.2)
    assert sent_to(h, BC, mark) == ["Thank you!"]


async def test_canned_reply_needs_an_addressed_chat(h: Harness) -> None:
    mark = await h.say(BOB, "/r hello")
    assert any("no open chat" in t for t in sent_to(h, BOB, mark))
    await _take(h, BOB, ZHC)
    await _take(h, BOB, BC)
    mark = await h.say(BOB, "/r hello")
    assert any("You have 2 open chats" in t for t in sent_to(h, BOB, mark))
    assert sent_to(h, ZHC, mark) == [] and sent_to(h, BC, mark) == []


# --- inline mode -----------------------------------------------------------------------


async def _inline(h: Harness, user: int, query: str, **kw: Any) -> list[dict[str, Any]]:
    qid = h.api.inline_query(user, query, **kw)
    await h.feed()
    return h.api.inline_results(qid)


async def test_inline_results_filled_for_the_only_chat_and_picked(h: Harness) -> None:
    # No chat yet: the raw replies (default language, placeholders shown).
    raw = await _inline(h, BOB, "")
    assert [r["id"] for r in raw] == ["hello", "order", "thanks", "markup"]
    assert raw[0]["input_message_content"]["message_text"] == "Hello {name}, you are {tier}."
    await _take(h, BOB, ZHC)
    found = await _inline(h, BOB, "ord")
    assert [r["id"] for r in found] == ["order"]
    text = found[0]["input_message_content"]["message_text"]
    assert text == "Your order SO-88 (2026-11-20); Bob will call you."
    # Words match the texts in any language too.
    assert [r["id"] for r in await _inline(h, BOB, "您好")] == ["hello"]
    filled = await _inline(h, BOB, "hello")
    assert filled[0]["input_message_content"]["message_text"] == "李雷您好（A）。"
    # Asked from a chat with someone else: nothing of the customer leaves the desk.
    elsewhere = await _inline(h, BOB, "hello", chat_type="private", chat_id=777)
    assert elsewhere[0]["input_message_content"]["message_text"] == "Hello {name}, you are {tier}."
    # Picking a result: the agent's own message (via the bot), relayed like any other.
    qid = h.api.inline_query(BOB, "hello")
    await h.feed()
    mark = h.api.mark()
    picked = h.api.choose_inline_result(qid, "hello")
    await h.feed()
    await h.api.wait_idle(quiet=0.2)
    copies = [c for c in h.api.calls[mark:] if c.method == "copyMessage" and c.chat_id == ZHC]
    assert [c.params["message_id"] for c in copies] == [picked["message_id"]]


async def test_inline_gives_customers_nothing(h: Harness) -> None:
    assert await _inline(h, ZHC, "hello") == []
    assert await _inline(h, BC, "") == []
    answers = [c for c in h.api.calls if c.method == "answerInlineQuery"]
    assert all(c.ok for c in answers) and len(answers) == 2


# --- internal notes --------------------------------------------------------------------


async def test_a_note_is_kept_for_agents_and_never_reaches_the_customer(h: Harness) -> None:
    await _take(h, BOB, VIPC, first="My order is late")
    before = h.api.mark()
    mark = await h.say(BOB, "/note customer sounds upset, refund likely")
    await h.api.wait_idle(quiet=0.2)
    assert any("Note kept on" in t for t in sent_to(h, BOB, mark))
    rows = await _transcript(h, VIPC)
    note = [m for m in rows if m.content_type == "note"]
    assert [(m.sender, m.text) for m in note] == [("agent", "customer sounds upset, refund likely")]
    assert note[0].agent_id is not None
    # Nothing went to the customer, and the note is not a first response.
    assert [c for c in h.api.calls[before:] if c.chat_id == VIPC] == []
    assert (await h.conv(VIPC)).first_response_at is None
    mark = await h.say(BOB, "/note")
    assert any("/note TEXT" in t for t in sent_to(h, BOB, mark))


# --- the hand-over ---------------------------------------------------------------------


async def test_card_at_hand_over_with_the_self_service_question(h: Harness) -> None:
    await h.say(BC, "my parcel never arrived and nobody answers")
    await h.say(BC, "/human")
    mark = await h.say(ANN, "/next")
    await h.api.wait_idle(quiet=0.2)
    head = briefing(h, ANN, mark)
    assert "Cust502" in head and "score" in head and "manager" in head
    assert "Asked: my parcel never arrived and nobody answers" in head
    assert "Self-service path: search" in head
    # Nothing follows (the question was asked in self-service): no promise that it does.
    assert "messages follow" not in head
    assert [c for c in h.api.calls[mark:] if c.method.startswith("copy")] == []


async def test_card_then_the_customers_messages(h: Harness) -> None:
    await h.say(VIPC, "I need help")
    mark = await h.say(ANN, "/next")
    await h.api.wait_idle(quiet=0.2)
    head = briefing(h, ANN, mark)
    assert "The customer's messages follow." in head and "Asked:" not in head
    copies = [c for c in h.api.calls[mark:] if c.method == "copyMessage" and c.chat_id == ANN]
    assert len(copies) == 1


async def test_transfer_shows_a_labelled_transcript_in_order(h: Harness) -> None:
    await h.say(VIPC, "My order is late")
    await h.say(BOB, "/next")
    h.now = T0 + timedelta(minutes=2)
    await h.say(BOB, "Let me check")
    await h.say(BOB, "/note courier lost it")
    h.api.user_message(VIPC, photo=True, caption="the label")
    await h.feed()
    h.now = T0 + timedelta(minutes=3)
    await h.say(BOB, "/r thanks")
    await h.api.wait_idle(quiet=0.2)
    mark = await h.say(BOB, "/transfer ann refund please")
    await h.api.wait_idle(quiet=0.3)
    # (Ann's page about this chat is edited too: not part of what she is sent.)
    to_ann = [
        c for c in h.api.calls[mark:] if c.ok and c.chat_id == ANN and c.method != "editMessageText"
    ]
    view = [c.method + ": " + _plain(c.text or "") for c in to_ann]
    # 12:00 UTC is 20:00 in the desk's time zone (Asia/Shanghai).
    assert view == [
        view[0],  # the card
        "sendMessage: 🔁 Transferred by Bob. Note: refund please\nThe conversation so far follows.",
        "sendMessage: Customer 20:00: My order is late\n"
        "Agent Bob 20:02: Let me check\n"
        "📝 Internal note by Bob 20:02: courier lost it\n"
        "Customer 20:02: [photo] the label (below)",
        "copyMessage: ",
        "sendMessage: Agent Bob 20:03: Thank you!",
    ], view
    assert view[0].startswith("sendMessage: ✅ You took chat") and "Cust501" in view[0]
    photo = to_ann[3]
    assert photo.params["from_chat_id"] == VIPC
    # Replying to the transcript addresses the chat.
    async with h.db.sessions() as s:
        conv = await s.get(Conversation, (await h.conv(VIPC)).id)
        assert conv is not None and conv.transfer_note == "refund please"


# --- /help ----------------------------------------------------------------------------


async def test_help_lists_every_agent_command(h: Harness) -> None:
    mark = await h.say(ANN, "/help")
    [text] = sent_to(h, ANN, mark)
    for command in ("/transfer", "/note TEXT", "/r KEY", "/complaint", "/remedy", "/resolve",
                    "/care", "/close", "/next", "/queue", "/chats"):  # fmt: skip
        assert command in text, command
    assert "/stats" not in text
    mark = await h.say(SUE, "/help")
    [text] = sent_to(h, SUE, mark)
    assert "/stats" in text and "/takeover" in text


async def test_an_inline_reply_is_text_not_markup(h: Harness) -> None:
    """What a reply says reaches the customer as written (the result names its parse mode:
    aiogram does not apply the bot's default to inline results). /r: tests/e2e, where the
    bot has its default parse mode."""
    await _take(h, BOB, BC)
    qid = h.api.inline_query(BOB, "markup")
    await h.feed()
    picked = h.api.choose_inline_result(qid, "markup")
    assert picked["text"] == "Type <b> & Cust502 as you see them"
    mark = h.api.mark()
    await h.feed()
    await h.api.wait_idle(quiet=0.2)
    copies = [c for c in h.api.calls[mark:] if c.method == "copyMessage" and c.chat_id == BC]
    assert [c.params["message_id"] for c in copies] == [picked["message_id"]]


async def test_card_shows_the_menu_path_the_customer_took(h: Harness) -> None:
    await h.say(BC, "/menu")
    menu = h.last(BC, "Pick a topic")
    await h.press(BC, menu, "Orders")
    orders = h.last(BC, "Orders and delivery: what do you need?")
    await h.press(BC, orders, "My recent orders")
    await h.say(BC, "/human")
    mark = await h.say(ANN, "/next")
    await h.api.wait_idle(quiet=0.2)
    head = briefing(h, ANN, mark)
    assert "Self-service path: Main menu › Orders and delivery › My recent orders" in head
    assert "Asked:" not in head
