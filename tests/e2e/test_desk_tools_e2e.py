"""The agents' desk tools in the real bot process over the fake Bot API (private mode): the
customer card with the self-service question at the claim, a canned reply in the customer's
language with its placeholders filled, a note that never reaches the customer, inline mode
(filled results for the agent, none for a customer, a picked result relayed), and the
labelled transcript the next agent gets at a transfer."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from routing.store.models import Order
from tests.e2e.conftest import Env

ZHC = 6101  # an A customer who writes in Chinese, with an order and an account manager
ANN, BOB = 9101, 9102
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

POLICY = """
[queue]
sweep_seconds = 0.3

[desk]
timezone = "Europe/Berlin"

[[desk.canned]]
key = "hello"
text = { en = "Hello {name}, you are {tier}.", zh_Hans = "{name}您好（{tier}）。" }

[[desk.canned]]
key = "markup"
text = "Type <b> & {name} as you see them"

[[desk.canned]]
key = "order"
[desk.canned.text]
en = "Your order {last_order}; {manager} will call you."
zh_Hans = "您的订单 {last_order}，{manager} 会给您打电话。"
"""


def _plain(text: str | None) -> str:
    """An HTML text as the reader sees it."""
    return html.unescape(re.sub(r"<[^>]+>", "", text or ""))


async def test_card_canned_note_inline_and_a_labelled_transfer(env: Env) -> None:
    env.use_clock(T0)
    env.policy_file(POLICY)
    await env.add_customer(external_id="Z-1", name="李雷", tier="A", telegram_id=ZHC,
                           language="zh-CN", account_manager="Bob")  # fmt: skip

    async def order(s: Any) -> None:
        s.add(Order(external_id="Z-1", order_id="SO-88", amount_cents=9900,
                    ordered_at=T0 - timedelta(days=3), status="shipped"))  # fmt: skip

    await env.seed(order)
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BOB, "Bob", online=True)
    await env.bot.start()
    api = env.api

    # Self-service first; then a person. Bob (the account manager) takes the chat: the card,
    # with the question asked in self-service, and no promise of messages that do not come.
    await env.say(ZHC, "my parcel never arrived")
    await env.say(ZHC, "/human")
    took = await env.say(BOB, "/next")
    head = _plain(took.text)
    assert "You took chat" in head and "李雷" in head and "manager Bob" in head
    assert "Last orders: SO-88" in head
    assert "Asked: my parcel never arrived" in head
    assert "messages follow" not in head

    # A canned reply, in the customer's language, placeholders filled.
    mark = api.mark()
    api.user_message(BOB, "/r hello")
    got = await api.wait_for("sendMessage", chat_id=ZHC, since=mark, text_contains="您好")
    assert got.text == "李雷您好（A）。"
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Sent to")
    # What a reply says is text, not markup.
    mark = api.mark()
    api.user_message(BOB, "/r markup")
    await api.wait_for("sendMessage", chat_id=ZHC, since=mark)
    assert api.messages_in(ZHC)[-1]["text"] == "Type <b> & 李雷 as you see them"
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Sent to")

    # An internal note: acknowledged to Bob, never sent to the customer.
    kept = await env.say(BOB, "/note courier lost it, refund likely")
    assert "Note kept" in (kept.text or "")

    # Inline mode: Bob's query is answered with the reply filled for his only chat ...
    mark = api.mark()
    qid = api.inline_query(BOB, "order")
    await api.wait_for("answerInlineQuery", since=mark)
    [result] = api.inline_results(qid)
    assert result["input_message_content"]["message_text"] == (
        "您的订单 SO-88 (2026-11-20)，Bob 会给您打电话。"
    )
    # ... and the one he picks arrives as his message, relayed like any other.
    mark = api.mark()
    picked = api.choose_inline_result(qid, "order")
    copy = await api.wait_for("copyMessage", chat_id=ZHC, since=mark)
    assert copy.params["message_id"] == picked["message_id"]
    # A customer's inline query gets no results.
    mark = api.mark()
    theirs = api.inline_query(ZHC, "hello")
    await api.wait_for("answerInlineQuery", since=mark)
    assert api.inline_results(theirs) == []

    # The customer sends a photo; Bob transfers the chat to Ann with a note.
    env.set_clock(T0 + timedelta(minutes=5))
    mark = api.mark()
    api.user_message(ZHC, photo=True, caption="the box")
    await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    mark = api.mark()
    api.user_message(BOB, "/transfer Ann please call him")
    await api.wait_for("copyMessage", chat_id=ANN, since=mark)
    await api.wait_idle()
    # (a page Ann had about this chat is edited too: not part of what she is sent)
    to_ann = [
        c
        for c in api.calls[mark:]
        if c.ok and c.chat_id == ANN and c.method in ("sendMessage", "copyMessage")
    ]
    view = [(c.method, _plain(c.text)) for c in to_ann]
    assert view[0][0] == "sendMessage" and "You took chat" in view[0][1]
    assert "Asked: my parcel never arrived" in view[0][1]
    assert view[1] == (
        "sendMessage",
        "🔁 Transferred by Bob. Note: please call him\nThe conversation so far follows.",
    )
    # 12:00 UTC is 13:00 in Berlin; who said what, the note marked, the photo after its label.
    assert view[2] == (
        "sendMessage",
        "Agent Bob 13:00: 李雷您好（A）。\n"
        "Agent Bob 13:00: Type <b> & 李雷 as you see them\n"
        "📝 Internal note by Bob 13:00: courier lost it, refund likely\n"
        "Agent Bob 13:00: 您的订单 SO-88 (2026-11-20)，Bob 会给您打电话。\n"
        "Customer 13:05: [photo] the box (below)",
    )
    assert view[3][0] == "copyMessage" and to_ann[3].params["from_chat_id"] == ZHC
    assert len(view) == 4, view
    await api.wait_for("sendMessage", chat_id=ZHC, since=mark, text_contains="Ann")

    # The note never reached the customer, in any form.
    seen = [_plain(m.get("text") or m.get("caption")) for m in api.messages_in(ZHC)]
    assert not any("courier" in t or "refund" in t for t in seen), seen


GROUP = -1001000000077
VERA = 6201
TOPICS = """
[queue]
sweep_seconds = 0.3

[desk]
mode = "topics"
group_id = -1001000000077

[[desk.canned]]
key = "hello"
text = "Hello {name}, you are {tier}."
"""


async def _until(check: Any, seconds: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not (value := check()):
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
    return value


async def test_topics_canned_reply_from_the_holder_and_a_transfer_without_a_copy(
    env: Env,
) -> None:
    api = env.api
    api.make_forum(GROUP)
    env.policy_file(TOPICS)
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BOB, "Bob", online=True)
    await env.add_customer(external_id="V-9", name="Vera", tier="VIP", telegram_id=VERA)
    await env.bot.start()

    api.user_message(VERA, "Hello, my order is late")
    [topic] = await _until(lambda: api.topics_of(GROUP))
    thread = topic.message_thread_id

    def in_topic(since: int = 0) -> list[str]:
        return [
            _plain(m.get("text") or m.get("caption"))
            for m in api.messages_in(GROUP)[since:]
            if m.get("message_thread_id") == thread
        ]

    notice = await _until(
        lambda: next(
            (m for m in api.messages_in(GROUP)
             if m.get("message_thread_id") == thread and m.get("reply_markup")),
            None,
        )
    )  # fmt: skip
    data = notice["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    api.press_in(GROUP, ANN, notice["message_id"], data)
    await _until(lambda: any(t == "Hello, my order is late" for t in in_topic()))

    # /r in the topic, from the holder: the customer gets the reply, filled.
    api.group_message(GROUP, ANN, "/r hello", thread_id=thread)
    await _until(
        lambda: any(m.get("text") == "Hello Vera, you are VIP." for m in api.messages_in(VERA))
    )
    # From an agent who does not hold the chat: nothing reaches the customer.
    before = len(api.messages_in(VERA))
    api.group_message(GROUP, BOB, "/r hello", thread_id=thread)
    await _until(lambda: any("Ann holds this chat" in t for t in in_topic()))
    await api.wait_idle()
    assert len(api.messages_in(VERA)) == before

    # A transfer in the topic: Bob is told the conversation is above, not sent it again.
    seen = len(api.messages_in(GROUP))
    api.group_message(GROUP, ANN, "/transfer Bob", thread_id=thread)
    await _until(lambda: any("above, in this topic" in t for t in in_topic(seen)))
    await api.wait_idle()
    after = in_topic(seen)
    assert not any(t.startswith(("Customer ", "Agent ")) for t in after), after
    assert any("Hello Vera, you are VIP." in t for t in in_topic()), "the reply is in the topic"
