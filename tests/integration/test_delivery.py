"""Every message delivered (issue 12): the per-chat delivery queue through the real
dispatcher and aiogram against the fake Bot API, in-process (no start-up: kicks and their
retry timers alone deliver)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiosqlite
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import select

from bot import texts
from bot.app import make_dispatcher
from bot.delivery import Deliverer
from bot.desk import Desk
from routing.delivery.sending import Backoff
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.store.models import Agent, Customer, Delivery
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import ANN, T0, VIPC, Harness, _detach_routers


async def _harness(db: Db, **fake: Any) -> AsyncIterator[Harness]:
    async with FakeBotAPI(**fake) as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        h = Harness(db, api, bot, None, Policy(), T0)  # type: ignore[arg-type]
        _detach_routers()
        h.dp = make_dispatcher(db.sessions, h.policy, bot, clock=h.clock)
        # A test's outage is seconds, not minutes: the same rule on a short scale.
        deliverer: Deliverer = h.dp["delivery"]
        deliverer.backoff = Backoff(base=0.05, cap=0.2, horizon=3600)
        async with db.sessions() as s, s.begin():
            a, _ = await add_agent(s, ANN, "Ann", role="agent", max_chats=3, now=T0)
            a.online = True
            s.add(Customer(external_id="V", name="Vera", tier="VIP", telegram_id=VIPC,
                           created_at=T0, updated_at=T0))  # fmt: skip
        try:
            yield h
        finally:
            await deliverer.stop(1.0)
            await bot.session.close()
            _detach_routers()


@pytest.fixture
async def h(db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(db):
        yield x


@pytest.fixture
async def h_rate(db: Db) -> AsyncIterator[Harness]:
    """Telegram's limit: one message per second per chat."""
    async for x in _harness(db, per_chat_rate=1):
        yield x


async def _until(check: Callable[[], bool], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for deliveries")
        await asyncio.sleep(0.05)


def _feed_one(h: Harness, raw: dict[str, Any]) -> Any:
    return h.dp.feed_update(h.bot, Update.model_validate(raw, context={"bot": h.bot}))


def copies(h: Harness, chat: int, from_chat: int) -> list[int]:
    """Source message ids copied into ``chat`` (successful calls, in call order)."""
    out: list[int] = []
    for c in h.api.calls:
        if not c.ok or c.chat_id != chat or c.params.get("from_chat_id") != from_chat:
            continue
        if c.method == "copyMessage":
            out.append(int(c.params["message_id"]))
        elif c.method == "copyMessages":
            out.extend(int(i) for i in c.params["message_ids"])
    return out


def agent_view(h: Harness) -> list[str]:
    """What Ann's chat received, in order: texts, and copies of the customer's messages."""
    out: list[str] = []
    for c in h.api.calls:
        if not c.ok or c.chat_id != ANN:
            continue
        if c.method == "sendMessage":
            out.append(c.text or "")
        elif c.method == "copyMessage":
            out.append(f"copy {c.params['message_id']}")
        elif c.method == "copyMessages":
            out.append(f"copies {c.params['message_ids']}")
    return out


async def _open_and_claim(h: Harness) -> list[int]:
    """The VIP customer writes, Ann takes the chat with /next. Returns the message ids."""
    first = h.api.user_message(VIPC, "hello, I need help")
    await h.feed()
    await h.say(ANN, "/next")
    await _until(lambda: copies(h, ANN, VIPC) == [first["message_id"]])
    return [first["message_id"]]


async def test_message_written_between_claim_and_hand_over_reaches_the_agent(
    h: Harness,
) -> None:
    first = h.api.user_message(VIPC, "hello, I need help")
    await h.feed()
    desk: Desk = h.dp["desk"]
    original = desk.hand_over
    during: list[int] = []

    async def hooked(*args: Any, **kwargs: Any) -> None:
        # The claim has committed; the customer writes before the hand-over runs.
        msg = h.api.user_message(VIPC, "are you there?")
        during.append(msg["message_id"])
        raw = h.api._pending.pop()
        await _feed_one(h, raw)
        await original(*args, **kwargs)

    desk.hand_over = hooked  # type: ignore[method-assign]
    await h.say(ANN, "/next")
    await _until(lambda: len(copies(h, ANN, VIPC)) >= 2)
    await h.api.wait_idle(quiet=0.3)
    view = agent_view(h)
    took = next(i for i, t in enumerate(view) if "You took" in t)
    assert view[took + 1 :] == [f"copy {first['message_id']}", f"copy {during[0]}"]
    assert copies(h, ANN, VIPC) == [first["message_id"], during[0]]


async def test_a_sweep_between_claim_and_hand_over_does_not_hold_the_briefing_back(
    h: Harness,
) -> None:
    """The deliverer's sweep can look at the chat while the claim's hold is in place: it puts
    the waiting message off for a recheck (5 s). The hand-over then queued the briefing, but
    the head message's later time held the whole line, briefing included, until the recheck
    (seen in the e2e queue test: Ann's briefing 5 s late, her transfer overtaking it)."""
    first = h.api.user_message(VIPC, "hello, I need help")
    await h.feed()
    desk: Desk = h.dp["desk"]
    original = desk.hand_over

    async def hooked(*args: Any, **kwargs: Any) -> None:
        assert desk.delivery is not None
        await desk.delivery.sweep()  # the claim has committed; the hold is in place
        await original(*args, **kwargs)

    desk.hand_over = hooked  # type: ignore[method-assign]
    await h.say(ANN, "/next")
    await _until(lambda: copies(h, ANN, VIPC) == [first["message_id"]], timeout=2.5)
    view = agent_view(h)
    took = next(i for i, t in enumerate(view) if "You took" in t)
    assert view[took + 1 :] == [f"copy {first['message_id']}"]


async def test_outage_then_every_relay_each_way_once_in_order(h: Harness) -> None:
    sent = await _open_and_claim(h)
    h.api.begin_outage(502)
    ours = []
    for i in range(3):
        ours.append(h.api.user_message(VIPC, f"customer line {i}")["message_id"])
        await h.feed()
        agent_msg = h.api.user_message(ANN, f"agent line {i}")
        await h.feed()
        ours.append(-agent_msg["message_id"])
    assert h.api.outage_calls("copyMessage")  # the relays were tried, and failed
    await asyncio.sleep(0.5)  # a few retries fail too
    h.api.end_outage()
    customer_lines = [m for m in ours if m > 0]
    agent_lines = [-m for m in ours if m < 0]
    await _until(
        lambda: (
            copies(h, ANN, VIPC) == sent + customer_lines and copies(h, VIPC, ANN) == agent_lines
        )
    )
    await h.api.wait_idle(quiet=0.5)
    assert copies(h, ANN, VIPC) == sent + customer_lines
    assert copies(h, VIPC, ANN) == agent_lines
    async with h.db.sessions() as s:
        statuses = set((await s.execute(select(Delivery.status))).scalars())
    assert statuses <= {"sent"}


async def test_album_under_flood_limit_arrives_as_one_album(h_rate: Harness) -> None:
    h = h_rate
    sent = await _open_and_claim(h)
    album = h.api.user_album(VIPC, 10)
    await h.feed()
    ids = [m["message_id"] for m in album]
    await _until(lambda: copies(h, ANN, VIPC) == sent + ids)
    await h.api.wait_idle(quiet=0.5)
    ok = [c for c in h.api.calls_of("copyMessages", chat_id=ANN) if c.ok]
    assert len(ok) == 1
    assert ok[0].params["message_ids"] == ids
    assert copies(h, ANN, VIPC) == sent + ids


async def test_quick_agent_lines_under_flood_limit_all_arrive_in_order(h_rate: Harness) -> None:
    h = h_rate
    await _open_and_claim(h)
    lines = [h.api.user_message(ANN, f"line {i}")["message_id"] for i in range(5)]
    await h.feed()
    await _until(lambda: copies(h, VIPC, ANN) == lines, timeout=20)
    await h.api.wait_idle(quiet=0.5)
    assert copies(h, VIPC, ANN) == lines
    blocked = texts.agent.blocked(1)
    assert [c.text for c in h.api.sent_to(ANN) if c.ok and blocked in (c.text or "")] == []


async def test_redelivered_customer_message_is_relayed_once(h: Harness) -> None:
    sent = await _open_and_claim(h)
    msg = h.api.user_message(VIPC, "only once please")
    raw = h.api._pending.pop()
    await _feed_one(h, raw)
    # The same Telegram message again (a redelivery after a crash, under a new update id).
    await _feed_one(h, {**raw, "update_id": raw["update_id"] + 10_000})
    await h.api.wait_idle(quiet=0.3)
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]


async def test_blocked_customer_tells_the_agent_once(h: Harness) -> None:
    await _open_and_claim(h)
    h.api.blocked.add(VIPC)
    await h.say(ANN, "first try")
    await h.say(ANN, "second try")
    await h.api.wait_idle(quiet=0.3)
    told = [c for c in h.api.sent_to(ANN) if c.ok and "blocked the bot" in (c.text or "")]
    assert len(told) == 1


async def test_order_holds_when_429_hits_the_middle_of_a_burst(h: Harness) -> None:
    sent = await _open_and_claim(h)
    lines = []
    for i in range(5):
        if i == 2:
            h.api.fail_next("copyMessage", 429, retry_after=1, chat_id=ANN)
        lines.append(h.api.user_message(VIPC, f"burst {i}")["message_id"])
        await h.feed()
    assert any(c.error_code == 429 for c in h.api.calls_of("copyMessage", chat_id=ANN))
    await _until(lambda: copies(h, ANN, VIPC) == sent + lines)
    await h.api.wait_idle(quiet=0.3)
    assert copies(h, ANN, VIPC) == sent + lines


async def test_a_send_cut_off_by_a_crash_is_sent_again_after_its_lease(h: Harness) -> None:
    """At-least-once: a row claimed by a process that died is sent once its lease ends."""
    sent = await _open_and_claim(h)
    deliverer: Deliverer = h.dp["delivery"]
    msg = h.api.user_message(VIPC, "cut off")
    h.api._pending.pop()  # the update itself was handled before the crash: only its row left
    async with h.db.sessions() as s, s.begin():
        conv = await h.conv(VIPC)
        now = deliverer.now()
        s.add(Delivery(conversation_id=conv.id, direction="to_agent", kind="copy",
                       from_chat_id=VIPC, message_ids=f"[{msg['message_id']}]",
                       link_kind="relay", status="sending", attempts=1,
                       next_at=now + timedelta(seconds=30), created_at=now))  # fmt: skip
    assert await deliverer.sweep() == 0  # the lease still holds
    async with h.db.sessions() as s, s.begin():
        row = (await s.execute(select(Delivery).where(Delivery.status == "sending"))).scalar_one()
        row.next_at = deliverer.now() - timedelta(seconds=1)  # the lease ended
    assert await deliverer.sweep() == 1
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]


async def test_a_row_sent_outside_any_update_makes_no_trip_to_the_drivers_thread(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep and retry timers run outside any update's handling; their claim, send and
    mark run on the loop thread like a handler's kick does (issue 19), not in hand-offs to
    aiosqlite's thread."""
    if h.db.backend != "sqlite":
        pytest.skip("the driver's thread is SQLite's (aiosqlite)")
    sent = await _open_and_claim(h)
    deliverer: Deliverer = h.dp["delivery"]
    msg = h.api.user_message(VIPC, "left for the sweep")
    h.api._pending.pop()
    async with h.db.sessions() as s, s.begin():
        conv = await h.conv(VIPC)
        now = deliverer.now()
        s.add(Delivery(conversation_id=conv.id, direction="to_agent", kind="copy",
                       from_chat_id=VIPC, message_ids=f"[{msg['message_id']}]",
                       link_kind="relay", status="pending", attempts=0,
                       next_at=now - timedelta(seconds=1), created_at=now))  # fmt: skip
    trips: list[str] = []
    real_execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real_execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    await asyncio.get_running_loop().create_task(deliverer.kick(conv.id))  # no update's context
    monkeypatch.undo()
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]
    assert trips == []


async def test_conversations_sharing_an_agent_chat_take_turns_after_a_429(
    h_rate: Harness,
) -> None:
    """Four chats with one agent under Telegram's one-message-a-second limit: after the first
    429 into the agent's chat, sends into it are paced instead of every conversation retrying
    on its own into new 429s (a storm that once made the bot fall minutes behind)."""
    h = h_rate
    customers = [VIPC + 100 + n for n in range(4)]
    async with h.db.sessions() as s, s.begin():
        agent = (await s.execute(select(Agent).where(Agent.telegram_id == ANN))).scalar_one()
        agent.max_chats = 10
        for tg in customers:
            s.add(Customer(external_id=f"P{tg}", name=f"P{tg}", tier="VIP", telegram_id=tg,
                           created_at=T0, updated_at=T0))  # fmt: skip
    firsts = {tg: h.api.user_message(tg, f"hello from {tg}")["message_id"] for tg in customers}
    await h.feed()
    for _ in customers:
        await h.say(ANN, "/next")
    await _until(lambda: all(copies(h, ANN, tg) == [firsts[tg]] for tg in customers), timeout=40)
    limited_before = h.api.count_429
    more = {tg: [h.api.user_message(tg, f"{tg} #{i}")["message_id"] for i in range(2)]
            for tg in customers}  # fmt: skip
    await h.feed()
    want = {tg: [firsts[tg], *more[tg]] for tg in customers}
    await _until(lambda: all(copies(h, ANN, tg) == want[tg] for tg in customers), timeout=60)
    # 8 relays (plus headers) into one chat: a handful of 429s, not one per try.
    assert h.api.count_429 - limited_before <= 5, h.api.count_429 - limited_before


async def test_a_drain_that_cancels_a_handler_mid_send_does_not_send_twice(h: Harness) -> None:
    """SIGTERM's drain cancels handlers still running at its bound. A relay whose copy
    Telegram had already taken, cancelled before its "sent" mark, was sent again when its
    lease ended (one duplicate in the scale-out benchmark). The send now finishes and is
    marked; stop() waits for it."""
    sent = await _open_and_claim(h)
    deliverer: Deliverer = h.dp["delivery"]
    deliverer.lease = 0.5
    original = deliverer._call
    answered = asyncio.Event()

    async def slow_answer(c: Any, *rest: Any) -> list[int]:
        ids = await original(c, *rest)  # Telegram has the copy
        answered.set()
        await asyncio.sleep(0.3)  # ... and its answer is still on its way
        return ids

    deliverer._call = slow_answer  # type: ignore[method-assign]
    msg = h.api.user_message(VIPC, "in flight at the drain")
    handler = asyncio.ensure_future(h.feed())
    # Bounded: should the send never be tried, fail here instead of hanging the suite.
    await asyncio.wait_for(answered.wait(), 30)
    handler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handler
    await deliverer.stop(5.0)
    await asyncio.sleep(0.6)  # past the lease
    assert await deliverer.sweep() == 0
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]
    async with h.db.sessions() as s:
        statuses = set((await s.execute(select(Delivery.status))).scalars())
    assert statuses <= {"sent"}


async def test_a_send_waiting_for_its_turn_at_stop_is_handed_back_not_called(
    h: Harness,
) -> None:
    """SIGTERM: stop() gave sends in flight 5 s, then the process closed its HTTP session and
    exited. A claimed row still waiting for its chat's turn (a paced agent chat holds a queue
    of them) called Telegram after that, and the copy arrived while its "sent" mark was cut
    off: it was sent again when its lease ended (one duplicate in the chaos benchmark). Now
    nothing is called after stop(): the row goes back, due at once, and the next start sends
    it exactly once."""
    sent = await _open_and_claim(h)
    deliverer: Deliverer = h.dp["delivery"]
    loop = asyncio.get_running_loop()
    msg = h.api.user_message(VIPC, "waiting for the chat's turn at the stop")
    async with deliverer.turns.turn(ANN):  # another send into Ann's chat is under way
        handler = asyncio.ensure_future(h.feed())
        await _until_async(lambda: _statuses(h), lambda got: "sending" in got)
        # ... and after it, Ann's chat takes the next message in 1.5 s (a pace after a
        # 429): within the wait a claim holds its row for.
        deliverer.turns.free_at[ANN] = deliverer.turns.clock() + 1.5
    began = loop.time()
    await deliverer.stop(0.2)
    stopped_in = loop.time() - began
    calls_at_stop = len(h.api.calls)
    await asyncio.sleep(2.0)  # past the turn the send was waiting for
    assert len(h.api.calls) == calls_at_stop, "a Telegram call after stop() returned"
    assert stopped_in < 1.0, stopped_in  # the wait ended with the stop, not at its turn
    handler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handler
    await _until_async(lambda: _statuses(h), lambda got: "sending" not in got)
    async with h.db.sessions() as s:
        row = (await s.execute(select(Delivery).order_by(Delivery.id.desc()))).scalars().first()
        assert row is not None
        assert (row.status, row.attempts, row.error) == ("pending", 0, "stopping")
    # The next start sends it, once.
    deliverer.start()
    await _until(lambda: copies(h, ANN, VIPC) == [*sent, msg["message_id"]])
    await asyncio.sleep(0.5)
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]


async def test_a_claim_that_waited_in_line_past_its_lease_is_not_sent_by_its_holder(
    h: Harness,
) -> None:
    """Two instances: a row claimed by one waits in line for its chat's turn (sends into a
    paced agent chat queue up) until its lease ends; the other instance then claims and
    sends it. The first, its turn come, sent it as well: the agent saw the message twice.
    A send that waited in line for half its lease hands the row back instead, and only if
    no other claim took it since."""
    sent = await _open_and_claim(h)
    a: Deliverer = h.dp["delivery"]
    a.lease = 1.0
    b = Deliverer(h.bot, h.db.sessions, lease=1.0)
    msg = h.api.user_message(VIPC, "claimed, then waiting in line")
    async with a.turns.turn(ANN):  # a's other sends into Ann's chat are under way
        handler = asyncio.ensure_future(h.feed())
        await _until_async(lambda: _statuses(h), lambda got: "sending" in got)
        await asyncio.sleep(1.2)  # a's claim has lapsed
        assert await b.sweep() == 1  # b takes the row and sends it
        await _until(lambda: copies(h, ANN, VIPC) == [*sent, msg["message_id"]])
    await asyncio.wait_for(handler, 15)  # a's send, its turn come
    await _until_async(lambda: _statuses(h), lambda got: got == {"sent"})
    await asyncio.sleep(0.3)
    assert copies(h, ANN, VIPC) == [*sent, msg["message_id"]]
    await b.stop(1.0)


async def _statuses(h: Harness) -> set[str]:
    # A session per read: on SQLite an open one would hold the pool's one connection.
    async with h.db.sessions() as s:
        return set((await s.execute(select(Delivery.status))).scalars())


async def _until_async(
    read: Callable[[], Any],
    check: Callable[[Any], bool],
    timeout: float = 15.0,  # noqa: ASYNC109
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(await read()):
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_a_header_names_the_chat_only_when_the_agent_switches_between_chats(
    h: Harness,
) -> None:
    """With one chat open, messages come bare; with two, a header says whose messages follow,
    once per switch, not before every message."""
    other = VIPC + 1
    async with h.db.sessions() as s, s.begin():
        s.add(Customer(external_id="W", name="Walt", tier="VIP", telegram_id=other,
                       created_at=T0, updated_at=T0))  # fmt: skip
    await _open_and_claim(h)  # Vera's chat, the only one: no header
    vera_2 = h.api.user_message(VIPC, "still there?")["message_id"]
    await h.feed()
    await _until(lambda: len(copies(h, ANN, VIPC)) == 2)
    assert not any(line.startswith("— ") for line in agent_view(h))

    walt_1 = h.api.user_message(other, "hi, Walt here")["message_id"]
    await h.feed()
    await h.say(ANN, "/next")
    await _until(lambda: copies(h, ANN, other) == [walt_1])
    start = len(agent_view(h))
    vera_3 = h.api.user_message(VIPC, "one more thing")["message_id"]
    vera_4 = h.api.user_message(VIPC, "and another")["message_id"]
    await h.feed()
    await _until(lambda: copies(h, ANN, VIPC)[-2:] == [vera_3, vera_4])
    walt_2 = h.api.user_message(other, "Walt again")["message_id"]
    await h.feed()
    await _until(lambda: copies(h, ANN, other)[-1:] == [walt_2])
    view = agent_view(h)[start:]
    headers = [line for line in view if line.startswith("— ")]
    # Vera's two lines under one header (Walt's chat was the last relayed), then Walt's.
    assert len(headers) == 2, view
    assert "Vera" in headers[0] and "Walt" in headers[1], headers
    assert view.index(headers[0]) < view.index(f"copy {vera_3}") < view.index(f"copy {vera_4}")
    assert view.index(f"copy {vera_4}") < view.index(headers[1]) < view.index(f"copy {walt_2}")
    assert vera_2 in copies(h, ANN, VIPC)


async def test_a_relays_claim_decides_its_header_unless_a_send_to_the_agent_came_between(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay's claim reads whether a header is due (the holder's last chat, how many they
    hold), so the send needs no read of its own; but when another send to the agent was
    marked after that claim read (two chats' relays claimed at once), the send reads it
    afresh: each message still comes under its own chat's header exactly when the agent
    switches chats."""
    from routing.delivery import enqueue
    from routing.queue import conversations
    from routing.store.models import TO_AGENT, Conversation

    other = VIPC + 1
    async with h.db.sessions() as s, s.begin():
        s.add(Customer(external_id="W", name="Walt", tier="VIP", telegram_id=other,
                       created_at=T0, updated_at=T0))  # fmt: skip
    await _open_and_claim(h)  # Vera's chat
    walt_1 = h.api.user_message(other, "hi, Walt here")["message_id"]
    await h.feed()
    await h.say(ANN, "/next")
    await _until(lambda: copies(h, ANN, other) == [walt_1])  # Walt's was relayed last
    reads: list[int] = []
    real = conversations.header_needed

    async def counted(engine: Any, agent_id: int, conversation_id: int) -> bool:
        reads.append(conversation_id)
        return await real(engine, agent_id, conversation_id)

    monkeypatch.setattr(conversations, "header_needed", counted)
    async with h.db.sessions() as s:
        chats = {c.customer_id: c.id for c in (await s.scalars(select(Conversation))).all()}
        ids = {c.telegram_id: c.id for c in (await s.scalars(select(Customer))).all()}
    vera_conv, walt_conv = chats[ids[VIPC]], chats[ids[other]]
    start = len(h.api.calls)
    vera_m = h.api.user_message(VIPC, "one more thing")["message_id"]
    walt_m = h.api.user_message(other, "and me")["message_id"]
    async with h.db.sessions() as s, s.begin():
        await enqueue.to_agent(s, vera_conv, from_chat_id=VIPC, message_id=vera_m, now=h.clock())
        await enqueue.to_agent(s, walt_conv, from_chat_id=other, message_id=walt_m,
                               now=h.clock())  # fmt: skip
    deliverer: Deliverer = h.dp["delivery"]
    await asyncio.gather(deliverer.kick(vera_conv, TO_AGENT), deliverer.kick(walt_conv, TO_AGENT))
    await _until(lambda: vera_m in copies(h, ANN, VIPC) and walt_m in copies(h, ANN, other))
    # What Ann's chat received since: headers, and whose messages (by the chat copied from).
    names = {VIPC: "Vera", other: "Walt"}
    view = [
        c.text or "" if c.method == "sendMessage" else names[c.params["from_chat_id"]]
        for c in h.api.calls[start:]
        if c.ok and c.chat_id == ANN and c.method in ("sendMessage", "copyMessage")
    ]
    assert sorted(v for v in view if v in ("Vera", "Walt")) == ["Vera", "Walt"], view
    last = "Walt"
    for i, line in enumerate(view):
        if line in ("Vera", "Walt"):
            switched = line != last
            header = view[i - 1] if i else ""
            assert header.startswith("— ") == switched, view
            assert not switched or line in header, view
            last = line
    # Both claims read the agent before either was sent: the second send's read was stale,
    # and it read afresh. The first's was not.
    assert len(reads) == 1, reads
    reads.clear()
    later = h.api.user_message(VIPC, "later, alone")["message_id"]
    await h.feed()
    await _until(lambda: later in copies(h, ANN, VIPC))
    assert reads == []  # decided by its claim's read


async def test_kicks_that_waited_for_a_drain_read_nothing_it_read_for_them(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five rows for one chat, each kicked (as five relays in a burst are): the first kick's
    drain sends all five in order; the four that waited for it read nothing, since a head
    read that began after they were asked for saw their rows. Before, each read the head
    once more and found it empty: a statement per relay, a round trip on PostgreSQL."""
    from routing.delivery import enqueue, sending
    from routing.store.models import TO_CUSTOMER, Conversation

    await _open_and_claim(h)
    # Messages in Ann's chat (known to the fake; not fed to the bot: queued here directly).
    lines = [h.api.user_message(ANN, f"line {i}")["message_id"] for i in range(6)]
    async with h.db.sessions() as s, s.begin():
        conv = (await s.scalars(select(Conversation))).one()
        for m in lines[:5]:
            await enqueue.to_customer(s, conv.id, VIPC, from_chat_id=ANN, message_id=m,
                                      now=h.clock())  # fmt: skip
    reads: list[str] = []
    deliverer: Deliverer = h.dp["delivery"]
    real = deliverer._claim  # every claim's read (PostgreSQL: with other chats' claims)

    async def counted(*a: Any, **kw: Any) -> sending.Head:
        head = await real(*a, **kw)
        reads.append("claimed" if head.claimed else "nothing")
        return head

    monkeypatch.setattr(deliverer, "_claim", counted)
    await asyncio.gather(*(deliverer.kick(conv.id, TO_CUSTOMER) for _ in range(5)))
    assert copies(h, VIPC, ANN) == lines[:5]
    assert reads == ["claimed"] * 5
    # A kick after the drain has ended reads again (it may be for a row queued since).
    async with h.db.sessions() as s, s.begin():
        await enqueue.to_customer(s, conv.id, VIPC, from_chat_id=ANN, message_id=lines[5],
                                  now=h.clock())  # fmt: skip
    await deliverer.kick(conv.id, TO_CUSTOMER)
    assert copies(h, VIPC, ANN) == lines and reads[-1] == "claimed"
