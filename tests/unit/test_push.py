"""The push sender in virtual time: a fake clock, a sleep that advances it, a scripted
transport that answers at once. Nothing here really sleeps."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable

import pytest

from surveys.push import PushQueue, Sender, Stats
from surveys.push_pacing import RateLimiter, SenderConfig
from surveys.push_transport import (
    Outcome,
    PermanentError,
    Push,
    Result,
    RetryAfter,
    TransientError,
    Unreachable,
)


class VirtualClock:
    """Only the sender's dispatch loop sleeps, so a sleep can simply move time forward: after
    one yield, so sends already started still see the time they were started at."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(0.0, seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, target)


class ScriptedTransport:
    """Answers each push's calls from its script in order (None = success), then succeeds."""

    def __init__(self, clock: VirtualClock, script: dict[str | int, list[Exception | None]]):
        self.clock = clock
        self.script = {key: list(answers) for key, answers in script.items()}
        self.calls: list[tuple[float, Push]] = []
        self.delivered: list[Push] = []
        self.always: dict[str | int, Exception] = {}
        self.called = asyncio.Event()

    async def send(self, push: Push) -> None:
        self.calls.append((self.clock(), push))
        self.called.set()
        if push.key in self.always:
            raise self.always[push.key]
        answers = self.script.get(push.key)
        answer = answers.pop(0) if answers else None
        if answer is not None:
            raise answer
        self.delivered.append(push)

    def times(self, chat_id: int | None = None) -> list[float]:
        return [t for t, p in self.calls if chat_id is None or p.chat_id == chat_id]


def pushes(chats: Iterable[int], prefix: str = "p") -> list[Push]:
    return [Push(f"{prefix}{i}", chat, f"text {i}") for i, chat in enumerate(chats)]


async def run(
    transport: ScriptedTransport,
    items: object,
    clock: VirtualClock,
    **config: float,
) -> tuple[Stats, list[Result]]:
    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)

    sender = Sender(
        transport,
        SenderConfig(**config),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    stats = await sender.run(items, collect)  # type: ignore[arg-type]
    return stats, results


def by_key(results: list[Result]) -> dict[str | int, Result]:
    keys = Counter(r.push.key for r in results)
    assert max(keys.values()) == 1, f"on_result called twice for {keys.most_common(1)}"
    return {r.push.key: r for r in results}


async def test_global_rate_never_exceeded_in_any_second() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {})
    stats, results = await run(transport, pushes(range(300)), clock, global_rate=25)
    times = transport.times()
    assert len(times) == 300 and stats.sent == 300
    # Half-open one-second windows, as Telegram (and the fake) count them.
    assert all(times[i + 25] - times[i] >= 1.0 - 1e-9 for i in range(len(times) - 25))
    assert 24.0 <= stats.rate <= 25.5
    assert stats.elapsed == pytest.approx(300 / 25, abs=0.1)
    assert all(r.outcome is Outcome.SENT and r.attempts == 1 for r in results)


async def test_per_chat_interval_while_other_chats_proceed() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {})
    busy = 1
    items = pushes([busy] * 4 + list(range(100, 150)))
    stats, results = await run(transport, items, clock, global_rate=1000, per_chat_interval=1.0)
    mine = transport.times(busy)
    assert len(mine) == 4
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(mine))
    # The other 50 chats did not queue behind chat 1's pacing.
    others = [t for t, p in transport.calls if p.chat_id != busy]
    assert len(others) == 50 and max(others) < 0.2
    # Pushes to one chat keep their order.
    assert [p.key for _, p in transport.calls if p.chat_id == busy] == ["p0", "p1", "p2", "p3"]
    assert stats.sent == 54 and len(by_key(results)) == 54


async def test_429_pauses_everything_then_retries_the_same_push_once() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {"p10": [RetryAfter(3)]})
    stats, results = await run(transport, pushes(range(40)), clock, global_rate=20)
    hit = next(t for t, p in transport.calls if p.key == "p10")
    after = [t for t, p in transport.calls if t > hit]
    assert after and min(after) >= hit + 3.0
    assert [p.key for p in transport.delivered].count("p10") == 1
    assert len(transport.delivered) == 40 == len({p.key for p in transport.delivered})
    result = by_key(results)["p10"]
    assert (result.outcome, result.attempts) == (Outcome.SENT, 2)
    assert (stats.pauses, stats.paused_seconds, stats.retries) == (1, 3.0, 1)
    assert stats.failed == 0 and stats.sent == 40


async def test_429s_and_transient_errors_spend_time_not_attempts() -> None:
    clock = VirtualClock()
    script: dict[str | int, list[Exception | None]] = {
        "p0": [RetryAfter(1), TransientError("x"), RetryAfter(1), TransientError("y")] * 3
    }
    transport = ScriptedTransport(clock, script)
    transport.always["p1"] = RetryAfter(1)
    stats, results = await run(
        transport, pushes([1, 2]), clock, max_attempts=3, backoff_base=0.1, retry_window=30
    )
    got = by_key(results)
    assert (got["p0"].outcome, got["p0"].attempts) == (Outcome.SENT, 13)  # max_attempts: 3
    # Refused for the whole window: handed back (DEFERRED), not failed.
    assert got["p1"].outcome is Outcome.DEFERRED
    assert got["p1"].reason is not None and "rate limited" in got["p1"].reason
    assert got["p1"].attempts > 20
    assert (stats.deferred, stats.failed, stats.sent) == (1, 0, 1)


async def test_unreachable_chat_is_skipped_without_transport_calls() -> None:
    clock = VirtualClock()
    blocked = 7
    transport = ScriptedTransport(clock, {"a0": [Unreachable("Forbidden: bot was blocked")]})
    queue = PushQueue()
    late = Push("late", blocked, "again")

    async def feed() -> None:
        for p in pushes([blocked, blocked, 8, blocked], prefix="a"):
            queue.put(p)
        await transport.called.wait()  # the 403 has been answered before "late" arrives
        await asyncio.sleep(0)
        queue.put(late)
        queue.put(Push("other", 9, "hi"))
        queue.close()

    feeder = asyncio.create_task(feed())
    stats, results = await run(transport, queue, clock)
    await feeder
    assert [p.key for _, p in transport.calls if p.chat_id == blocked] == ["a0"]
    got = by_key(results)
    assert got["a0"].reason == "Forbidden: bot was blocked" and got["a0"].attempts == 1
    for key in ("a0", "a1", "a3", "late"):
        assert got[key].outcome is Outcome.UNREACHABLE
    assert got["a1"].attempts == 0 and got["late"].attempts == 0
    assert got["a2"].outcome is got["other"].outcome is Outcome.SENT
    assert (stats.unreachable, stats.sent, stats.failed) == (4, 2, 0)


async def test_transient_errors_back_off_growing_then_defer_with_the_reason() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {"p1": [TransientError("502 Bad Gateway")] * 2})
    transport.always["p0"] = TransientError("Internal Server Error")
    stats, results = await run(
        transport,
        pushes([1, 2]),
        clock,
        max_attempts=2,  # not what bounds Telegram's transient answers
        backoff_base=0.5,
        backoff_max=8,
        retry_window=60,
        per_chat_interval=0,
    )
    times = transport.times(1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g2 >= g1 for g1, g2 in itertools.pairwise(gaps[:4])), gaps
    for n, gap in enumerate(gaps, start=1):  # equal jitter: between half and all of the cap
        cap = min(8, 0.5 * 2 ** (n - 1))
        assert cap / 2 - 1e-9 <= gap <= cap + 0.05, (n, gap)
    # Retried for the window (60 s from the first failure), never a try past it.
    assert 50 <= times[-1] - times[0] <= 60 and len(times) > 8
    got = by_key(results)
    assert got["p0"].outcome is Outcome.DEFERRED and got["p0"].attempts == len(times)
    assert got["p0"].reason is not None and "Internal Server Error" in got["p0"].reason
    assert (got["p1"].outcome, got["p1"].attempts) == (Outcome.SENT, 3)
    assert (stats.deferred, stats.failed, stats.sent, stats.pauses) == (1, 0, 1, 0)


async def test_a_30_second_outage_then_each_push_is_sent_once() -> None:
    clock = VirtualClock()

    class Outage(ScriptedTransport):
        async def send(self, push: Push) -> None:
            if clock() < 30:  # the Bot API answers 502 for 30 s
                self.calls.append((clock(), push))
                raise TransientError("Bad Gateway")
            await super().send(push)

    transport = Outage(clock, {})
    stats, results = await run(transport, pushes(range(20)), clock, global_rate=50)
    assert sorted(p.key for p in transport.delivered) == sorted(f"p{i}" for i in range(20))
    got = by_key(results)
    assert all(r.outcome is Outcome.SENT for r in got.values())
    assert all(r.attempts >= 5 for r in got.values())  # more than the old budget allowed
    # Back within a backoff cap (60 s) of the end of the outage, not hours later.
    assert max(r.sent_at or 0 for r in got.values()) < 30 + 60
    assert (stats.sent, stats.failed, stats.deferred) == (20, 0, 0)


async def test_a_deferred_push_may_be_handed_in_again_in_the_same_run() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {"k": [TransientError("Bad Gateway")] * 3})
    queue = PushQueue()
    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)
        if result.outcome is Outcome.DEFERRED:
            queue.put(result.push)  # as the outbox does once the row is due again
        else:
            queue.close()

    sender = Sender(transport, SenderConfig(retry_window=0), clock=clock, sleep=clock.sleep)
    queue.put(Push("k", 1, "a"))
    stats = await sender.run(queue, collect)
    assert [r.outcome for r in results] == [Outcome.DEFERRED] * 3 + [Outcome.SENT]
    assert (stats.deferred, stats.sent, stats.duplicates) == (3, 1, 0)


async def test_backoff_is_capped() -> None:
    sender = Sender(
        ScriptedTransport(VirtualClock(), {}),
        SenderConfig(backoff_base=1, backoff_max=4),
        rng=random.Random(1),
    )
    assert all(2 <= sender.backoff(n) <= 4 for n in range(3, 30))


async def test_permanent_error_fails_at_once() -> None:
    clock = VirtualClock()
    error = PermanentError("Bad Request: can't parse entities")
    transport = ScriptedTransport(clock, {"p0": [error]})
    stats, results = await run(transport, pushes([1, 1]), clock)
    got = by_key(results)
    assert got["p0"].outcome is Outcome.FAILED and got["p0"].attempts == 1
    assert got["p0"].reason == "Bad Request: can't parse entities"
    assert got["p1"].outcome is Outcome.SENT  # the chat itself is fine
    assert (stats.failed, stats.sent, stats.retries) == (1, 1, 0)


async def test_unexpected_transport_exception_is_retried_but_bounded() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {})
    transport.always["p0"] = KeyError("oops")
    stats, results = await run(transport, pushes([1]), clock, max_attempts=2, backoff_base=0.01)
    assert results[0].outcome is Outcome.FAILED and results[0].attempts == 2
    assert stats.failed == 1


async def test_on_result_once_per_push_and_stats_add_up() -> None:
    clock = VirtualClock()
    rng = random.Random(3)
    chats = [rng.randrange(60) for _ in range(400)]
    script: dict[str | int, list[Exception | None]] = {}
    for i in range(0, 400, 7):
        script[f"p{i}"] = [TransientError("net")]
    for i in range(3, 400, 50):
        script[f"p{i}"] = [RetryAfter(2)]
    for i in range(5, 400, 97):
        script[f"p{i}"] = [PermanentError("bad")]
    transport = ScriptedTransport(clock, script)
    transport.always["p1"] = Unreachable("blocked")  # chats[1] becomes unreachable

    async def stream() -> AsyncIterator[Push]:
        for p in pushes(chats):
            yield p

    stats, results = await run(transport, stream(), clock, global_rate=100, concurrency=8)
    got = by_key(results)
    assert len(got) == 400
    counts = Counter(r.outcome for r in results)
    assert counts[Outcome.SENT] == stats.sent
    # p1 is the first push its chat gets a 403 for; it and every later push there are skipped.
    assert counts[Outcome.UNREACHABLE] == stats.unreachable == chats[1:].count(chats[1])
    assert counts[Outcome.FAILED] == stats.failed
    assert stats.sent + stats.unreachable + stats.failed == 400
    sent_keys = [p.key for p in transport.delivered]
    assert len(sent_keys) == len(set(sent_keys)) == stats.sent
    assert {k for k, r in got.items() if r.outcome is Outcome.SENT} == set(sent_keys)
    assert stats.pauses == sum(1 for i in range(3, 400, 50) if chats[i] != chats[1])
    assert stats.retries == len(transport.calls) - sum(1 for r in results if r.attempts > 0)
    assert all(r.sent_at is not None for r in results if r.outcome is Outcome.SENT)


async def test_concurrency_bounds_sends_in_flight() -> None:
    in_flight = peak = 0

    class Slow:
        async def send(self, push: Push) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            for _ in range(5):
                await asyncio.sleep(0)
            in_flight -= 1

    clock = VirtualClock()
    sender = Sender(Slow(), SenderConfig(global_rate=1e6, concurrency=4), clock=clock,
                    sleep=clock.sleep)  # fmt: skip
    stats = await sender.run(pushes(range(50)))
    assert stats.sent == 50 and peak == 4


async def test_duplicate_keys_in_one_run_are_sent_once() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock, {})
    items = [Push("k", 1, "a"), Push("k", 1, "a"), Push("j", 2, "b")]
    stats, results = await run(transport, items, clock)
    assert [p.key for p in transport.delivered] == ["k", "j"]
    assert (stats.sent, stats.duplicates, len(results)) == (2, 1, 2)


async def test_on_result_failure_stops_the_run() -> None:
    clock = VirtualClock()
    sender = Sender(ScriptedTransport(clock, {}), clock=clock, sleep=clock.sleep)

    async def broken(result: Result) -> None:
        raise RuntimeError("database is gone")

    with pytest.raises(RuntimeError, match="database is gone"):
        await sender.run(pushes(range(10)), broken)


async def test_limiter_catches_up_on_late_timers_without_exceeding_the_window() -> None:
    limiter = RateLimiter(500)
    now, starts = 0.0, []
    while now < 10:
        at = limiter.available_at(now)
        if at > now:
            now = at + 0.4 / 500  # every timer fires 40% of an interval late
            continue
        limiter.take(now)
        starts.append(now)
    assert len(starts) >= 0.99 * 500 * 10
    assert all(starts[i + 500] - starts[i] >= 1.0 - 1e-9 for i in range(len(starts) - 500))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SenderConfig(global_rate=0)
    with pytest.raises(ValueError):
        SenderConfig(max_attempts=0)
    with pytest.raises(ValueError):
        SenderConfig(retry_window=-1)


async def test_a_broken_input_stops_the_run_with_its_error() -> None:
    clock = VirtualClock()
    sender = Sender(ScriptedTransport(clock, {}), clock=clock, sleep=clock.sleep)

    async def broken() -> AsyncIterator[Push]:
        yield Push(1, 1, "a")
        raise ConnectionError("outbox query failed")

    with pytest.raises(ConnectionError, match="outbox query failed"):
        await sender.run(broken())
