"""bench/chaos.py ``judge``: a second copy is a duplicate, unless it is the documented
at-least-once case: the first copy reached Telegram just before a SIGKILL (its answer never
recorded) and the copy after it is the send made again when the lease ended."""

from __future__ import annotations

from typing import Any, cast

from bench.chaos import IN_FLIGHT_S, Arrival, Ledger, judge

CUSTOMER_CHAT = 9_000_000  # where agent 0's messages to customer 0 arrive


def _ledger(*copies_at: float) -> Ledger:
    ledger = Ledger(api=cast(Any, None))
    tag = ("a", 0, 1)
    ledger.sent_at[tag] = 0.0
    ledger.arrivals[tag] = [
        Arrival(CUSTOMER_CHAT + 0, 100 + n, at) for n, at in enumerate(copies_at)
    ]
    return ledger


def test_a_copy_sent_again_after_a_kill_mid_send_is_reported_apart() -> None:
    way = judge(_ledger(10.0, 45.0), kills=[10.0 + IN_FLIGHT_S / 2])["a"]
    assert way.duplicated == []
    assert way.resent_after_kill == ["a-0#1 x2"]


def test_any_other_second_copy_is_a_duplicate() -> None:
    # No kill at all; a kill long after the first copy; a kill before both copies; a third
    # copy before the kill.
    for copies, kills in (
        ((10.0, 11.0), []),
        ((10.0, 45.0), [10.0 + 3 * IN_FLIGHT_S]),
        ((10.0, 45.0), [5.0]),
        ((10.0, 10.2, 45.0), [10.5]),
    ):
        way = judge(_ledger(*copies), kills=kills)["a"]
        assert way.resent_after_kill == [], (copies, kills)
        assert way.duplicated == [f"a-0#1 x{len(copies)}"], (copies, kills)
