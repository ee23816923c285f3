"""Once the bot is up (bot.app.settle_heap), the garbage collector runs a young collection
every 10,000 allocations instead of Python's 700: at the default, 3,000 updates of bench
cpu's mix ran 536 collections for 170 ms, 3.7% of their CPU (issue 19, bench/RESULTS.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from bot.app import settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def _collections_while_allocating(n: int) -> int:
    runs: list[int] = []

    def count(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            runs.append(1)

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept = [{"i": i} for i in range(n)]  # container objects: the collector tracks them
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == n
    return len(runs)


def test_an_updates_worth_of_allocations_runs_no_collection(collector: None) -> None:
    gc.set_threshold(700, 10, 10)  # Python's default: the control
    assert _collections_while_allocating(5_000) >= 5
    settle_heap()
    assert _collections_while_allocating(5_000) == 0
    assert _collections_while_allocating(25_000) >= 2  # still collected, less often
