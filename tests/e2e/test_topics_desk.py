"""Topics mode end to end, the desk's service in the forum group: SLA marks in topic names,
offers by mention, the agent commands in a customer's topic without addressing, the card
once per chat, a customer's edit in their topic; and the whole desk (two agents, five
customers of every tier, capacity, the VIP manager window, notes, a restart, a survey)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from routing.queue.agents import add_agent
from routing.store.models import Conversation
from tests.e2e.conftest import Env
from tests.fakes.bot_api import FakeBotAPI, Message

GROUP = -1001000000002
ANN, BEN, SUE = 9201, 9202, 9203  # agents; Sue is a supervisor
VERA, WALT = 7201, 7202  # VIP customers
TOPICS = f'[desk]\nmode = "topics"\ngroup_id = {GROUP}\n[queue]\nsweep_seconds = 0.3\n'
CARD = "12-month spend"  # a line every customer card has


async def until(check: Any, seconds: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        value = check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def in_thread(api: FakeBotAPI, thread: int) -> list[Message]:
    return [m for m in api.messages_in(GROUP) if m.get("message_thread_id") == thread]


def topic_of(api: FakeBotAPI, name: str) -> int:
    """The thread of the topic whose name (SLA mark aside) names this customer."""
    return next(t.message_thread_id for t in api.topics_of(GROUP) if name in t.name)


async def claim_notice(api: FakeBotAPI, thread: int) -> Message:
    return await until(lambda: next((m for m in in_thread(api, thread) if m.get("reply_markup")),
                                    None))  # fmt: skip


def first_button(message: Message) -> str:
    return str(message["reply_markup"]["inline_keyboard"][0][0]["callback_data"])


async def holder(env: Env, customer_tg: int) -> int | None:
    """The telegram id of the agent holding the customer's open chat."""

    async def work(s: Any) -> int | None:
        from routing.store.models import Agent, Customer

        row = (
            await s.execute(
                select(Agent.telegram_id)
                .join(Conversation, Conversation.agent_id == Agent.id)
                .join(Customer, Customer.id == Conversation.customer_id)
                .where(Customer.telegram_id == customer_tg, Conversation.status == "assigned")
            )
        ).scalar_one_or_none()
        return int(row) if row is not None else None

    result: int | None = await env.query(work)
    return result


async def test_sla_marks_card_once_and_a_customer_edit_in_the_topic(
    env: Env, api: FakeBotAPI
) -> None:
    t0 = datetime.now(UTC)
    env.use_clock(t0)
    api.make_forum(GROUP)
    env.policy_file(TOPICS)
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BEN, "Ben", online=True)
    await env.add_customer(external_id="V-1", name="Vera", tier="VIP", telegram_id=VERA)
    await env.add_customer(external_id="V-2", name="Walt", tier="VIP", telegram_id=WALT)
    await env.bot.start()

    api.user_message(VERA, "Where is my order?")
    api.user_message(WALT, "Hello")
    await until(lambda: len(api.topics_of(GROUP)) == 2)
    vera, walt = topic_of(api, "Vera"), topic_of(api, "Walt")
    walt_notice = await claim_notice(api, walt)
    await claim_notice(api, vera)

    # 50 s of VIP's 60 s first-response target: a warning, shown in both names.
    env.set_clock(t0 + timedelta(seconds=50))
    await until(lambda: all(t.name.startswith("⚠ ") for t in api.topics_of(GROUP)))
    assert api.topic(GROUP, vera).name == "⚠ VIP · Vera · #V-1"

    # Ann takes Walt's chat: the wait is over, the warning goes. The card is in the topic
    # once (posted when the chat was queued; the hand-over does not repeat it).
    api.press_in(GROUP, ANN, walt_notice["message_id"], first_button(walt_notice))
    await until(lambda: api.topic(GROUP, walt).name == "VIP · Walt · #V-2")
    await until(lambda: any(m.get("text") == "Hello" for m in in_thread(api, walt)))
    await api.wait_idle()
    cards = [m for m in in_thread(api, walt) if CARD in (m.get("text") or "")]
    assert len(cards) == 1, [m.get("text") for m in in_thread(api, walt)]
    api.group_message(GROUP, ANN, "Hi Walt, how can I help?", thread_id=walt)
    await until(lambda: any(m.get("text") == "Hi Walt, how can I help?"
                            for m in api.messages_in(WALT)))  # fmt: skip

    # 70 s: Vera's chat missed its target, her topic says so; Walt was answered in time.
    env.set_clock(t0 + timedelta(seconds=70))
    await until(lambda: api.topic(GROUP, vera).name == "⛔ VIP · Vera · #V-1")
    await api.wait_idle()
    assert api.topic(GROUP, walt).name == "VIP · Walt · #V-2"
    assert not any(n.startswith("⛔") for n in api.topic(GROUP, walt).renames)

    # Walt edits his message: the notice is in his topic (by its thread id).
    hello = next(m for m in api.messages_in(WALT) if m.get("text") == "Hello")
    api.edit_user_message(WALT, hello["message_id"], "Hello there")
    edited = await until(lambda: next(
        (m for m in api.messages_in(GROUP) if "Hello there" in (m.get("text") or "")), None
    ))  # fmt: skip
    assert edited.get("message_thread_id") == walt, edited

    # Ben takes Vera's chat: a breach stays on the name (it happened); closing clears it.
    vera_notice = await claim_notice(api, vera)
    api.press_in(GROUP, BEN, vera_notice["message_id"], first_button(vera_notice))
    await until(lambda: any(m.get("text") == "Where is my order?" for m in in_thread(api, vera)))
    await api.wait_idle()
    assert api.topic(GROUP, vera).name == "⛔ VIP · Vera · #V-1"
    api.group_message(GROUP, BEN, "/close", thread_id=vera)
    await until(lambda: api.topic(GROUP, vera).closed)
    assert api.topic(GROUP, vera).name == "VIP · Vera · #V-1"


async def test_offer_mode_offers_by_mention_in_the_group(env: Env, api: FakeBotAPI) -> None:
    api.make_forum(GROUP)
    env.policy_file(TOPICS + 'routing_mode = "offer"\noffer_timeout_seconds = 60\n')
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BEN, "Ben", online=True)
    await env.add_customer(external_id="V-1", name="Vera", tier="VIP", telegram_id=VERA)
    await env.bot.start()

    api.user_message(VERA, "Where is my order?")
    offer = await api.wait_for("sendMessage", chat_id=GROUP, text_contains="is offered to you",
                               timeout=30)  # fmt: skip
    # In the queue view's thread (General here), naming its agent by a mention.
    assert not offer.params.get("message_thread_id")
    chosen = ANN if f"tg://user?id={ANN}" in (offer.text or "") else BEN
    other = BEN if chosen == ANN else ANN
    assert f"tg://user?id={chosen}" in (offer.text or "")
    assert "Vera" in (offer.text or "")
    # Only in the group: no private offers.
    assert not [c for c in api.calls_of("sendMessage") if c.chat_id in (ANN, BEN)]

    # The other agent's press does not take it; the chosen agent's Accept does.
    msg_id = int(offer.result["message_id"])
    accept = first_button(api.message(GROUP, msg_id))
    api.press_in(GROUP, other, msg_id, accept)
    await api.wait_idle()
    assert await holder(env, VERA) is None
    api.press_in(GROUP, chosen, msg_id, accept)
    thread = topic_of(api, "Vera")
    await until(lambda: any(m.get("text") == "Where is my order?" for m in in_thread(api, thread)))
    assert await holder(env, VERA) == chosen
    # The offer message now says who took the chat.
    await until(lambda: "taken by" in (api.message(GROUP, msg_id).get("text") or ""))


async def test_agent_commands_in_a_topic_without_addressing(env: Env, api: FakeBotAPI) -> None:
    api.make_forum(GROUP)
    env.policy_file(TOPICS)
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BEN, "Ben", online=True)

    async def supervisor(s: Any) -> None:
        sue, _ = await add_agent(s, SUE, "Sue", role="supervisor", max_chats=5, now=env.now)
        sue.online = True

    await env.seed(supervisor)
    await env.add_customer(external_id="V-1", name="Vera", tier="VIP", telegram_id=VERA)
    await env.bot.start()

    api.user_message(VERA, "My parcel is damaged")
    await until(lambda: api.topics_of(GROUP))
    thread = topic_of(api, "Vera")
    notice = await claim_notice(api, thread)
    api.press_in(GROUP, ANN, notice["message_id"], first_button(notice))
    await until(
        lambda: any(m.get("text") == "My parcel is damaged" for m in in_thread(api, thread))
    )

    def said(needle: str) -> Any:
        return until(lambda: next(
            (m for m in in_thread(api, thread) if needle in (m.get("text") or "")), None
        ))  # fmt: skip

    # Ben does not hold the chat: his /complaint opens nothing.
    api.group_message(GROUP, BEN, "/complaint delivery", thread_id=thread)
    await said("Ann holds this chat")
    # Ann's /complaint, /remedy: on the topic's chat, answered in the topic.
    api.group_message(GROUP, ANN, "/complaint delivery box crushed", thread_id=thread)
    await said("Complaint #1 (delivery) opened")
    await until(lambda: any("case #1" in (m.get("text") or "") for m in api.messages_in(VERA)))
    api.group_message(GROUP, ANN, "/remedy replacement", thread_id=thread)
    await said("Remedy recorded on complaint #1: replacement")

    # /transfer Ben: the chat is Ben's, the customer is told.
    api.group_message(GROUP, ANN, "/transfer Ben needs a courier call", thread_id=thread)
    await until(lambda: any("transferred to Ben" in (m.get("text") or "")
                            for m in api.messages_in(VERA)))  # fmt: skip
    assert await holder(env, VERA) == BEN
    await said("Transferred by Ann")
    # Ben answers; then Sue (supervisor) takes over and closes it.
    api.group_message(GROUP, BEN, "A courier comes tomorrow", thread_id=thread)
    await until(lambda: any(m.get("text") == "A courier comes tomorrow"
                            for m in api.messages_in(VERA)))  # fmt: skip
    api.group_message(GROUP, SUE, "/takeover", thread_id=thread)
    await said("Sue took over this chat")
    assert await holder(env, VERA) == SUE
    api.group_message(GROUP, SUE, "/close", thread_id=thread)
    await until(lambda: api.topic(GROUP, thread).closed)
    await until(lambda: any("has been closed" in (m.get("text") or "")
                            for m in api.messages_in(VERA)))  # fmt: skip
    assert await holder(env, VERA) is None


# --- the whole desk in a forum group --------------------------------------------------------

ANN2, BEN2 = 9301, 9302
VERA2, VICTOR, ALICE, BORIS, CLEO = 7301, 7302, 7303, 7304, 7305
SECRETS = ("secret-code-123", "upset-xyz")


@pytest.mark.slow  # two bot starts: about a minute on a busy box
async def test_two_agents_five_customers_of_every_tier_in_topics(env: Env, api: FakeBotAPI) -> None:
    """Claims in topics with capacity and the VIP manager window, notes that never reach a
    customer, a restart in the middle, a survey after a close."""
    # Noon: a survey is not held back by the quiet hours.
    env.use_clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    api.make_forum(GROUP)
    env.policy_file(TOPICS + "[surveys]\nsweep_seconds = 0.5\n[surveys.csat]\ndelay_seconds = 0\n")

    async def agents(s: Any) -> None:
        for tg, name in ((ANN2, "Ann"), (BEN2, "Ben")):
            agent, _ = await add_agent(s, tg, name, max_chats=2, now=env.now)
            agent.online = True

    await env.seed(agents)
    for ext, name, tier, tg, manager in (
        ("V-1", "Vera", "VIP", VERA2, "Ben"),
        ("V-2", "Victor", "VIP", VICTOR, None),
        ("A-1", "Alice", "A", ALICE, None),
        ("B-1", "Boris", "B", BORIS, None),
        ("C-1", "Cleo", "C", CLEO, None),
    ):
        await env.add_customer(external_id=ext, name=name, tier=tier, telegram_id=tg,
                               account_manager=manager)  # fmt: skip
    await env.bot.start()

    async def press(agent: int, who: str) -> str:
        """``agent`` presses Claim in ``who``'s topic; returns the answer's text."""
        notice = await claim_notice(api, topic_of(api, who))
        mark = api.mark()
        qid = api.press_in(GROUP, agent, notice["message_id"], first_button(notice))
        answer = await api.wait_for(
            "answerCallbackQuery", since=mark, timeout=20,
            predicate=lambda c: c.params.get("callback_query_id") == qid,
        )  # fmt: skip
        return str(answer.params.get("text") or "")

    async def arrives(who: str, text: str) -> None:
        thread = topic_of(api, who)
        await until(lambda: any(m.get("text") == text for m in in_thread(api, thread)))

    def got(customer: int, needle: str) -> bool:
        return any(needle in (m.get("text") or "") for m in api.messages_in(customer))

    # Vera (VIP) waits for her account manager Ben alone: named in her topic, Ann refused.
    api.user_message(VERA2, "Vera here")
    await until(lambda: any("Vera" in t.name for t in api.topics_of(GROUP)))
    page = await api.wait_for("sendMessage", chat_id=GROUP, text_contains="your account customer",
                              timeout=20)  # fmt: skip
    assert f"tg://user?id={BEN2}" in (page.text or "")
    assert page.params.get("message_thread_id") == topic_of(api, "Vera")
    assert "own agent" in await press(ANN2, "Vera")
    await press(BEN2, "Vera")
    await arrives("Vera", "Vera here")

    # Victor (VIP, no manager) goes to anyone: Ann. Alice (A) asks for a person after
    # self-service: Ann again, who is then at her capacity of two.
    api.user_message(VICTOR, "Victor here")
    await until(lambda: any("Victor" in t.name for t in api.topics_of(GROUP)))
    await press(ANN2, "Victor")
    await arrives("Victor", "Victor here")
    await env.say(ALICE, "where is my refund")
    await env.say(ALICE, "/human")
    await until(lambda: any("Alice" in t.name for t in api.topics_of(GROUP)))
    await press(ANN2, "Alice")
    await env.say(BORIS, "/human")
    await env.say(CLEO, "/human")
    await until(lambda: len(api.topics_of(GROUP)) == 5)
    assert "maximum" in await press(ANN2, "Boris")
    await press(BEN2, "Boris")
    assert "maximum" in await press(BEN2, "Cleo")
    assert await holder(env, BORIS) == BEN2 and await holder(env, CLEO) is None

    # Notes in Victor's topic stay there; a reply reaches him.
    victor = topic_of(api, "Victor")
    api.group_message(GROUP, ANN2, f"/note {SECRETS[0]}", thread_id=victor)
    api.group_message(GROUP, ANN2, f"#vip {SECRETS[1]}", thread_id=victor)
    api.group_message(GROUP, ANN2, "Hello Victor", thread_id=victor)
    await until(lambda: got(VICTOR, "Hello Victor"))

    # A restart in the middle: topics reused, messages flow both ways.
    await env.bot.stop()
    await env.bot.start()
    api.user_message(ALICE, "still there?")
    await arrives("Alice", "still there?")
    api.group_message(GROUP, ANN2, "Yes, Alice", thread_id=topic_of(api, "Alice"))
    await until(lambda: got(ALICE, "Yes, Alice"))

    # Ann closes Victor's chat: he is asked for his rating; Ann has room for Cleo now.
    api.group_message(GROUP, ANN2, "/close", thread_id=victor)
    await until(lambda: api.topic(GROUP, victor).closed)
    await until(lambda: got(VICTOR, "How satisfied were you"), seconds=30)
    await press(ANN2, "Cleo")
    assert await holder(env, CLEO) == ANN2

    # Ben closes Vera's chat in her topic, then Boris's from his private chat with the bot
    # (his only chat then): Boris's topic closes too, as if /close had been said there.
    vera = topic_of(api, "Vera")
    api.group_message(GROUP, BEN2, "/close", thread_id=vera)
    await until(lambda: api.topic(GROUP, vera).closed)
    boris = topic_of(api, "Boris")
    await env.say(BEN2, "/close")
    await until(lambda: api.topic(GROUP, boris).closed)

    await api.wait_idle()
    assert len(api.topics_of(GROUP)) == 5
    names = sorted(t.name for t in api.topics_of(GROUP))
    assert names == ["A · Alice · #A-1", "B · Boris · #B-1", "C · Cleo · #C-1",
                     "VIP · Vera · #V-1", "VIP · Victor · #V-2"], names  # fmt: skip
    for customer in (VERA2, VICTOR, ALICE, BORIS, CLEO):
        seen = [m.get("text") or m.get("caption") or "" for m in api.messages_in(customer)]
        assert not any(s in t for s in SECRETS for t in seen), seen
