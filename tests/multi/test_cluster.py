"""Three instances behave as one: points 1 and 3-6 of the issue, on one shared cluster.

Three ``contactbot run --webhook`` processes are started at once on an *empty* database
(point 1 is that they all come up), then serve the other tests, each with its own users and
agents, so the suite pays for three interpreter starts once (about 5 CPU-seconds each).
Point 2 (scheduled jobs once per period) is tested in-process elsewhere; SIGKILL and
SIGTERM are in test_kill.py, on a cluster of their own.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot import keyboards
from tests.multi.conftest import (
    PG_URL,
    REDIS_URL,
    SECRET,
    Cluster,
    cluster,
    copies,
    last_update_id,
    order_violations,
    skip_reason,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def c(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    assert PG_URL and REDIS_URL
    workdir = tmp_path_factory.mktemp("cluster")
    async with cluster(
        workdir, n=3, db_url=PG_URL, redis_url=REDIS_URL, migrate_first=False, start=False
    ) as cl:
        # At once, on an empty schema: each instance runs the migrations on start.
        for inst in cl.instances:
            await inst.start()
        startup = await asyncio.gather(*(i.wait_up() for i in cl.instances), return_exceptions=True)
        cl.startup = startup  # type: ignore[attr-defined]
        yield cl


def need_up(c: Cluster) -> None:
    failed = [r for r in c.startup if isinstance(r, BaseException)]  # type: ignore[attr-defined]
    if failed or not all(i.alive for i in c.instances):
        pytest.fail(f"the cluster did not come up (see the startup test): {failed}")


async def post_at_once(c: Cluster, pairs: list[tuple[int, dict[str, Any]]]) -> list[int]:
    """POST each (instance index, update) directly to that instance, all at the same time;
    returns the HTTP statuses."""

    async def post(k: int, update: dict[str, Any]) -> int:
        return await c.api.post_update(c.instances[k].url, update, SECRET)

    return list(await asyncio.gather(*(post(k, u) for k, u in pairs)))


def _head() -> str:
    from alembic.script import ScriptDirectory

    from routing.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


# ------------------------------------------------------------------ 1. start-up


async def test_1_three_instances_started_at_once_on_an_empty_database_all_come_up(
    c: Cluster,
) -> None:
    failed = [
        f"{i.name}: {r}"
        for i, r in zip(c.instances, c.startup, strict=True)  # type: ignore[attr-defined]
        if isinstance(r, BaseException)
    ]
    assert not failed, "\n".join(failed)
    assert await c.sql("SELECT version_num FROM alembic_version") == [(_head(),)]
    for needle in ("IntegrityError", "UniqueViolation", "DuplicateTable", "Traceback"):
        assert not c.grep(needle), "\n".join(c.grep(needle)[:10])

    # And each one serves: three new users' first messages, one to each instance in turn.
    users = [5_100_000 + k for k in range(3)]
    for uid in users:
        c.api.user_message(uid, "hello", first_name=f"New {uid}")
    await c.telegram.settle()
    ids = c.telegram.accepted_ids[-3:]
    got = await c.wait_handled(ids)
    assert set(got.values()) == {"done"}
    assert {c.telegram.posted[u].upstream for u in ids} == {"inst-0", "inst-1", "inst-2"}
    for uid in users:
        assert c.api.sent_to(uid), f"user {uid} got no answer\n{c.logs()}"


# ------------------------------------------------------------------ 3. one update, twice


async def test_3_the_same_update_posted_to_two_instances_at_once_is_acted_on_once(
    c: Cluster,
) -> None:
    """A VIP's first message opens one conversation, pages each online agent once and
    answers the customer once, though two instances got the very same update at once."""
    need_up(c)
    agents = [9_300_001, 9_300_002]
    for a in agents:
        await c.add_agent(a, f"Pager {a}", online=True)
    vips = [5_300_000 + k for k in range(6)]
    for v in vips:
        await c.add_customer(v, tier="VIP")
    for k, vip in enumerate(vips):
        c.api.user_message(vip, f"[vip{k}] my order arrived broken", first_name=f"VIP {k}")
        (update,) = c.telegram.take_new()
        statuses = await post_at_once(c, [(k % 3, update), ((k + 1) % 3, update)])
        # Both answer 200: one stored it, the other found it stored (Telegram may stop).
        assert statuses == [200, 200], statuses
        await c.wait_handled([update["update_id"]])
    await c.wait_deliveries()
    await c.api.wait_idle(quiet=1.0, timeout=20)

    problems: list[str] = []
    for k, vip in enumerate(vips):
        convs = await c.sql(
            "SELECT cv.id FROM conversations cv JOIN customers cu ON cu.id = cv.customer_id "
            "WHERE cu.telegram_id = :t",
            t=vip,
        )
        if len(convs) != 1:
            problems.append(f"vip{k}: {len(convs)} conversations")
            continue
        conv_id = convs[0][0]
        lines = await c.sql(
            "SELECT count(*) FROM messages WHERE conversation_id = :c AND sender = 'customer'",
            c=conv_id,
        )
        if lines[0][0] != 1:
            problems.append(f"vip{k}: {lines[0][0]} transcript rows")
        claim = keyboards.ClaimCb(conv=conv_id).pack()
        for a in agents:
            pages = [
                call
                for call in c.api.calls_of("sendMessage", a)
                if call.ok and claim in str(call.params.get("reply_markup"))
            ]
            if len(pages) != 1:
                problems.append(f"vip{k}: agent {a} paged {len(pages)} times")
        answers = [call for call in c.api.calls_of("sendMessage", vip) if call.ok]
        if len(answers) != 1:
            problems.append(f"vip{k}: {len(answers)} answers: {[a.text for a in answers]}")
    assert not problems, "\n".join(problems) + "\n" + c.logs()
    # Done with paging: later tests' VIPs should not page these agents.
    await c.execute("UPDATE agents SET online = false WHERE telegram_id IN (9300001, 9300002)")


# ------------------------------------------------------------------ 4. order


TAG = re.compile(r"^\[m(\d+)\]")


async def _ten_messages_in_order(c: Cluster, customer: int, agent: int, first: int) -> None:
    conv_id = int(
        (
            await c.sql(
                "SELECT cv.id FROM conversations cv JOIN customers cu ON cu.id = cv.customer_id "
                "WHERE cu.telegram_id = :t",
                t=customer,
            )
        )[0][0]
    )
    tags = list(range(first, first + 10))
    update_of: dict[int, int] = {}
    for n in tags:
        c.api.user_message(customer, f"[m{n}] part {n} of my story", first_name="Storyteller")
        update_of[n] = last_update_id(c.api)
    await c.telegram.settle()
    await c.wait_handled(update_of.values())
    await c.wait_deliveries()
    await c.api.wait_idle(quiet=0.5, timeout=20)

    seen_by_agent = [int(m[1]) for t, _ in copies(c.api, agent) if (m := TAG.match(t))]
    seen_by_agent = [n for n in seen_by_agent if n in update_of]
    transcript = [
        int(m[1])
        for (t,) in await c.sql(
            "SELECT text FROM messages WHERE conversation_id = :c AND sender = 'customer' "
            "ORDER BY id",
            c=conv_id,
        )
        if (m := TAG.match(t or "")) and int(m[1]) in update_of
    ]
    upstreams = {c.telegram.posted[u].upstream for u in update_of.values()}
    detail = (
        f"agent saw {seen_by_agent}\ntranscript {transcript}\nvia {sorted(map(str, upstreams))}"
    )
    assert sorted(seen_by_agent) == tags, f"lost or duplicated: {detail}"
    assert sorted(transcript) == tags, f"lost or duplicated: {detail}"
    assert seen_by_agent == transcript, f"the agent's chat and the transcript differ: {detail}"
    bad = order_violations([update_of[n] for n in transcript], c.telegram)
    assert not bad, f"handled against the stored order: {bad}\n{detail}"
    assert len(upstreams) >= 2, f"the balancer did not spread them: {detail}"


async def test_4_ten_messages_reach_the_agent_and_transcript_in_order_sequential_posting(
    c: Cluster,
) -> None:
    """Telegram with max_connections=1: one update at a time, each stored before the next
    is sent, round robin over the three instances. The order must be exactly the sent one."""
    need_up(c)
    await c.telegram.set_connections(1)
    agent, customer = 9_400_001, 5_400_001
    conv = await c.open_chat(await c.add_customer(customer), await c.add_agent(agent, "Teller"))
    assert conv
    await _ten_messages_in_order(c, customer, agent, first=0)


async def test_4_ten_messages_reach_the_agent_and_transcript_in_order_concurrent_posting(
    c: Cluster,
) -> None:
    """Telegram with max_connections=10: all ten in flight at once, stored in whatever order
    the instances commit them. Guaranteed: no loss, no duplicate, the agent sees the
    transcript's order, and an update stored before another was sent is handled first
    (among the ones stored when the chat's turn comes: update_id order)."""
    need_up(c)
    agent, customer = 9_400_002, 5_400_002
    conv = await c.open_chat(await c.add_customer(customer), await c.add_agent(agent, "Teller 2"))
    assert conv
    await c.telegram.set_connections(10)
    try:
        await _ten_messages_in_order(c, customer, agent, first=100)
    finally:
        await c.telegram.set_connections(1)


# ------------------------------------------------------------------ 5. a new user, twice


async def test_5_two_first_updates_of_a_new_user_on_two_instances_at_once_are_both_handled(
    c: Cluster,
) -> None:
    need_up(c)
    users = [5_500_000 + k for k in range(10)]
    ids: list[int] = []
    pairs: list[tuple[int, dict[str, Any]]] = []
    for k, uid in enumerate(users):
        c.api.user_message(uid, "/help", first_name=f"Newcomer {k}")
        c.api.user_message(uid, "/menu", first_name=f"Newcomer {k}")
        first, second = c.telegram.take_new()
        pairs += [(k % 3, first), ((k + 1) % 3, second)]
        ids += [first["update_id"], second["update_id"]]
    statuses = await post_at_once(c, pairs)
    assert statuses == [200] * len(pairs), statuses
    got = await c.wait_handled(ids)
    await c.api.wait_idle(quiet=0.5, timeout=20)
    not_done = {u: s for u, s in got.items() if s != "done"}
    assert not not_done, f"not handled: {not_done}\n{c.logs()}"
    rows = await c.sql(
        "SELECT telegram_id, count(*) FROM customers WHERE telegram_id BETWEEN 5500000 AND 5500009 "
        "GROUP BY telegram_id"
    )
    assert sorted(rows) == [(u, 1) for u in users]
    for uid in users:
        answers = [call for call in c.api.sent_to(uid)]
        assert len(answers) >= 2, f"{uid}: {[a.summary() for a in answers]}"
    errors = await c.sql(
        "SELECT update_id, attempts, error FROM inbound_updates WHERE update_id = ANY(:ids) "
        "AND (attempts > 0 OR error IS NOT NULL)",
        ids=ids,
    )
    assert not errors, f"handled only after failing: {errors}"
    assert not c.grep("uq_customers_telegram_id"), "\n".join(c.grep("uq_customers_telegram_id"))


# ------------------------------------------------------------------ 6. claims


async def test_6_an_agent_with_one_slot_claiming_two_chats_through_two_instances_holds_one(
    c: Cluster,
) -> None:
    need_up(c)
    rounds = 10
    held: list[int] = []
    problems: list[str] = []
    for r in range(rounds):
        agent = 9_600_000 + r
        await c.add_agent(agent, f"Claimer {r}", online=True, max_chats=1)
        # Only this round's agent is paged.
        await c.execute("UPDATE agents SET online = (telegram_id = :a)", a=agent)
        vips = [5_600_000 + 2 * r, 5_600_000 + 2 * r + 1]
        mark = c.api.mark()
        for v in vips:
            await c.add_customer(v, tier="VIP")
            c.api.user_message(v, f"[round {r}] hello", first_name=f"VIP {v}")
        await c.telegram.settle()
        pages = []
        deadline = time.monotonic() + 30
        while len(pages) < 2:
            pages = [
                call
                for call in c.api.calls[mark:]
                if call.ok
                and call.method == "sendMessage"
                and call.chat_id == agent
                and "claim:" in str(call.params.get("reply_markup"))
            ]
            assert time.monotonic() < deadline, f"round {r}: paged {len(pages)}\n{c.logs()}"
            await asyncio.sleep(0.05)
        for page in pages:
            data = page.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            c.api.press(agent, int(page.result["message_id"]), data)
        presses = c.telegram.take_new()
        assert len(presses) == 2
        statuses = await post_at_once(c, [(r % 3, presses[0]), ((r + 1) % 3, presses[1])])
        assert statuses == [200, 200], statuses
        await c.wait_handled([p["update_id"] for p in presses])
        rows = await c.sql(
            "SELECT count(*) FROM conversations cv JOIN agents a ON a.id = cv.agent_id "
            "WHERE a.telegram_id = :a AND cv.status = 'assigned'",
            a=agent,
        )
        held.append(int(rows[0][0]))
        if held[-1] != 1:
            problems.append(f"round {r}: the agent holds {held[-1]} chats")
    await c.execute("UPDATE agents SET online = false")
    assert not problems, f"{problems}; held per round {held}\n{c.logs()}"
