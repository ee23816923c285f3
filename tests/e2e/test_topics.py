"""Topics mode end to end: the real bot against the fake Bot API's forum supergroup."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.e2e.conftest import ROOT, Env
from tests.fakes.bot_api import FakeBotAPI

GROUP = -1001000000001
ANN, BEN = 9001, 9002  # agents
VIP_TG, B_TG = 7001, 7002
TOPICS = f'[desk]\nmode = "topics"\ngroup_id = {GROUP}\n[queue]\nsweep_seconds = 0.3\n'


async def _until(check, seconds: float = 15.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        value = check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_topics_claim_relay_note_edit_close(env: Env, api: FakeBotAPI) -> None:
    api.make_forum(GROUP)
    env.policy_file(TOPICS)
    await env.add_agent(ANN, "Ann", online=True)
    await env.add_agent(BEN, "Ben", online=True)
    await env.add_customer(external_id="V-1", name="Vera", tier="VIP", telegram_id=VIP_TG)
    await env.bot.start()

    # A racing pair of first messages (the first creation answered with a 429): one topic.
    api.fail_next("createForumTopic", 429, retry_after=1)
    api.user_message(VIP_TG, "Hello, my order is late")
    api.user_message(VIP_TG, "It is #A-77")
    topics = await _until(lambda: api.topics_of(GROUP))
    await asyncio.sleep(1.0)
    assert len(api.topics_of(GROUP)) == 1
    topic = topics[0]
    assert topic.name == "VIP · Vera · #V-1"
    thread = topic.message_thread_id
    in_topic = lambda: [  # noqa: E731
        m for m in api.messages_in(GROUP) if m.get("message_thread_id") == thread
    ]
    notice = await _until(lambda: next((m for m in in_topic() if m.get("reply_markup")), None))
    # The card came first.
    assert "Vera" in in_topic()[1]["text"]

    # Ann claims in the group; the customer's messages follow in the topic.
    data = next(
        b["callback_data"] for row in notice["reply_markup"]["inline_keyboard"] for b in row
    )
    api.press_in(GROUP, ANN, notice["message_id"], data)
    try:
        await _until(lambda: any(m.get("text") == "It is #A-77" for m in in_topic()))
    except AssertionError:
        print("\n".join(c.summary() for c in api.calls[-30:]))
        print(env.bot.log()[-4000:])
        raise

    # Ben (not the holder) writes in the topic: nothing reaches the customer.
    before = len(api.messages_in(VIP_TG))
    api.group_message(GROUP, BEN, "I can help too", thread_id=thread)
    # A group member who is not an agent is ignored.
    api.group_message(GROUP, 5555, "spam", thread_id=thread)
    # Ann's note stays in the group.
    api.group_message(GROUP, ANN, "#customer sounds upset", thread_id=thread)
    api.group_message(GROUP, ANN, "/note refund approved", thread_id=thread)
    # Ann's reply reaches the customer.
    reply = api.group_message(GROUP, ANN, "Sorry Vera, checking now", thread_id=thread)
    # (copies carry no text parameter: read the customer's chat, as they see it)
    await _until(
        lambda: any(m.get("text") == "Sorry Vera, checking now" for m in api.messages_in(VIP_TG))
    )
    await api.wait_idle()
    texts_to_customer = [m.get("text") or "" for m in api.messages_in(VIP_TG)[before:]]
    assert not any("upset" in t or "refund" in t or "help too" in t or "spam" in t
                   for t in texts_to_customer), texts_to_customer  # fmt: skip

    # Ann edits her reply: the customer's copy changes.
    api.edit_user_message(GROUP, reply["message_id"], "Sorry Vera, checking with the courier")
    await _until(
        lambda: any(
            m.get("text") == "Sorry Vera, checking with the courier"
            for m in api.messages_in(VIP_TG)
        )
    )
    # The customer edits hers: shown in the topic.
    first = next(m for m in api.messages_in(VIP_TG) if m.get("text") == "It is #A-77")
    api.edit_user_message(VIP_TG, first["message_id"], "It is #A-78")
    await _until(lambda: any("#A-78" in (m.get("text") or "") for m in api.messages_in(GROUP)))

    # A restart in the middle: the topic is reused, nothing lost.
    await env.bot.stop()
    await env.bot.start()
    api.user_message(VIP_TG, "Any news?")
    await _until(lambda: any(m.get("text") == "Any news?" for m in in_topic()))
    assert len(api.topics_of(GROUP)) == 1

    # /close in the topic: the customer is told, the topic is closed.
    api.group_message(GROUP, ANN, "/close", thread_id=thread)
    await _until(lambda: api.topic(GROUP, thread).closed)


@pytest.mark.parametrize(
    ("forum", "needle"),
    [
        ({"is_forum": False}, "topics off"),
        ({"bot_status": "member"}, "not an administrator"),
        ({"can_manage_topics": False}, "right to manage topics"),
    ],
)
async def test_start_up_check_names_what_is_missing(
    env: Env, api: FakeBotAPI, forum: dict[str, object], needle: str
) -> None:
    api.make_forum(GROUP, **forum)  # type: ignore[arg-type]
    env.policy_file(TOPICS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env.bot.env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # Generous: the check is quick, but starting Python on a loaded CI box is not.
    _out, err = await asyncio.wait_for(proc.communicate(), 150)
    assert proc.returncode == 3, err.decode()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert needle in lines[0] and str(GROUP) in lines[0]
