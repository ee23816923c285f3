"""Who gets this chat: assignment.plan and the one eligibility check, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.policy.root import Policy, parse_policy
from routing.queue import assignment, eligibility
from routing.queue.assignment import People, Waiting, plan
from routing.queue.conversations import ORIGIN_REQUEST, ORIGIN_VIP
from routing.queue.eligibility import AgentSlot, Chat
from routing.store.managers import find_manager
from routing.store.models import Agent

# A Monday, 12:00 UTC; Sunday is closed in the hours below.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _policy(**queue: object) -> Policy:
    return parse_policy(
        {
            "queue": {"manager_window_seconds": 30, **queue},
            "selfservice": {"tiers": {"B": {"hours": ["mon-fri 09:00-18:00"]}}},
        }
    )


def _slot(id_: int, load: int = 0, max_chats: int = 2, tiers: str | None = None) -> AgentSlot:
    return AgentSlot(id_, load, max_chats, eligibility.parse_tiers(tiers))


# --- the one check -------------------------------------------------------------------------


def test_refusal_checks_tier_then_reservation_then_hours_then_capacity() -> None:
    held = Chat("VIP", reserved_agent_id=9, reserved_until=NOW + timedelta(seconds=30))
    full_b_only = _slot(1, load=2, tiers="B")
    assert eligibility.refusal(full_b_only, held, NOW) == eligibility.REFUSED_TIER
    full = _slot(1, load=2)
    assert eligibility.refusal(full, held, NOW) == eligibility.REFUSED_RESERVED
    assert eligibility.refusal(full, Chat("VIP"), NOW, open_now=False) == eligibility.REFUSED_CLOSED
    assert eligibility.refusal(full, Chat("VIP"), NOW) == eligibility.REFUSED_CAPACITY
    # The agent it is held for, and anyone once the window ended.
    assert eligibility.refusal(_slot(9), held, NOW) is None
    assert eligibility.refusal(_slot(1), held, NOW + timedelta(seconds=30)) is None
    # Paging tells a full agent too, never one it is held from.
    assert eligibility.may_page(full, Chat("VIP"), NOW)
    assert not eligibility.may_page(_slot(1), held, NOW)


# --- plan ----------------------------------------------------------------------------------


def test_pages_only_agents_serving_the_tier_full_ones_included() -> None:
    online = [_slot(1, tiers="VIP"), _slot(2, tiers="A,B"), _slot(3, load=2), _slot(4, tiers="B")]
    p = plan(Waiting("B"), online, _policy(), NOW)
    assert p.page == (2, 3, 4)  # 3 is full: told anyway, may take it once they have room
    assert p.serving == 3 and p.reserve_for is None and p.open_now


def test_nobody_serving_the_tier_means_no_page_and_no_estimate() -> None:
    p = plan(Waiting("C"), [_slot(1, tiers="VIP")], _policy(), NOW)
    assert p.page == () and p.serving == 0 and p.eta_seconds is None


def test_a_vip_waits_for_their_manager_first_within_the_window() -> None:
    online = [_slot(1), _slot(2), _slot(3, tiers="VIP")]
    p = plan(Waiting("VIP", ORIGIN_VIP), online, _policy(), NOW, people=People(True, 3))
    assert p.reserve_for == 3 and p.reserved_until == NOW + timedelta(seconds=30)
    assert p.page == (3,) and p.manager == 3


def test_no_window_without_room_for_the_manager_who_is_still_paged_first() -> None:
    online = [_slot(1), _slot(2), _slot(3, load=2)]
    p = plan(Waiting("VIP", ORIGIN_VIP), online, _policy(), NOW, people=People(True, 3))
    assert p.reserve_for is None
    assert p.page == (3, 1, 2) and p.manager == 3


def test_manager_offline_no_window_and_no_sticky_agent_instead() -> None:
    online = [_slot(1), _slot(2)]
    people = People(has_manager=True, manager=3, last_agent=2)
    p = plan(Waiting("VIP", ORIGIN_VIP), online, _policy(), NOW, people=people)
    assert p.reserve_for is None and p.manager is None
    assert p.page == (1, 2)


def test_without_a_manager_the_sticky_agent_gets_the_window() -> None:
    online = [_slot(1), _slot(2)]
    p = plan(Waiting("VIP"), online, _policy(), NOW, people=People(last_agent=2))
    assert p.reserve_for == 2 and p.page == (2,) and p.manager is None
    off = plan(Waiting("VIP"), online, _policy(sticky_days=0), NOW, people=People(last_agent=2))
    assert off.reserve_for is None


def test_only_the_top_tier_and_only_with_a_window_is_reserved() -> None:
    online = [_slot(1), _slot(3)]
    people = People(True, 3)
    assert plan(Waiting("A"), online, _policy(), NOW, people=people).reserve_for is None
    no_window = _policy(manager_window_seconds=0)
    assert plan(Waiting("VIP"), online, no_window, NOW, people=people).reserve_for is None


def test_business_hours_closed_pages_nobody_for_a_customer_request() -> None:
    online = [_slot(1), _slot(2)]
    closed = plan(Waiting("B", ORIGIN_REQUEST), online, _policy(), SUNDAY)
    assert not closed.open_now and closed.page == () and closed.serving == 2
    assert plan(Waiting("B", ORIGIN_REQUEST), online, _policy(), NOW).page == (1, 2)
    # A chat we opened (service recovery) is paged whatever the hours.
    recovery = plan(Waiting("B", "service_recovery"), online, _policy(), SUNDAY)
    assert recovery.open_now and recovery.page == (1, 2)


def test_offer_mode_reserves_but_pages_nobody() -> None:
    online = [_slot(1), _slot(3)]
    policy = _policy(routing_mode="offer")
    p = plan(Waiting("VIP"), online, policy, NOW, people=People(True, 3))
    assert p.offer_mode and p.page == () and p.reserve_for == 3


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (1, 0.0),  # a free slot takes it at once
        (2, 0.0),
        (3, 100.0),  # one behind the free slots: a slot frees every 300/3 s
        (5, 300.0),
    ],
)
def test_eta_from_the_serving_agents_slots(position: int, expected: float) -> None:
    # Serving B: 2 (1 of 2 slots taken) and 3 (0 of 1): 3 slots, 2 free; 1 serves VIP only.
    online = [_slot(1, tiers="VIP"), _slot(2, load=1, max_chats=2), _slot(3, load=0, max_chats=1)]
    p = plan(Waiting("B"), online, _policy(), NOW, position=position, mean_handle_s=300)
    assert p.position == position and p.eta_seconds == expected


def test_eta_uses_the_default_handle_time_without_history() -> None:
    policy = _policy()
    p = plan(Waiting("B"), [_slot(1, load=1, max_chats=1)], policy, NOW, position=1)
    assert p.eta_seconds == policy.queue.position.default_handle_seconds


def test_announcements_show_an_agent_the_chats_they_may_take() -> None:
    held = Chat("VIP", reserved_agent_id=9, reserved_until=NOW + timedelta(seconds=30))
    waiting = [(10, Chat("VIP")), (11, Chat("C")), (12, held), (13, Chat("A"))]
    assert assignment.announce_to(_slot(1, load=2, tiers="VIP,A"), waiting, NOW) == [10, 13]
    assert assignment.announce_to(_slot(9), waiting, NOW) == [10, 11, 12, 13]


# --- the account manager -----------------------------------------------------------------


def _agent(telegram_id: int, name: str) -> Agent:
    return Agent(telegram_id=telegram_id, name=name, role="agent", max_chats=3)


def test_a_manager_is_a_registered_agent_by_telegram_id_or_name() -> None:
    staff = [_agent(777, "Mia"), _agent(888, "Bob")]
    assert find_manager(staff, "777") is staff[0]
    assert find_manager(staff, " mIA ") is staff[0]
    # The case the two lookups disagreed on: a number no agent has names nobody (the tier
    # notices used to message it anyway).
    assert find_manager(staff, "9001") is None
    assert find_manager(staff, "Zed") is None
    assert find_manager(staff, "") is None and find_manager(staff, None) is None
