"""The queue in the real bot process: capacity, manager-first window, transfer with a note,
requeue on /offline; offer mode passing on a timed-out offer on the bot's own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from routing.queue.agents import add_agent
from routing.store.models import Agent, Conversation
from tests.e2e.conftest import Env, buttons

VIP_TG, B_TG = 601, 701
ANN, BOB, MIA = 9001, 9002, 9003


async def _agents(env: Env, *rows: tuple[int, str, int]) -> None:
    async def work(s: Any) -> None:
        for tg, name, cap in rows:
            agent, _ = await add_agent(s, tg, name, max_chats=cap, now=env.now)
            agent.online = True

    await env.seed(work)


async def _conv(env: Env) -> list[tuple[str, str | None]]:
    async def work(s: Any) -> list[tuple[str, str | None]]:
        rows = await s.execute(
            select(Conversation.status, Agent.name)
            .outerjoin(Agent, Agent.id == Conversation.agent_id)
            .order_by(Conversation.id)
        )
        return [(st, name) for st, name in rows.all()]

    result: list[tuple[str, str | None]] = await env.query(work)
    return result


async def test_window_capacity_transfer_and_offline_requeue(env: Env) -> None:
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    env.use_clock(t0)
    env.policy_file("[queue]\nsweep_seconds = 0.3\nmanager_window_seconds = 30\n")
    await env.add_customer(
        external_id="V-1", name="Victor", tier="VIP", telegram_id=VIP_TG, account_manager="Mia"
    )
    await env.add_customer(external_id="B-1", name="Beth", tier="B", telegram_id=B_TG)
    await _agents(env, (ANN, "Ann", 1), (BOB, "Bob", 3), (MIA, "Mia", 3))
    await env.bot.start()
    api = env.api

    # Manager-first: only Mia hears of Victor's chat, and Ann's /next cannot take it.
    mark = api.mark()
    api.user_message(VIP_TG, "my order is late")
    await api.wait_for("sendMessage", chat_id=MIA, since=mark, text_contains="Victor")
    nothing = await env.say(ANN, "/next")
    assert "queue is empty" in (nothing.text or "")
    assert not [c for c in api.sent_to(BOB) if "Victor" in (c.text or "")]
    # The window ends (bot clock + 31 s): the sweep pages everyone else.
    mark = api.mark()
    env.set_clock(t0 + timedelta(seconds=31))
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Victor")
    mark = api.mark()
    took = await env.say(ANN, "/next")
    assert "You took" in (took.text or "") and "Victor" in (took.text or "")
    # Victor's message, which waited for whoever would take the chat, follows the briefing
    # (awaited here: it is sent after the reply the next step reads).
    await api.wait_for("copyMessage", chat_id=ANN, since=mark)

    # Capacity: Ann (max 1) is refused the next chat with a clear message.
    await env.say(B_TG, "/human")
    full = await env.say(ANN, "/next")
    assert "your maximum" in (full.text or "")

    # Ann answers, then transfers Victor to Bob with a note: Bob sees the note and transcript.
    mark = api.mark()
    api.user_message(ANN, "Checking your order now")
    await api.wait_for("copyMessage", chat_id=VIP_TG, since=mark)
    mark = api.mark()
    api.user_message(ANN, "/transfer Bob courier issue, please call")
    await api.wait_for(
        "sendMessage", chat_id=BOB, since=mark, text_contains="Note: courier issue, please call"
    )
    await api.wait_for("sendMessage", chat_id=VIP_TG, since=mark, text_contains="Bob")
    await api.wait_idle()
    # The transcript so far, labelled: who said what, when (the bot's clock, in UTC).
    transcript = await api.wait_for(
        "sendMessage", chat_id=BOB, since=mark, text_contains="Customer 12:00: my order is late"
    )
    assert "Agent Ann 12:00: Checking your order now" in (transcript.text or "")
    assert await _conv(env) == [("assigned", "Bob"), ("queued", None)]

    # Bob goes offline: Victor's chat returns to the queue (first), and Victor is told.
    mark = api.mark()
    api.user_message(BOB, "/offline")
    await api.wait_for("sendMessage", chat_id=VIP_TG, since=mark, text_contains="back in the queue")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="went back")
    assert await _conv(env) == [("queued", None), ("queued", None)]
    q = await env.say(MIA, "/queue")
    assert "Victor" in buttons(q)[0][0] and "Beth" in buttons(q)[1][0]


async def test_offer_mode_timeout_passes_to_the_next_agent(env: Env) -> None:
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    env.use_clock(t0)
    env.policy_file(
        '[queue]\nrouting_mode = "offer"\noffer_timeout_seconds = 30\nsweep_seconds = 0.3\n'
    )
    await env.add_customer(external_id="B-1", name="Beth", tier="B", telegram_id=B_TG)
    await _agents(env, (ANN, "Ann", 3), (BOB, "Bob", 3))
    await env.bot.start()
    api = env.api

    mark = api.mark()
    api.user_message(B_TG, "/human")
    offer = await api.wait_for("sendMessage", chat_id=ANN, since=mark, text_contains="offered")
    assert [t for t, _ in buttons(offer)] == ["✅ Accept", "↪️ Pass"]
    # Ann lets it time out on the bot's clock: it goes to Bob, and Ann's offer says so.
    mark = api.mark()
    env.set_clock(t0 + timedelta(seconds=31))
    to_bob = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="offered")
    await api.wait_for("editMessageText", chat_id=ANN, since=mark, text_contains="timed out")
    mark = await env.press(BOB, to_bob, "Accept")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="You took")
    await api.wait_for("sendMessage", chat_id=B_TG, since=mark, text_contains="Bob has joined")
    assert await _conv(env) == [("assigned", "Bob")]
