"""The one priority function and the pure routing rules shared by the queue and the simulator."""

from __future__ import annotations

import itertools
import random

import pytest

from routing.queue import priority
from routing.queue.eligibility import AgentSlot, eligible, parse_tiers, pick_agent
from routing.queue.estimate import estimate_wait, eta_bucket, should_tell_position

STEP = 900.0  # a chat waiting 15 min longer than one a tier higher outranks it


def _order(chats: list[tuple[str, int, float]], step: float) -> list[str]:
    """Names of (name, rank, queued_at) chats in queue order."""
    return [
        name
        for name, _, _ in sorted(
            chats, key=lambda c: (priority.queue_key(c[1], c[2], step), c[2], c[0])
        )
    ]


def test_a_c_chat_waiting_longer_than_the_bound_outranks_a_new_b() -> None:
    now = 10_000.0
    # B is rank 2, C rank 3. The C chat waited 901 s, the B chat just arrived.
    chats = [("new_b", 2, now), ("old_c", 3, now - STEP - 1)]
    assert _order(chats, STEP) == ["old_c", "new_b"]
    # Within the bound, tier wins.
    chats = [("new_b", 2, now), ("younger_c", 3, now - STEP + 1)]
    assert _order(chats, STEP) == ["new_b", "younger_c"]
    # Two tiers apart (C against A) the bound doubles.
    assert _order([("a", 1, now), ("c", 3, now - 2 * STEP + 1)], STEP) == ["a", "c"]
    assert _order([("a", 1, now), ("c", 3, now - 2 * STEP - 1)], STEP) == ["c", "a"]


def test_key_order_equals_priority_order_at_every_instant() -> None:
    """The stored key orders exactly like tier weight + linear aging evaluated at any time."""
    rng = random.Random(5)
    chats = [(f"c{i}", rng.randrange(4), rng.uniform(0, 5000)) for i in range(60)]
    by_key = _order(chats, STEP)
    for now in (5000.0, 7000.0, 50_000.0):
        by_priority = [
            name
            for name, _, _ in sorted(
                chats,
                key=lambda c: (-priority.priority_at(c[1], c[2], now, STEP), c[2], c[0]),
            )
        ]
        assert by_priority == by_key


def test_aging_zero_is_strict_tier_order_with_arrival_breaking_ties() -> None:
    chats = [
        ("c_ancient", 3, 0.0),
        ("b_late", 2, 2e8),
        ("b_early", 2, 1e8),
        ("vip", 0, 3e8),
    ]
    assert _order(chats, 0) == ["vip", "b_early", "b_late", "c_ancient"]
    # With aging, the same ancient C chat would lead.
    assert _order(chats, STEP)[0] == "c_ancient"


def test_boost_queues_as_if_ranks_higher_never_above_the_top() -> None:
    assert priority.effective_rank(3, 2) == 1
    assert priority.effective_rank(1, 5) == 0
    t = 1000.0
    boosted_c = priority.queue_key(priority.effective_rank(3, 1), t, STEP)
    plain_b = priority.queue_key(2, t, STEP)
    assert boosted_c == plain_b


def test_pick_agent_least_loaded_eligible_with_capacity() -> None:
    slots = [
        AgentSlot(1, load=2, max_chats=3),
        AgentSlot(2, load=1, max_chats=3, tiers=parse_tiers("VIP")),
        AgentSlot(3, load=1, max_chats=1),  # full
        AgentSlot(4, load=1, max_chats=3, last_assigned=50.0),
        AgentSlot(5, load=1, max_chats=3, last_assigned=10.0),
    ]
    # Agent 2 serves VIPs only; 3 is full; 4 and 5 tie on load: the longest idle (5).
    assert pick_agent(slots, "B") is slots[4]
    # For a VIP chat agent 2 is eligible too, and has never taken one: the longest idle.
    assert pick_agent(slots, "VIP") is slots[1]
    assert pick_agent(slots, "B", exclude=frozenset({5})) is slots[3]
    assert not eligible(slots[2], "B")
    assert pick_agent([slots[2]], "B") is None
    assert parse_tiers(" VIP, A ,") == frozenset({"VIP", "A"})
    assert parse_tiers(None) is None and parse_tiers("") is None


def test_estimate_and_material_change() -> None:
    assert estimate_wait(3, 0, 0, 300) is None  # nobody online
    assert estimate_wait(2, 2, 6, 300) == 0.0  # free slots take it at once
    assert estimate_wait(5, 1, 6, 300) == pytest.approx(4 * 300 / 6)
    assert [eta_bucket(s) for s in (None, 0, 60, 61, 400, 10_000)] == [-1, 0, 0, 1, 3, 7]

    def tell(old: tuple[int | None, int | None], new: tuple[int, int]) -> bool:
        return should_tell_position(*old, *new, min_step=3, top=3)

    assert tell((None, None), (9, 4))  # never told
    assert not tell((9, 4), (8, 4))  # one place, same bucket: quiet
    assert not tell((9, 4), (7, 4))
    assert tell((9, 4), (6, 4))  # three places
    assert tell((9, 4), (8, 3))  # the estimate changed bucket
    assert tell((4, 2), (3, 2))  # into the top three: every step counts
    assert not tell((3, 2), (3, 2))


def test_every_combination_of_two_tiers_respects_the_bound() -> None:
    for (r1, r2), gap in itertools.product(itertools.permutations(range(4), 2), (-1.0, 1.0)):
        if r1 >= r2:
            continue
        # Lower tier r2 waited (r2 - r1) * STEP + gap longer than the higher tier r1.
        lower_first = gap > 0
        now = 1e6
        chats = [("hi", r1, now), ("lo", r2, now - (r2 - r1) * STEP - gap)]
        assert (_order(chats, STEP)[0] == "lo") is lower_first
