"""The queue's rules against a real database: aging, capacity, tiers, windows, offers,
transfers and requeues, SLA records, silent agents, inactivity and position updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from routing.policy.root import Policy, parse_policy
from routing.queue import claims, estimate, offers, sla
from routing.queue.agents import add_agent
from routing.queue.conversations import ORIGIN_REQUEST, add_message, open_conversation
from routing.store.models import ASSIGNED, CLOSED, QUEUED, Agent, Conversation, Customer, SlaEvent
from tests.conftest import Db

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _policy(**queue_keys: Any) -> Policy:
    return parse_policy({"queue": queue_keys})


async def _agent(db: Db, tg: int, name: str, **kw: Any) -> Agent:
    online = kw.pop("online", True)
    tiers = kw.pop("tiers", None)
    async with db.sessions() as s, s.begin():
        a, _ = await add_agent(s, tg, name, now=T0, **kw)
        a.online, a.tiers = online, tiers
        return a


async def _open(
    db: Db, policy: Policy, tier: str, at: datetime, *, tg: int | None = None, **cust: Any
) -> int:
    async with db.sessions() as s, s.begin():
        n = await s.scalar(select(func.count()).select_from(Customer))
        c = Customer(
            external_id=f"X{n}", name=f"{tier}{n}", tier=tier, telegram_id=tg,
            created_at=T0, updated_at=T0, **cust,
        )  # fmt: skip
        s.add(c)
        await s.flush()
        conv, _ = await open_conversation(s, c, policy, ORIGIN_REQUEST, at)
        return conv.id


async def _next(db: Db, agent: Agent, now: datetime) -> int | None:
    async with db.sessions() as s, s.begin():
        fresh = await s.get(Agent, agent.id)
        assert fresh is not None
        conv = await claims.claim_next(s, fresh, now)
        return conv.id if conv else None


async def _conv(db: Db, conv_id: int) -> Conversation:
    async with db.sessions() as s:
        c = await s.get(Conversation, conv_id)
        assert c is not None
        return c


# --- ordering ---------------------------------------------------------------------------


async def test_aging_order_with_a_fixed_clock(db: Db) -> None:
    policy = _policy(aging_outrank_seconds=600)
    agent = await _agent(db, 1, "Ann", max_chats=10)
    # A C chat 11 minutes old, a B chat 5 minutes old, a fresh A, and a C 9 minutes old.
    now = T0 + timedelta(hours=1)
    old_c = await _open(db, policy, "C", now - timedelta(minutes=11 + 10))
    b = await _open(db, policy, "B", now - timedelta(minutes=5))
    a = await _open(db, policy, "A", now)
    young_c = await _open(db, policy, "C", now - timedelta(minutes=9))
    # Keys: old_c = -21m + 3*10m = +9m; b = -5m + 20m = 15m; a = 0 + 10m; young_c = -9m + 30m.
    async with db.sessions() as s:
        waiting = [c for c, _ in await claims.waiting(s, 10)]
        listed = [c.id for c in waiting]
        positions = [await claims.position(s, c) for c in waiting]
    assert listed == [old_c, a, b, young_c]
    assert positions == [1, 2, 3, 4]
    assert [await _next(db, agent, now) for _ in range(4)] == listed


async def test_aging_zero_is_strict_tier_order(sqlite_db: Db) -> None:
    policy = _policy(aging_outrank_seconds=0)
    agent = await _agent(sqlite_db, 1, "Ann", max_chats=10)
    ancient_c = await _open(sqlite_db, policy, "C", T0 - timedelta(days=30))
    b2 = await _open(sqlite_db, policy, "B", T0 + timedelta(seconds=5))
    b1 = await _open(sqlite_db, policy, "B", T0)
    vip = await _open(sqlite_db, policy, "VIP", T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=2)
    assert [await _next(sqlite_db, agent, now) for _ in range(4)] == [vip, b1, b2, ancient_c]


# --- capacity and tiers -----------------------------------------------------------------


async def test_capacity_refuses_next_and_claim(db: Db) -> None:
    policy = Policy()
    agent = await _agent(db, 1, "Ann", max_chats=2)
    ids = [await _open(db, policy, "B", T0 + timedelta(seconds=i)) for i in range(3)]
    assert await _next(db, agent, T0) == ids[0]
    assert await _next(db, agent, T0) == ids[1]
    with pytest.raises(claims.AtCapacity):
        await _next(db, agent, T0)
    async with db.sessions() as s, s.begin():
        result = await claims.claim(s, ids[2], agent, T0)
    assert not result.won and result.refused == claims.REFUSED_CAPACITY
    assert (await _conv(db, ids[2])).status == QUEUED  # nothing lost


async def test_agents_limited_to_tiers(sqlite_db: Db) -> None:
    policy = Policy()
    vip_desk = await _agent(sqlite_db, 1, "Vera", tiers="VIP,A")
    c = await _open(sqlite_db, policy, "C", T0)
    assert await _next(sqlite_db, vip_desk, T0) is None
    async with sqlite_db.sessions() as s, s.begin():
        r = await claims.claim(s, c, vip_desk, T0)
    assert r.refused == claims.REFUSED_TIER
    a = await _open(sqlite_db, policy, "A", T0 + timedelta(minutes=1))
    assert await _next(sqlite_db, vip_desk, T0) == a


# --- manager-first and sticky ------------------------------------------------------------


async def test_manager_first_window_then_everyone(sqlite_db: Db) -> None:
    policy = _policy(manager_window_seconds=30)
    mia = await _agent(sqlite_db, 1, "Mia")
    bob = await _agent(sqlite_db, 2, "Bob")
    conv_id = await _open(sqlite_db, policy, "VIP", T0, account_manager="Mia")
    async with sqlite_db.sessions() as s, s.begin():
        conv = await s.get(Conversation, conv_id)
        cust = await s.get(Customer, conv.customer_id) if conv else None
        assert conv is not None and cust is not None
        reserved = await offers.reserve_for(s, conv, cust, policy, T0, mia)
    assert reserved is not None and reserved.id == mia.id
    # Within the window Bob can neither /next nor Claim it.
    assert await _next(sqlite_db, bob, T0 + timedelta(seconds=10)) is None
    async with sqlite_db.sessions() as s, s.begin():
        r = await claims.claim(s, conv_id, bob, T0 + timedelta(seconds=10))
    assert r.refused == claims.REFUSED_RESERVED
    # After it, the sweep releases it and Bob takes it.
    async with sqlite_db.sessions() as s, s.begin():
        assert await offers.release_reservations(s, T0 + timedelta(seconds=20)) == []
        released = await offers.release_reservations(s, T0 + timedelta(seconds=31))
    assert [c.id for c in released] == [conv_id]
    assert await _next(sqlite_db, bob, T0 + timedelta(seconds=31)) == conv_id


async def test_no_window_when_the_manager_is_offline_and_sticky_without_one(
    sqlite_db: Db,
) -> None:
    policy = Policy()
    mia = await _agent(sqlite_db, 1, "Mia", online=False)
    bob = await _agent(sqlite_db, 2, "Bob")
    managed = await _open(sqlite_db, policy, "VIP", T0, account_manager="Mia")
    async with sqlite_db.sessions() as s, s.begin():
        conv = await s.get(Conversation, managed)
        assert conv is not None
        cust = await s.get(Customer, conv.customer_id)
        assert cust is not None
        assert await offers.reserve_for(s, conv, cust, policy, T0, mia) is None
    # A VIP without a manager whom Bob served three days ago goes to Bob first.
    first = await _open(sqlite_db, policy, "VIP", T0 - timedelta(days=3), tg=None)
    assert await _next(sqlite_db, bob, T0 - timedelta(days=3)) == first
    async with sqlite_db.sessions() as s, s.begin():
        conv1 = await s.get(Conversation, first)
        assert conv1 is not None
        conv1.status, conv1.agent_id = CLOSED, bob.id
        cust = await s.get(Customer, conv1.customer_id)
        assert cust is not None
        again, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, T0)
        chosen = await offers.reserve_for(s, again, cust, policy, T0, None)
    assert chosen is not None and chosen.id == bob.id


# --- offers -----------------------------------------------------------------------------


async def test_offer_times_out_and_passes_to_the_next_agent(db: Db) -> None:
    policy = _policy(routing_mode="offer", offer_timeout_seconds=30)
    ann = await _agent(db, 1, "Ann")
    bob = await _agent(db, 2, "Bob")
    # Bob is busier: the least-loaded (Ann) gets the first offer.
    busy = await _open(db, policy, "C", T0 - timedelta(hours=1))
    async with db.sessions() as s, s.begin():
        assert await claims.claim(s, busy, bob, T0)
    conv_id = await _open(db, policy, "B", T0)
    async with db.sessions() as s, s.begin():
        made = await offers.make_offers(s, policy, T0)
    assert [(m.conversation.id, m.agent.id) for m in made] == [(conv_id, ann.id)]
    # Nobody else is offered it while Ann's offer runs, and Bob's /next skips it.
    async with db.sessions() as s, s.begin():
        assert await offers.make_offers(s, policy, T0 + timedelta(seconds=10)) == []
    assert await _next(db, bob, T0 + timedelta(seconds=10)) is None
    # 30 s later Ann's offer expires and the chat goes to Bob.
    later = T0 + timedelta(seconds=31)
    async with db.sessions() as s, s.begin():
        expired = await offers.expire_offers(s, later)
        made = await offers.make_offers(s, policy, later)
    assert [e.offer.agent_id for e in expired] == [ann.id]
    assert [(m.conversation.id, m.agent.id) for m in made] == [(conv_id, bob.id)]
    # Bob accepts; Ann's old offer cannot be used.
    async with db.sessions() as s, s.begin():
        assert (await claims.claim(s, conv_id, bob, later)).won
    assert (await _conv(db, conv_id)).agent_id == bob.id


async def test_declined_offer_goes_to_the_next_agent(sqlite_db: Db) -> None:
    policy = _policy(routing_mode="offer")
    ann = await _agent(sqlite_db, 1, "Ann")
    bob = await _agent(sqlite_db, 2, "Bob")
    conv_id = await _open(sqlite_db, policy, "B", T0)
    async with sqlite_db.sessions() as s, s.begin():
        [first] = await offers.make_offers(s, policy, T0)
    assert first.agent.id == ann.id
    async with sqlite_db.sessions() as s, s.begin():
        assert await offers.decline_offer(s, first.offer.id, bob) is None  # not Bob's
        assert await offers.decline_offer(s, first.offer.id, ann) is not None
        [second] = await offers.make_offers(s, policy, T0 + timedelta(seconds=1))
    assert (second.conversation.id, second.agent.id) == (conv_id, bob.id)


# --- transfers and requeues -------------------------------------------------------------


async def test_transfer_back_to_queue_keeps_arrival_and_place(db: Db) -> None:
    policy = Policy()
    ann = await _agent(db, 1, "Ann")
    first = await _open(db, policy, "B", T0)
    second = await _open(db, policy, "B", T0 + timedelta(minutes=1))
    assert await _next(db, ann, T0 + timedelta(minutes=2)) == first
    before = await _conv(db, first)
    async with db.sessions() as s, s.begin():
        conv = await s.get(Conversation, first)
        assert conv is not None
        await claims.requeue(s, conv, front=False, note="needs billing", by=ann.id)
    after = await _conv(db, first)
    assert after.status == QUEUED and after.agent_id is None
    assert after.queued_at == before.queued_at and after.queue_key == before.queue_key
    assert after.transfer_note == "needs billing"
    bob = await _agent(db, 2, "Bob")
    assert await _next(db, bob, T0 + timedelta(minutes=3)) == first  # still ahead of `second`
    assert await _next(db, bob, T0 + timedelta(minutes=3)) == second


async def test_transfer_to_an_agent_checks_presence_capacity_and_tier(sqlite_db: Db) -> None:
    policy = Policy()
    ann = await _agent(sqlite_db, 1, "Ann")
    off = await _agent(sqlite_db, 2, "Otto", online=False)
    full = await _agent(sqlite_db, 3, "Fay", max_chats=1)
    vip_only = await _agent(sqlite_db, 4, "Vic", tiers="VIP")
    bob = await _agent(sqlite_db, 5, "Bob")
    conv_id = await _open(sqlite_db, policy, "B", T0)
    other = await _open(sqlite_db, policy, "B", T0)
    assert await _next(sqlite_db, ann, T0) == conv_id
    assert await _next(sqlite_db, full, T0) == other
    async with sqlite_db.sessions() as s, s.begin():
        conv = await s.get(Conversation, conv_id)
        assert conv is not None
        assert await claims.transfer_to(s, conv, off, None, ann, T0) == "offline"
        assert await claims.transfer_to(s, conv, full, None, ann, T0) == claims.REFUSED_CAPACITY
        assert await claims.transfer_to(s, conv, vip_only, None, ann, T0) == claims.REFUSED_TIER
        assert await claims.transfer_to(s, conv, bob, "refund", ann, T0) is None
    c = await _conv(sqlite_db, conv_id)
    assert (c.status, c.agent_id, c.transfer_note, c.transferred_by) == (
        ASSIGNED,
        bob.id,
        "refund",
        ann.id,
    )


async def test_requeue_on_agent_offline_goes_to_the_front_of_its_tier(db: Db) -> None:
    policy = Policy()
    ann = await _agent(db, 1, "Ann")
    mine = await _open(db, policy, "B", T0 + timedelta(minutes=5))
    assert await _next(db, ann, T0 + timedelta(minutes=5)) == mine
    # Meanwhile an older B chat queued... (claimed out of order earlier is irrelevant)
    older_b = await _open(db, policy, "B", T0)
    vip = await _open(db, policy, "VIP", T0 + timedelta(minutes=6))
    async with db.sessions() as s, s.begin():
        agent = await s.get(Agent, ann.id)
        assert agent is not None
        moved = await claims.requeue_agent(s, agent)
    assert [c.id for c in moved] == [mine]
    back = await _conv(db, mine)
    assert back.status == QUEUED and back.agent_id is None
    bob = await _agent(db, 2, "Bob", max_chats=10)
    order = [await _next(db, bob, T0 + timedelta(minutes=7)) for _ in range(3)]
    # VIP stays first; within B the requeued chat is ahead of the older waiting one.
    assert order == [vip, mine, older_b]


# --- SLA --------------------------------------------------------------------------------


async def test_sla_warn_then_breach_recorded_once(db: Db) -> None:
    policy = Policy()  # VIP first response 60 s, warn at 80 %
    boss = await _agent(db, 9, "Sue", role="supervisor", online=False)
    vip = await _open(db, policy, "VIP", T0)

    async def run(at: datetime) -> list[sla.Alert]:
        async with db.sessions() as s, s.begin():
            return await sla.sweep(s, policy, at)

    assert await run(T0 + timedelta(seconds=47)) == []
    warn = await run(T0 + timedelta(seconds=49))
    assert [(a.conversation.id, a.kind, a.level, a.page) for a in warn] == [
        (vip, sla.FIRST_RESPONSE, sla.WARN, True)
    ]
    assert await run(T0 + timedelta(seconds=55)) == []  # once
    breach = await run(T0 + timedelta(seconds=61))
    assert [(a.kind, a.level) for a in breach] == [(sla.FIRST_RESPONSE, sla.BREACH)]
    assert breach[0].elapsed_s == 61 and breach[0].target_s == 60
    assert await run(T0 + timedelta(seconds=90)) == []
    async with db.sessions() as s:
        rows = (await s.execute(select(SlaEvent.kind, SlaEvent.level))).all()
        assert sorted(rows) == [(sla.FIRST_RESPONSE, sla.BREACH), (sla.FIRST_RESPONSE, sla.WARN)]
        assert [a.id for a in await sla.supervisors(s)] == [boss.id]


async def test_first_response_is_the_agents_first_relayed_message(sqlite_db: Db) -> None:
    policy = Policy()
    ann = await _agent(sqlite_db, 1, "Ann")
    vip = await _open(sqlite_db, policy, "VIP", T0)
    assert await _next(sqlite_db, ann, T0 + timedelta(seconds=10)) == vip
    # Claimed in time but no answer yet: the first-response clock still runs.
    async with sqlite_db.sessions() as s, s.begin():
        assert [a.level for a in await sla.sweep(s, policy, T0 + timedelta(seconds=50))] == [
            sla.WARN
        ]
        conv = await s.get(Conversation, vip)
        assert conv is not None
        await add_message(
            s, conv, sender="agent", agent_id=ann.id, content_type="text", text="hi",
            file_id=None, chat_id=1, message_id=1, now=T0 + timedelta(seconds=55),
        )  # fmt: skip
    c = await _conv(sqlite_db, vip)
    assert c.first_response_at == T0 + timedelta(seconds=55)
    async with sqlite_db.sessions() as s, s.begin():
        assert await sla.sweep(s, policy, T0 + timedelta(seconds=120)) == []


# --- silent agents, inactive customers --------------------------------------------------


async def test_silent_agent_is_set_offline_and_chats_requeued(sqlite_db: Db) -> None:
    policy = _policy(inactivity={"agent_silence_seconds": 600})
    ann = await _agent(sqlite_db, 1, "Ann")
    conv_id = await _open(sqlite_db, policy, "B", T0)
    assert await _next(sqlite_db, ann, T0) == conv_id
    async with sqlite_db.sessions() as s, s.begin():
        conv = await s.get(Conversation, conv_id)
        assert conv is not None
        await add_message(
            s, conv, sender="customer", content_type="text", text="hello?", file_id=None,
            chat_id=5, message_id=1, now=T0 + timedelta(seconds=30),
        )  # fmt: skip
    async with sqlite_db.sessions() as s, s.begin():
        assert await sla.silent_agents(s, policy, T0 + timedelta(seconds=600)) == []
        gone = await sla.silent_agents(s, policy, T0 + timedelta(seconds=631))
    assert [(a.id, [c.id for c in cs]) for a, cs in gone] == [(ann.id, [conv_id])]
    async with sqlite_db.sessions() as s:
        agent = await s.get(Agent, ann.id)
        assert agent is not None and not agent.online
    assert (await _conv(sqlite_db, conv_id)).status == QUEUED


async def test_inactive_customer_is_warned_then_closed(sqlite_db: Db) -> None:
    policy = _policy(inactivity={"close_after_seconds": 600, "warn_before_seconds": 120})
    ann = await _agent(sqlite_db, 1, "Ann")
    conv_id = await _open(sqlite_db, policy, "B", T0)
    assert await _next(sqlite_db, ann, T0) == conv_id

    async def say(sender: str, at: datetime) -> None:
        async with sqlite_db.sessions() as s, s.begin():
            conv = await s.get(Conversation, conv_id)
            assert conv is not None
            await add_message(
                s, conv, sender=sender, content_type="text", text="x", file_id=None, chat_id=1,
                message_id=int(at.timestamp()), now=at,
                agent_id=ann.id if sender == "agent" else None,
            )  # fmt: skip

    async def sweep(at: datetime) -> list[tuple[bool, int]]:
        async with sqlite_db.sessions() as s, s.begin():
            return [(i.closed, i.minutes_left) for i in await sla.inactive_customers(s, policy, at)]

    await say("agent", T0)
    assert await sweep(T0 + timedelta(seconds=479)) == []
    assert await sweep(T0 + timedelta(seconds=480)) == [(False, 2)]  # warned
    # The customer answers: the clock stops; the agent answers: it restarts.
    await say("customer", T0 + timedelta(seconds=500))
    assert await sweep(T0 + timedelta(seconds=700)) == []
    await say("agent", T0 + timedelta(seconds=700))
    assert await sweep(T0 + timedelta(seconds=1180)) == [(False, 2)]
    assert await sweep(T0 + timedelta(seconds=1250)) == []
    assert await sweep(T0 + timedelta(seconds=1300)) == [(True, 0)]
    assert (await _conv(sqlite_db, conv_id)).status == CLOSED


# --- position updates -------------------------------------------------------------------


async def test_position_updates_only_when_material(sqlite_db: Db) -> None:
    policy = _policy(position={"min_step": 3, "top": 2, "default_handle_seconds": 600})
    ann = await _agent(sqlite_db, 1, "Ann", max_chats=1)
    busy = await _open(sqlite_db, policy, "B", T0 - timedelta(hours=1))
    assert await _next(sqlite_db, ann, T0) == busy
    ids = [
        await _open(sqlite_db, policy, "C", T0 + timedelta(seconds=i), tg=100 + i) for i in range(6)
    ]

    async def told(at: datetime) -> dict[int, tuple[int, float | None]]:
        async with sqlite_db.sessions() as s, s.begin():
            return {
                n.conversation.id: (n.position, n.eta_seconds)
                for n in await estimate.position_updates(s, policy, at)
            }

    at = T0 + estimate.OPENING_GRACE + timedelta(seconds=6)
    first = await told(at)
    assert {i: p for i, (p, _) in first.items()} == {ids[i]: i + 1 for i in range(6)}
    # One slot of 600 s: number 6 waits about 6 x 600 s.
    assert first[ids[5]][1] == pytest.approx(6 * 600)
    assert await told(at) == {}  # nothing changed: nobody hears again
    # The first two leave: those in the top two hear of it, and everyone whose estimated
    # wait changed bucket; number 6 -> 4 (two places, same 30-60 min bucket) hears nothing.
    async with sqlite_db.sessions() as s, s.begin():
        for cid in ids[:2]:
            c = await s.get(Conversation, cid)
            assert c is not None
            c.status = CLOSED
    second = await told(at)
    assert ids[5] not in second
    assert second[ids[2]][0] == 1 and second[ids[3]][0] == 2


async def test_no_position_told_while_a_chat_is_being_opened(sqlite_db: Db) -> None:
    """The opener commits the chat, then plans, pages and answers in a second step; a sweep
    in between (here or on another instance) must not add "You are number 1" to "right
    away" (seen with three instances). Past the grace, a chat never told is told."""
    policy = _policy()
    await _agent(sqlite_db, 1, "Ann", max_chats=2)
    conv_id = await _open(sqlite_db, policy, "C", T0, tg=700)

    async def told(at: datetime) -> list[int]:
        async with sqlite_db.sessions() as s, s.begin():
            return [n.conversation.id for n in await estimate.position_updates(s, policy, at)]

    assert await told(T0 + timedelta(seconds=1)) == []
    assert await told(T0 + estimate.OPENING_GRACE + timedelta(seconds=1)) == [conv_id]


async def test_one_queue_sweeper_at_a_time_on_postgresql(pg_db: Db) -> None:
    from bot.desk.queue import leader

    async with leader(pg_db.sessions) as first, leader(pg_db.sessions) as second:
        assert first and not second
    async with leader(pg_db.sessions) as again:
        assert again  # released
