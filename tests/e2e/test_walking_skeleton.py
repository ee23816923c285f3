"""A VIP's message reaches a human agent, end to end: real bot process, real HTTP, fake Telegram."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from routing.store.models import Agent, Conversation, Customer, Message, Survey
from tests.e2e.conftest import Env, buttons, message_id

VIP_TG, B_TG, B2_TG = 601, 701, 702
BOB, MIA = 9001, 9002


async def _customer(env: Env, external_id: str) -> Customer:
    async def work(s: Any) -> Customer:
        return (
            await s.execute(select(Customer).where(Customer.external_id == external_id))
        ).scalar_one()

    result: Customer = await env.query(work)
    return result


async def _conversations(env: Env) -> list[Conversation]:
    async def work(s: Any) -> list[Conversation]:
        return list((await s.execute(select(Conversation).order_by(Conversation.id))).scalars())

    result: list[Conversation] = await env.query(work)
    return result


async def test_identification_by_contact_and_refusal_of_a_foreign_contact(env: Env) -> None:
    await env.add_customer(external_id="C-1", name="Alice", phone="+12025550143", tier="B")
    # Customer codes are an opt-in (tests/integration/test_identity_bot.py: the default).
    env.policy_file("[identification]\nallow_code = true\n")
    await env.bot.start()

    ask = await env.say(501, "/start")
    assert "Share my phone number" in (ask.text or "")
    keyboard = ask.params["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True

    # Someone else's contact (Alice's number, but not the sender's own account) is refused.
    refused = await env.say(
        666, contact={"phone_number": "12025550143", "user_id": 501, "first_name": "Alice"}
    )
    assert "only accept your own phone number" in (refused.text or "")
    assert (await _customer(env, "C-1")).telegram_id is None

    # Telegram sends the number without "+": it is normalised and matched.
    ok = await env.say(
        501, contact={"phone_number": "12025550143", "user_id": 501, "first_name": "Alice"}
    )
    assert "Thank you, Alice" in (ok.text or "")
    assert (await _customer(env, "C-1")).telegram_id == 501

    # An unknown number: served as a guest at the lowest tier.
    guest = await env.say(
        502, contact={"phone_number": "12025550199", "user_id": 502, "first_name": "Zed"}
    )
    assert "serve you as a guest" in (guest.text or "")

    # A customer code links too.
    await env.add_customer(external_id="C-2", name="Carol", tier="C")
    await env.say(503, "/start")
    coded = await env.say(503, "C-2")
    assert "Thank you, Carol" in (coded.text or "")
    assert (await _customer(env, "C-2")).telegram_id == 503


async def test_vip_instant_queue_paging_claim_relay_and_close(env: Env) -> None:
    await env.add_customer(
        external_id="V-1", name="Victor", tier="VIP", telegram_id=VIP_TG, account_manager="Mia"
    )
    await env.add_agent(BOB, "Bob", online=True)
    await env.add_agent(MIA, "Mia", online=True)
    # Without the manager-first window (tests/e2e/test_queue.py covers it), everyone is paged.
    env.policy_file("[queue]\nmanager_window_seconds = 0\n")
    await env.bot.start()
    api = env.api

    # The VIP's very first message is a photo: straight into the human queue.
    mark = api.mark()
    api.user_message(VIP_TG, photo="VIP-PHOTO-1", caption="my order arrived broken")
    told = await api.wait_for("sendMessage", chat_id=VIP_TG, since=mark)
    assert "a person from our team is coming" in (told.text or "")
    mia_note = await api.wait_for("sendMessage", chat_id=MIA, since=mark)
    bob_note = await api.wait_for("sendMessage", chat_id=BOB, since=mark)
    # The account manager is paged first, then every other online agent.
    assert mia_note.index < bob_note.index
    for note in (mia_note, bob_note):
        assert "VIP" in (note.text or "") and "Victor" in (note.text or "")
        assert "my order arrived broken" in (note.text or "")
        assert buttons(note)[0][0].endswith("Claim")
    assert "your account customer" in (mia_note.text or "")

    # Bob claims: he gets the backlog (the photo itself), Mia's notification shows who took it.
    mark = await env.press(BOB, bob_note)
    copy = await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    assert copy.params["from_chat_id"] == VIP_TG
    edited = await api.wait_for(
        "editMessageText", chat_id=MIA, since=mark, text_contains="taken by Bob"
    )
    assert edited.params["message_id"] == message_id(mia_note)
    await api.wait_for("sendMessage", chat_id=VIP_TG, since=mark, text_contains="Bob has joined")
    # Mia presses late: told it is taken, nothing changes hands.
    mark = await env.press(MIA, mia_note)
    late = await api.wait_for("answerCallbackQuery", since=mark)
    assert "Already taken by Bob" in str(late.params.get("text"))

    # Relay both ways, with a photo each way.
    mark = api.mark()
    sent = api.user_message(VIP_TG, photo="VIP-PHOTO-2")
    fwd = await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    assert fwd.params["message_id"] == sent["message_id"]
    assert api.message(BOB, message_id(fwd))["photo"][-1]["file_id"] == "VIP-PHOTO-2"
    mark = api.mark()
    reply = api.user_message(BOB, photo="AGENT-PHOTO", caption="replacement label")
    back = await api.wait_for("copyMessage", chat_id=VIP_TG, since=mark)
    assert back.params["from_chat_id"] == BOB and back.params["message_id"] == reply["message_id"]
    assert api.message(VIP_TG, message_id(back))["photo"][-1]["file_id"] == "AGENT-PHOTO"
    mark = api.mark()
    api.user_message(BOB, "Sorry about that!")
    await api.wait_for("copyMessage", chat_id=VIP_TG, since=mark)

    # /close tells the customer and writes the CSAT row due 10 minutes later (the default).
    mark = api.mark()
    api.user_message(BOB, "/close")
    await api.wait_for("sendMessage", chat_id=VIP_TG, since=mark, text_contains="closed")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Closed chat")

    async def state(s: Any) -> tuple[Any, ...]:
        conv = (await s.execute(select(Conversation))).scalar_one()
        survey = (await s.execute(select(Survey))).scalar_one()
        msgs = list((await s.execute(select(Message).order_by(Message.id))).scalars())
        return conv, survey, msgs

    conv, survey, msgs = await env.query(state)
    assert conv.status == "closed" and conv.tier == "VIP" and conv.first_response_at is not None
    assert survey.kind == "csat" and survey.status == "scheduled"
    assert survey.due_at - conv.closed_at == timedelta(seconds=600)
    assert [(m.sender, m.content_type, m.file_id) for m in msgs] == [
        ("customer", "photo", "VIP-PHOTO-1"),
        ("customer", "photo", "VIP-PHOTO-2"),
        ("agent", "photo", "AGENT-PHOTO"),
        ("agent", "text", None),
    ]
    assert msgs[0].text == "my order arrived broken"


async def test_non_vip_self_service_then_human_queued_behind_vips(env: Env) -> None:
    await env.add_customer(external_id="B-1", name="Beth", tier="B", telegram_id=B_TG)
    await env.add_customer(external_id="V-1", name="Victor", tier="VIP", telegram_id=VIP_TG)
    await env.add_agent(BOB, "Bob")
    await env.bot.start()
    api = env.api

    # A non-VIP's message gets the self-service menu, not a person.
    menu = await env.say(B_TG, "hello?")
    labels = [t for t, _ in buttons(menu)]
    assert "Opening hours" in labels and any("Talk to a person" in t for t in labels)
    mark = await env.press(B_TG, menu, "Opening hours")
    answer = await api.wait_for("sendMessage", chat_id=B_TG, since=mark)
    assert "24/7" in (answer.text or "")
    assert await _conversations(env) == []

    # /human queues; nobody is online, and the customer is told so honestly.
    queued = await env.say(B_TG, "/human")
    assert "No agent is online" in (queued.text or "")
    # A VIP arriving later is still ahead in the queue.
    vip = await env.say(VIP_TG, "urgent")
    assert "No agent is online" in (vip.text or "")

    # The first agent to come online is shown both waiting chats.
    mark = api.mark()
    api.user_message(BOB, "/online")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Victor")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Beth")
    q = await env.say(BOB, "/queue")
    order = [t for t, _ in buttons(q)]
    assert "VIP" in order[0] and "Victor" in order[0] and "Beth" in order[1]
    # /next takes the VIP first although Beth asked earlier.
    for name in ("Victor", "Beth"):
        mark = api.mark()
        api.user_message(BOB, "/next")
        took = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="You took")
        assert name in (took.text or "")
        await api.wait_idle()
    empty = await env.say(BOB, "/next")
    assert "queue is empty" in (empty.text or "")


async def test_agent_with_several_chats_addresses_by_reply_or_focus(env: Env) -> None:
    await env.add_customer(external_id="B-1", name="Beth", tier="B", telegram_id=B_TG)
    await env.add_customer(external_id="B-2", name="Ben", tier="B", telegram_id=B2_TG)
    await env.add_agent(BOB, "Bob", online=True)
    await env.bot.start()
    api = env.api
    # Beth asks for a person with the menu's button, Ben with /human.
    menu = await env.say(B_TG, "hi")
    mark = await env.press(B_TG, menu, "Talk to a person")
    await api.wait_for(
        "sendMessage", chat_id=B_TG, since=mark, text_contains="number 1 in the queue"
    )
    await env.say(BOB, "/next")
    await env.say(B2_TG, "/human")
    await env.say(BOB, "/next")
    mark = api.mark()
    ben_msg = api.user_message(B2_TG, "where is my parcel?")
    relayed = await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    assert relayed.params["message_id"] == ben_msg["message_id"]

    # Two chats and no reply/focus: the message goes nowhere and the agent is asked.
    mark = api.mark()
    api.user_message(BOB, "on its way")
    asked = await api.wait_for("sendMessage", chat_id=BOB, since=mark)
    assert "did not send" in (asked.text or "")
    await api.wait_idle()
    assert api.calls_of("copyMessage", chat_id=B_TG) == []
    assert api.calls_of("copyMessage", chat_id=B2_TG) == []

    # Replying to Ben's relayed message addresses Ben.
    mark = api.mark()
    api.user_message(BOB, "on its way", reply_to_message_id=message_id(relayed))
    out = await api.wait_for("copyMessage", since=mark)
    assert out.params["chat_id"] == B2_TG

    # Focusing Beth from /chats addresses Beth from then on.
    chats = await env.say(BOB, "/chats")
    mark = await env.press(BOB, chats, "Beth")
    await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Focused")
    mark = api.mark()
    api.user_message(BOB, "hi Beth")
    out = await api.wait_for("copyMessage", since=mark)
    assert out.params["chat_id"] == B_TG
    # /close closes the focused chat only.
    mark = api.mark()
    api.user_message(BOB, "/close")
    await api.wait_for("sendMessage", chat_id=B_TG, since=mark, text_contains="closed")
    convs = await _conversations(env)
    assert [c.status for c in convs] == ["closed", "assigned"]


async def test_restart_after_sigkill_keeps_queued_and_assigned_chats(env: Env) -> None:
    await env.add_customer(external_id="V-1", name="Victor", tier="VIP", telegram_id=VIP_TG)
    await env.add_customer(external_id="B-1", name="Beth", tier="B", telegram_id=B_TG)
    await env.add_agent(BOB, "Bob", online=True)
    await env.bot.start()
    api = env.api
    # Beth gets an agent; then Bob goes offline and Victor queues with nobody there.
    await env.say(B_TG, "/human")
    await env.say(BOB, "/next")
    # Bob stops taking new chats but keeps Beth's (/offline would requeue it: issue 5).
    await env.seed(lambda s: s.execute(update(Agent).values(online=False)))
    told = await env.say(VIP_TG, "please call me")
    assert "No agent is online" in (told.text or "")

    await env.bot.kill()
    await env.bot.start()

    # The assigned chat continues: relay both ways.
    mark = api.mark()
    api.user_message(B_TG, "still there?")
    await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    mark = api.mark()
    api.user_message(BOB, "yes")
    await api.wait_for("copyMessage", chat_id=B_TG, since=mark)
    # The queued VIP chat is shown to the agent coming online, and can be claimed.
    mark = api.mark()
    api.user_message(BOB, "/online")
    note = await api.wait_for("sendMessage", chat_id=BOB, since=mark, text_contains="Victor")
    mark = await env.press(BOB, note)
    await api.wait_for("copyMessage", chat_id=BOB, since=mark)
    convs = await _conversations(env)
    assert [(c.status, c.tier) for c in convs] == [("assigned", "B"), ("assigned", "VIP")]


async def test_unknown_commands_get_help(env: Env) -> None:
    await env.add_agent(BOB, "Bob")
    await env.bot.start()
    customer = await env.say(555, "/frobnicate")
    assert "do not know that command" in (customer.text or "") and "/human" in (customer.text or "")
    agent = await env.say(BOB, "/frobnicate")
    assert "do not know that command" in (agent.text or "") and "/next" in (agent.text or "")
