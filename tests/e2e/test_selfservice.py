"""Self-service end to end: the menu tree, own-data actions, search, hand-off, hours, language."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from routing.store.models import Conversation, Order, SelfServiceSession
from tests.e2e.conftest import ROOT, Env, buttons

BETH, CARL, GUEST = 701, 702, 801
CORA, ZHAO, BOB = 711, 712, 9001


async def _orders(env: Env) -> None:
    async def work(s: Any) -> None:
        for oid, ext, status, day in (
            ("A-1001", "B-1", "shipped", 3),
            ("A-1002", "B-1", "delivered", 1),
            ("Z-9001", "B-2", "processing", 2),
        ):
            s.add(
                Order(
                    order_id=oid,
                    external_id=ext,
                    amount_cents=12_345,
                    category="shoes",
                    ordered_at=datetime(2026, 11, day, tzinfo=UTC),
                    status=status,
                )
            )

    await env.seed(work)


def _labels(call: Any) -> list[str]:
    return [t for t, _ in buttons(call)]


async def test_menu_tree_back_and_home_own_orders_only_and_guest_language(env: Env) -> None:
    await env.add_customer(
        external_id="B-1", name="Beth", tier="B", telegram_id=BETH, language="en"
    )
    await env.add_customer(
        external_id="B-2", name="Carl", tier="B", telegram_id=CARL, language="en"
    )
    await _orders(env)
    # The shipped example with its commented-out link and image switched on.
    example = (ROOT / "contactbot.example.toml").read_text(encoding="utf-8")
    env.policy_file(example.replace("# link = ", "link = ").replace("# image = ", "image = "))
    await env.bot.start()
    api = env.api

    main = await env.say(BETH, "hi")
    assert "Orders and delivery" in _labels(main) and "Opening hours" in _labels(main)
    # An answer with an image and a link: a photo captioned with the answer, a More button.
    mark = await env.press(BETH, main, "Opening hours")
    photo = await api.wait_for("sendPhoto", chat_id=BETH, since=mark)
    assert photo.params["photo"] == "https://example.com/hours.png"
    assert "24/7" in str(photo.params["caption"])
    more = photo.params["reply_markup"]["inline_keyboard"][0][0]
    assert more["url"] == "https://example.com/contact"
    # Into a submenu, an answer, Back to the submenu, Main menu home.
    mark = await env.press(BETH, main, "Orders and delivery")
    orders = await api.wait_for("sendMessage", chat_id=BETH, since=mark)
    assert "My recent orders" in _labels(orders) and "Back" not in " ".join(_labels(orders))
    mark = await env.press(BETH, orders, "Delivery times")
    answer = await api.wait_for("sendMessage", chat_id=BETH, since=mark)
    assert "3-5 days" in (answer.text or "")
    assert {"👍 Yes, thanks", "👎 No", "⬅️ Back", "🏠 Main menu"} <= set(_labels(answer))
    mark = await env.press(BETH, answer, "Back")
    back = await api.wait_for("sendMessage", chat_id=BETH, since=mark)
    assert _labels(back) == _labels(orders)
    mark = await env.press(BETH, back, "Main menu")
    home = await api.wait_for("sendMessage", chat_id=BETH, since=mark)
    assert _labels(home) == _labels(main)

    # My orders: Beth's two orders, newest (Nov 3) first, never Carl's.
    mark = await env.press(BETH, orders, "My recent orders")
    mine = await api.wait_for("sendMessage", chat_id=BETH, since=mark)
    text = mine.text or ""
    assert text.index("A-1001") < text.index("A-1002") and "delivered" in text
    assert "Z-9001" not in text and "processing" not in text
    # Order status: Carl's order id reads exactly like a missing one; her own is answered.
    mark = await env.press(BETH, orders, "Status of an order")
    await api.wait_for("sendMessage", chat_id=BETH, since=mark, text_contains="order number")
    refused = await env.say(BETH, "Z-9001")
    assert "could not find an order Z-9001" in (refused.text or "")
    assert "processing" not in (refused.text or "")
    unknown = await env.say(BETH, "NOPE-1")
    assert (unknown.text or "").replace("NOPE-1", "Z-9001") == refused.text
    own = await env.say(BETH, "#A-1001")
    assert "A-1001" in (own.text or "") and "shipped" in (own.text or "")

    # A guest's language follows Telegram's language_code, message by message.
    zh = await env.say(GUEST, "/menu", language_code="zh-CN")
    assert "您好" in (zh.text or "") and "🙋 联系人工客服" in _labels(zh)
    en = await env.say(GUEST, "/menu", language_code="en-GB")
    assert "Hello!" in (en.text or "") and "🙋 Talk to a person" in _labels(en)
    # Guests have no orders: asked to identify instead.
    mark = await env.press(GUEST, en, "Orders and delivery")
    guest_orders = await api.wait_for("sendMessage", chat_id=GUEST, since=mark)
    mark = await env.press(GUEST, guest_orders, "My recent orders")
    await api.wait_for("sendMessage", chat_id=GUEST, since=mark, text_contains="/start")


POLICY = """
[selfservice.tiers.C]
human = "after_selfservice"
hours = ["mon-fri 09:00-18:00"]
timezone = "Europe/Berlin"
benefits = { en = "Self-service any time.", zh_Hans = "随时自助服务。" }
"""


async def test_search_feedback_handoff_out_of_hours_and_deflection(env: Env) -> None:
    env.policy_file(POLICY)
    # Saturday: the C tier's team is away.
    env.use_clock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    await env.add_customer(
        external_id="C-1", name="Cora", tier="C", telegram_id=CORA, language="en"
    )
    await env.add_customer(
        external_id="C-2", name="Zhao", tier="C", telegram_id=ZHAO, language="zh-CN"
    )
    await env.add_agent(BOB, "Bob", online=True)

    async def supervisor(s: Any) -> None:
        from routing.store.models import Agent

        agent = (await s.execute(select(Agent).where(Agent.telegram_id == BOB))).scalar_one()
        agent.role = "supervisor"

    await env.seed(supervisor)
    await env.bot.start()
    api = env.api

    # C reaches a person only after self-service: /human first gets the menu.
    mark = api.mark()
    early = await env.say(CORA, "/human")
    assert "try the answers below first" in (early.text or "")
    menu = await api.wait_for("sendMessage", chat_id=CORA, since=mark, text_contains="Hello!")
    assert "Opening hours" in _labels(menu) and "🙋 Talk to a person" not in _labels(menu)
    assert await _convs(env) == []

    # Free text with a typo finds the answer; "no" offers the next best and the hand-off.
    found = await env.say(CORA, "when will my parcel arive?")
    assert "Delivery times" in (found.text or "") and "👎 No" in _labels(found)
    mark = await env.press(CORA, found, "No")
    nope = await api.wait_for("sendMessage", chat_id=CORA, since=mark)
    assert "did not help" in (nope.text or "")
    assert "🙋 Talk to a person" in _labels(nope) and "Delivery times" not in _labels(nope)
    # Out of hours: recorded in the queue, nobody paged, the customer told when we are back.
    mark = await env.press(CORA, nope, "Talk to a person")
    away = await api.wait_for("sendMessage", chat_id=CORA, since=mark)
    assert "away right now" in (away.text or "") and "mon-fri 09:00-18:00" in (away.text or "")
    await api.wait_idle()
    assert api.calls_of("sendMessage", chat_id=BOB) == []
    assert [(c.status, c.tier) for c in await _convs(env)] == [("queued", "C")]
    # The agent sees it when they come (back) online, with the customer's language.
    mark = api.mark()
    api.user_message(BOB, "/online")
    note = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Cora")
    assert "Language: English" in (note.text or "")

    # Monday: Chinese with a typo (收获 for 收货), answered in Chinese; "yes" resolves it.
    env.set_clock(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    zh = await env.say(ZHAO, "怎么修改收获地址", language_code="en")
    assert "修改地址" in (zh.text or "") and "👍 解决了，谢谢" in _labels(zh)
    mark = await env.press(ZHAO, zh, "解决了")
    await api.wait_for("sendMessage", chat_id=ZHAO, since=mark, text_contains="很高兴")

    async def sessions(s: Any) -> list[tuple[str | None, str | None]]:
        rows = await s.execute(select(SelfServiceSession).order_by(SelfServiceSession.id))
        return [(r.outcome, r.language) for r in rows.scalars()]

    assert await env.query(sessions) == [("handoff", "en"), ("resolved", "zh_Hans")]
    # Monday 10:00: Cora's chat, queued on Saturday, has breached its first-response target,
    # so the SLA sweep may page Bob (a supervisor) at any moment: wait for the stats reply
    # itself, not for the first message into his chat.
    mark = api.mark()
    api.user_message(BOB, "/stats")
    stats = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Self-service")
    assert "Self-service: 1 of 2 sessions ended without a person (50%)" in (stats.text or "")


async def _convs(env: Env) -> list[Conversation]:
    async def work(s: Any) -> list[Conversation]:
        return list((await s.execute(select(Conversation).order_by(Conversation.id))).scalars())

    result: list[Conversation] = await env.query(work)
    return result
