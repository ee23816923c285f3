"""Surveys through the real bot process: buttons, comments, switches, stats, and a SIGKILL
mid-campaign after which every due survey is still delivered exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from routing.policy.root import Policy
from routing.queue import conversations
from routing.store.models import Agent, Conversation, Customer, Survey
from tests.e2e.conftest import Env, buttons, message_id

NOON = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
FAST = """
[surveys]
sweep_seconds = 0.3
[surveys.nps]
campaigns = []
"""


async def _surveys(env: Env) -> dict[int, Survey]:
    async def work(s: Any) -> dict[int, Survey]:
        return {r.customer_id: r for r in (await s.execute(select(Survey))).scalars()}

    result: dict[int, Survey] = await env.query(work)
    return result


async def test_csat_buttons_comment_double_press_expiry_opt_out_and_stats(env: Env) -> None:
    api = env.api
    env.use_clock(NOON)
    env.policy_file(FAST)
    ann = await env.add_customer(external_id="A-1", name="Ann", tier="C", telegram_id=801)
    nora = await env.add_customer(external_id="N-1", name="Nora", tier="B", telegram_id=802)
    olaf = await env.add_customer(external_id="O-1", name="Olaf", tier="C", telegram_id=803)
    await env.add_agent(9100, "Sue")

    async def seed(s: Any) -> None:
        sue = (await s.execute(select(Agent))).scalar_one()
        sue.role = "supervisor"
        ann_c = await s.get(Customer, ann)
        conv = Conversation(
            customer_id=ann, status="assigned", tier="C", priority=3, origin="customer_request",
            queued_at=NOON - timedelta(hours=1), agent_id=sue.id,
        )  # fmt: skip
        s.add(conv)
        await s.flush()
        # Closed 10 minutes ago: its CSAT survey (delay 600 s) is due now.
        await conversations.close(s, conv, ann_c, Policy(), NOON - timedelta(seconds=600))
        for cid, due in ((nora, NOON), (olaf, NOON + timedelta(minutes=1))):
            s.add(
                Survey(
                    kind="nps", customer_id=cid, status="scheduled", due_at=due,
                    created_at=NOON, expires_at=NOON + timedelta(hours=72),
                )
            )  # fmt: skip

    await env.seed(seed)
    await env.bot.start()
    # Olaf opts out while his survey is pending: it is skipped at once, never sent.
    stop = await env.say(803, "/stop_surveys")
    assert "no more surveys" in (stop.text or "")
    env.set_clock(NOON + timedelta(minutes=2))

    csat = await api.wait_for("sendMessage", chat_id=801, text_contains="How satisfied")
    assert [t for t, _ in buttons(csat)] == ["1", "2", "3", "4", "5"]
    nps = await api.wait_for("sendMessage", chat_id=802, text_contains="recommend")
    assert [t for t, _ in buttons(nps)] == [str(n) for n in range(11)]

    # A score: thanked, the message asks for a comment with a Skip button.
    mark = await env.press(801, csat, "4")
    ack = await api.wait_for("answerCallbackQuery", since=mark)
    assert "4/5" in str(ack.params.get("text"))
    edit = await api.wait_for("editMessageText", chat_id=801, since=mark)
    assert "Anything you would like to add" in (edit.text or "")
    assert [t for t, _ in buttons(edit)] == ["Skip"]
    # Pressing again (the old keyboard, a double tap): answered politely, nothing changes.
    mark = await env.press(801, csat, "1")
    again = await api.wait_for("answerCallbackQuery", since=mark)
    assert "already answered" in str(again.params.get("text"))
    # The comment, as a plain message.
    done = await env.say(801, "Quick and friendly")
    assert "Thank you for your feedback" in (done.text or "")

    # Nora's NPS expires unanswered: a late press is answered politely.
    env.set_clock(NOON + timedelta(hours=73))
    mark = await env.press(802, nps, "9")
    late = await api.wait_for("answerCallbackQuery", since=mark)
    assert "closed" in str(late.params.get("text"))

    for _ in range(100):  # the next tick runs the expiry
        rows = await _surveys(env)
        if rows[nora].status == "expired":
            break
        await asyncio.sleep(0.05)
    assert (rows[ann].status, rows[ann].score, rows[ann].comment) == (
        "answered",
        4,
        "Quick and friendly",
    )
    assert rows[nora].status == "expired" and rows[nora].score is None
    assert (rows[olaf].status, rows[olaf].reason) == ("skipped", "opted out")
    assert api.sent_to(803) == [stop]  # nothing but the confirmation

    # The agent who handled the rated chat has the CSAT in the supervisor's /stats.
    stats = await env.say(9100, "/stats")
    assert "CSAT by agent" in (stats.text or "") and "Sue: 4.00 (1)" in (stats.text or "")

    async def customer(s: Any) -> Customer:
        return (await s.execute(select(Customer).where(Customer.id == ann))).scalar_one()

    c = await env.query(customer)
    assert c.satisfaction_answers == 1 and c.satisfaction is not None


async def test_a_detractor_is_paged_and_the_agent_who_claims_sees_the_answer(env: Env) -> None:
    api = env.api
    env.use_clock(NOON)
    env.policy_file(FAST)
    dora = await env.add_customer(external_id="D-1", name="Dora", tier="C", telegram_id=811)
    await env.add_agent(9200, "Zed", online=True)

    async def seed(s: Any) -> None:
        s.add(
            Survey(
                kind="nps", customer_id=dora, status="scheduled", due_at=NOON,
                created_at=NOON, expires_at=NOON + timedelta(hours=72),
            )
        )  # fmt: skip

    await env.seed(seed)
    await env.bot.start()
    nps = await api.wait_for("sendMessage", chat_id=811, text_contains="recommend")
    mark = await env.press(811, nps, "3")
    # A detractor: a service-recovery chat is queued and the online agent is paged.
    page = await api.wait_for("sendMessage", chat_id=9200, since=mark)
    assert "Survey answer: NPS 3" in (page.text or "")
    await api.wait_for("editMessageText", chat_id=811, since=mark)  # "anything to add?"
    comment = await env.say(811, "Nobody answered me for two days")
    assert "Thank you for your feedback" in (comment.text or "")

    # The agent who claims it gets the answer itself, then the customer's comment.
    mark = await env.press(9200, page)
    took = await api.wait_for("sendMessage", chat_id=9200, since=mark, text_contains="You took")
    note = await api.wait_for(
        "sendMessage", chat_id=9200, since=mark, text_contains="Survey answer: NPS 3"
    )
    copy = await api.wait_for("copyMessage", chat_id=9200, since=mark)
    assert copy.params["from_chat_id"] == 811
    assert took.index < note.index < copy.index
    # The survey question itself is never copied to the agent.
    assert not [
        c for c in api.calls_of("copyMessage") if c.params.get("message_id") == message_id(nps)
    ]


CAMPAIGN = """
[surveys]
sweep_seconds = 0.3
claim_batch = 4
[surveys.quiet_hours]
start = "00:00"
end = "00:00"
[surveys.sender]
global_rate = 4
concurrency = 2
[surveys.nps]
[[surveys.nps.campaigns]]
tier = "C"
schedule = "0 12 * * *"
sample_ratio = 1.0
"""


async def _seed_c_customers(env: Env, chats: list[int], prefix: str) -> None:
    """A tier-C customer for each Telegram chat (the campaign's sample)."""

    async def seed(s: Any) -> None:
        s.add_all(
            Customer(
                external_id=f"{prefix}{tg}", tier="C", telegram_id=tg, created_at=NOON,
                updated_at=NOON,
            )
            for tg in chats
        )  # fmt: skip

    await env.seed(seed)


def _delivered(api: Any) -> Counter[int]:
    """Surveys Telegram accepted, by chat."""
    return Counter(int(c.chat_id) for c in api.calls_of("sendMessage") if c.ok)


async def test_sigkill_mid_campaign_then_every_survey_is_delivered_exactly_once(
    env: Env,
) -> None:
    api = env.api
    env.use_clock(NOON)  # the 12:00 run of the campaign is due at start-up
    env.policy_file(CAMPAIGN)
    chats = list(range(7000, 7020))
    await _seed_c_customers(env, chats, "K")
    blocked = chats[5]
    api.blocked.add(blocked)
    api.fail_next("sendMessage", 429, retry_after=1)

    def delivered() -> Counter[int]:
        return _delivered(api)

    await env.bot.start()
    # Kill just after the 8th delivery: between two paced sends (250 ms apart), with rows
    # claimed (in `sending`) that the process never got to.
    for _ in range(2000):
        if sum(delivered().values()) >= 8:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.06)
    await env.bot.kill()
    before = delivered()
    assert 8 <= sum(before.values()) < 19, before

    async def states(s: Any) -> Counter[str]:
        return Counter((await s.execute(select(Survey.status))).scalars())

    assert (await env.query(states))["sending"] > 0  # a real mid-campaign crash

    await env.bot.start()
    for _ in range(300):
        st = await env.query(states)
        if st["scheduled"] == 0 and st["sending"] == 0:
            break
        await asyncio.sleep(0.05)
    await api.wait_idle(quiet=0.5)
    final = await _surveys(env)
    unknown = [r for r in final.values() if (r.reason or "").startswith("outcome unknown")]
    counts = delivered()
    # Never twice; and every deliverable survey once, unless the kill landed inside a send
    # (at most one row then, marked failed rather than risking a duplicate).
    assert max(counts.values()) == 1, counts
    assert len(unknown) <= 1
    for tg in chats:
        if tg != blocked and not any(r.chat_id == tg for r in unknown):
            assert counts[tg] == 1, (tg, counts)
    assert counts[blocked] == 0

    async def blocked_customer(s: Any) -> Customer:
        q = select(Customer).where(Customer.telegram_id == blocked)
        return (await s.execute(q)).scalar_one()

    assert (await env.query(blocked_customer)).unreachable_at is not None
    assert api.count_429 == 1  # the injected one; retried after the pause
    statuses = Counter(r.status for r in final.values())
    assert statuses["sent"] == 19 - len(unknown) and statuses["failed"] == 1 + len(unknown)


async def test_sigterm_mid_campaign_then_every_survey_is_delivered_exactly_once(
    env: Env,
) -> None:
    """A clean stop (SIGTERM) mid-campaign loses no survey and sends none twice: what was
    claimed and not yet sent is sent after the restart, once."""
    api = env.api
    env.use_clock(NOON)
    env.policy_file(CAMPAIGN)
    chats = list(range(7100, 7120))
    await _seed_c_customers(env, chats, "T")

    def delivered() -> Counter[int]:
        return _delivered(api)

    await env.bot.start()
    for _ in range(2000):
        if sum(delivered().values()) >= 6:
            break
        await asyncio.sleep(0.005)
    assert await env.bot.stop(signal.SIGTERM) == 0
    before = delivered()
    assert sum(before.values()) < len(chats), before

    async def states(s: Any) -> Counter[str]:
        return Counter((await s.execute(select(Survey.status))).scalars())

    await env.bot.start()
    for _ in range(400):
        st = await env.query(states)
        if st["scheduled"] == 0 and st["sending"] == 0:
            break
        await asyncio.sleep(0.05)
    await api.wait_idle(quiet=0.5)
    final = await _surveys(env)
    counts = delivered()
    assert max(counts.values()) == 1, counts
    assert {tg: counts[tg] for tg in chats} == dict.fromkeys(chats, 1), final
    assert Counter(r.status for r in final.values()) == Counter({"sent": len(chats)})
