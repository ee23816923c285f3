"""routing/store/gather.py: asks made at once are answered by one run, each its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from routing.store.gather import Failed, Gather


class Doubler:
    """Answers each key with its double, recording the batches it was asked; a run waits
    on ``gate`` when one is set (a statement in flight)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def run(self, keys: Sequence[int]) -> list[int | Failed]:
        self.batches.append(list(keys))
        if self.gate is not None:
            await self.gate.wait()
        return [Failed(ValueError(f"no {k}")) if k < 0 else 2 * k for k in keys]


async def test_asks_made_in_one_turn_are_one_run_each_with_its_own_answer() -> None:
    d = Doubler()
    g = Gather(d.run)
    assert await asyncio.gather(*(g.ask(k) for k in (1, 2, 3))) == [2, 4, 6]
    assert d.batches == [[1, 2, 3]]
    assert await g.ask(5) == 10  # alone: a run of its own
    assert d.batches[-1] == [5]


async def test_asks_made_while_a_run_is_in_flight_go_together_in_the_next() -> None:
    """Never answered by a run that began before the ask (it could miss what the caller
    wrote just before asking)."""
    d = Doubler()
    d.gate = asyncio.Event()
    g = Gather(d.run)
    first = asyncio.ensure_future(g.ask(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert d.batches == [[1]]
    later = [asyncio.ensure_future(g.ask(k)) for k in (2, 3)]
    await asyncio.sleep(0)
    assert d.batches == [[1]]  # one run in flight at a time
    d.gate.set()
    assert await first == 2 and [await f for f in later] == [4, 6]
    assert d.batches == [[1], [2, 3]]


async def test_an_answer_that_failed_fails_only_its_own_ask() -> None:
    g = Gather(Doubler().run)
    out = await asyncio.gather(g.ask(1), g.ask(-1), g.ask(2), return_exceptions=True)
    assert out[0] == 2 and out[2] == 4
    assert isinstance(out[1], ValueError) and str(out[1]) == "no -1"


async def test_a_run_that_fails_fails_its_asks_and_the_next_asks_run_again() -> None:
    calls = 0

    async def flaky(keys: Sequence[int]) -> list[int | Failed]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return list(keys)

    g = Gather(flaky)
    out = await asyncio.gather(g.ask(1), g.ask(2), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in out)
    assert await asyncio.gather(g.ask(3), g.ask(4)) == [3, 4]


async def test_a_caller_cancelled_while_waiting_does_not_cancel_the_others() -> None:
    d = Doubler()
    d.gate = asyncio.Event()
    g = Gather(d.run)
    gone = asyncio.ensure_future(g.ask(1))
    kept = asyncio.ensure_future(g.ask(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    d.gate.set()
    assert await kept == 4


async def test_a_run_giving_too_few_answers_is_an_error_not_a_wrong_answer() -> None:
    async def short(keys: Sequence[int]) -> list[int | Failed]:
        return list(keys)[:1]

    g = Gather(short)
    out = await asyncio.gather(g.ask(1), g.ask(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in out)
