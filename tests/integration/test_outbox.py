"""The durable survey outbox: due rows, eligibility, quiet hours, 403s, crashes, expiry.

A fake transport stands in for Telegram (the aiogram transport has its own tests against
the fake Bot API); time is a controllable clock, and the sender runs unthrottled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from routing.policy.root import Policy, parse_policy
from routing.queue import conversations
from routing.store.models import ASSIGNED, Conversation, Customer, Survey
from surveys import outbox, outbox_states
from surveys.outbox import SweepReport
from surveys.outbox_claims import Claim
from surveys.outbox_schedule import quiet_until
from surveys.push import Sender
from surveys.push_pacing import SenderConfig
from surveys.push_transport import PermanentError, Push, RetryAfter, TransientError, Unreachable
from tests.conftest import Db

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeTransport:
    """Records every send; ``blocked`` chats answer 403, ``flaky`` ones fail transiently."""

    blocked: set[int] = field(default_factory=set)
    flaky: set[int] = field(default_factory=set)
    bad: set[int] = field(default_factory=set)  # 400 about the message
    retry_after_once: bool = False
    retry_seconds: float = 0.01
    calls: list[Push] = field(default_factory=list)
    hang_on: int | None = None  # the Nth call never returns (a process killed mid-send)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, push: Push) -> int:
        self.calls.append(push)
        if self.hang_on is not None and len(self.calls) == self.hang_on:
            self.hanging.set()
            await asyncio.Event().wait()
        if self.retry_after_once:
            self.retry_after_once = False
            self.hanging.set()
            raise RetryAfter(self.retry_seconds)
        if push.chat_id in self.blocked:
            raise Unreachable("Forbidden: bot was blocked by the user")
        if push.chat_id in self.flaky:
            raise TransientError("Bad Gateway")
        if push.chat_id in self.bad:
            raise PermanentError("Bad Request: message is too long")
        return 1000 + len(self.calls)

    def per_chat(self) -> Counter[int]:
        return Counter(p.chat_id for p in self.calls)


def fast(transport: Any, config: SenderConfig) -> Sender:
    return Sender(transport, replace(config, global_rate=10_000, per_chat_interval=0))


async def sweep(db: Db, policy: Policy, t: FakeTransport, clock: Clock, **kw: Any) -> SweepReport:
    return await outbox.sweep(db.sessions, policy, t, clock, sender_factory=fast, **kw)


async def customer(db: Db, tg: int | None, **kw: Any) -> int:
    async with db.sessions() as s, s.begin():
        c = Customer(
            external_id=f"X{tg}", telegram_id=tg, tier="C", created_at=NOON, updated_at=NOON, **kw
        )
        s.add(c)
        await s.flush()
        return c.id


async def survey(db: Db, customer_id: int, due: datetime, kind: str = "nps", **kw: Any) -> int:
    async with db.sessions() as s, s.begin():
        row = Survey(
            kind=kind,
            customer_id=customer_id,
            status="scheduled",
            due_at=due,
            created_at=due,
            expires_at=due + timedelta(hours=24),
            **kw,
        )
        s.add(row)
        await s.flush()
        return row.id


async def rows(db: Db) -> dict[int, Survey]:
    async with db.sessions() as s:
        return {r.id: r for r in (await s.execute(select(Survey))).scalars()}


async def test_csat_falls_due_after_the_delay_and_is_sent_once(db: Db, policy: Policy) -> None:
    cid = await customer(db, 501)
    async with db.sessions() as s, s.begin():
        c = await s.get(Customer, cid)
        assert c is not None
        conv = Conversation(
            customer_id=cid, status=ASSIGNED, tier="C", priority=3, origin="x", queued_at=NOON
        )
        s.add(conv)
        await s.flush()
        await conversations.close(s, conv, c, policy, NOON)
    clock, t = Clock(NOON + timedelta(seconds=599)), FakeTransport()
    await sweep(db, policy, t, clock)
    assert t.calls == []  # not due before delay_seconds (600)
    clock.now = NOON + timedelta(seconds=600)
    report = await sweep(db, policy, t, clock)
    assert report.stats is not None and report.stats.sent == 1
    [push] = t.calls
    assert push.chat_id == 501 and push.payload.kind == "csat"
    [row] = (await rows(db)).values()
    assert (row.status, row.message_id, row.chat_id) == ("sent", 1001, 501)
    assert row.sent_at == clock.now
    assert row.expires_at == clock.now + timedelta(hours=24)
    clock.now += timedelta(minutes=5)
    await sweep(db, policy, t, clock)
    assert len(t.calls) == 1


async def test_ineligible_customers_are_skipped_with_a_reason(db: Db, policy: Policy) -> None:
    ids = {
        "guest": await customer(db, 601, is_guest=True),
        "no telegram chat": await customer(db, None),
        "opted out": await customer(db, 603, surveys_opt_out=True),
        "unreachable": await customer(db, 604, unreachable_at=NOON - timedelta(days=1)),
        "ok": await customer(db, 605),
    }
    sids = {reason: await survey(db, cid, NOON) for reason, cid in ids.items()}
    t = FakeTransport()
    report = await sweep(db, policy, t, Clock(NOON))
    assert [p.chat_id for p in t.calls] == [605]
    got = await rows(db)
    for reason, sid in sids.items():
        if reason == "ok":
            assert got[sid].status == "sent"
        else:
            assert (got[sid].status, got[sid].reason) == ("skipped", reason)
    assert sum(report.settled.values()) == 4


async def test_frequency_cap_one_survey_in_14_days(db: Db, policy: Policy) -> None:
    cid = await customer(db, 701)
    first = await survey(db, cid, NOON)
    same_batch = await survey(db, cid, NOON, kind="csat")
    t, clock = FakeTransport(), Clock(NOON)
    await sweep(db, policy, t, clock)
    got = await rows(db)
    assert got[first].status == "sent"
    assert (got[same_batch].status, got[same_batch].reason) == ("skipped", "frequency cap")
    # 13 days later: still capped; 14 days and a minute: sent.
    clock.now = NOON + timedelta(days=13)
    later = await survey(db, cid, clock.now)
    await sweep(db, policy, t, clock)
    assert (await rows(db))[later].reason == "frequency cap"
    clock.now = NOON + timedelta(days=14, minutes=1)
    last = await survey(db, cid, clock.now)
    await sweep(db, policy, t, clock)
    assert (await rows(db))[last].status == "sent"
    assert len(t.calls) == 2
    # frequency_cap_days = 0 switches the cap off.
    no_cap = parse_policy({"surveys": {"frequency_cap_days": 0}})
    again = await survey(db, cid, clock.now)
    await sweep(db, no_cap, t, clock)
    assert (await rows(db))[again].status == "sent"


def test_quiet_hours_window() -> None:
    utc, tokyo = ZoneInfo("UTC"), ZoneInfo("Asia/Tokyo")
    start, end = time(21), time(9)
    at = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
    assert quiet_until(at, utc, start, end) == datetime(2026, 11, 24, 9, tzinfo=utc)
    early = datetime(2026, 11, 23, 3, tzinfo=UTC)
    assert quiet_until(early, utc, start, end) == datetime(2026, 11, 23, 9, tzinfo=utc)
    assert quiet_until(NOON, utc, start, end) is None
    assert quiet_until(datetime(2026, 11, 23, 21, tzinfo=UTC), utc, start, end) is not None
    assert quiet_until(datetime(2026, 11, 23, 9, tzinfo=UTC), utc, start, end) is None
    # 13:00 UTC is 22:00 in Tokyo: quiet there until 09:00 Tokyo time (00:00 UTC).
    assert quiet_until(datetime(2026, 11, 23, 13, tzinfo=UTC), tokyo, start, end) == datetime(
        2026, 11, 24, 9, tzinfo=tokyo
    )
    assert quiet_until(NOON, utc, time(13), time(17)) is None  # a window inside one day
    assert quiet_until(NOON, utc, time(11), time(17)) == datetime(2026, 11, 23, 17, tzinfo=utc)
    assert quiet_until(NOON, utc, time(9), time(9)) is None  # start == end: off


async def test_quiet_hours_defer_in_the_business_or_customer_zone(db: Db) -> None:
    policy = parse_policy({"surveys": {"timezone": "Europe/Berlin"}})
    night = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    local = await customer(db, 801)
    tokyo = await customer(db, 802, timezone="Asia/Tokyo")  # 06:30 there: quiet too
    ny = await customer(db, 803, timezone="America/New_York")  # 16:30 there: fine
    s_local, s_tokyo, s_ny = [await survey(db, c, night) for c in (local, tokyo, ny)]
    t = FakeTransport()
    report = await sweep(db, policy, t, Clock(night))
    assert [p.chat_id for p in t.calls] == [803] and report.deferred == 2
    got = await rows(db)
    assert got[s_ny].status == "sent"
    assert got[s_local].status == "scheduled" and got[s_local].reason == "deferred: quiet hours"
    assert got[s_local].due_at == datetime(2026, 11, 24, 8, tzinfo=UTC)  # 09:00 Berlin
    assert got[s_tokyo].due_at == datetime(2026, 11, 24, 0, tzinfo=UTC)  # 09:00 Tokyo
    await sweep(db, policy, t, Clock(datetime(2026, 11, 24, 0, 0, tzinfo=UTC)))
    assert [p.chat_id for p in t.calls] == [803, 802]
    await sweep(db, policy, t, Clock(datetime(2026, 11, 24, 8, 0, tzinfo=UTC)))
    assert [p.chat_id for p in t.calls] == [803, 802, 801]


async def test_403_marks_the_customer_unreachable_and_skips_them_after(
    db: Db, policy: Policy
) -> None:
    blocked, fine = await customer(db, 901), await customer(db, 902)
    first = await survey(db, blocked, NOON)
    await survey(db, fine, NOON)
    t = FakeTransport(blocked={901})
    clock = Clock(NOON)
    report = await sweep(db, policy, t, clock)
    assert report.stats is not None and report.stats.unreachable == 1
    got = await rows(db)
    assert got[first].status == "failed" and (got[first].reason or "").startswith("unreachable")
    async with db.sessions() as s:
        c = await s.get(Customer, blocked)
        assert c is not None and c.unreachable_at == NOON
    clock.now = NOON + timedelta(days=30)
    later = await survey(db, blocked, clock.now)
    await sweep(db, policy, t, clock)
    assert (await rows(db))[later].reason == "unreachable"
    assert t.per_chat()[901] == 1
    # Writing to the bot again clears the flag (bot.handlers.survey.ReachableAgain).
    async with db.sessions() as s, s.begin():
        assert await outbox.clear_unreachable(s, blocked)


async def test_429_is_retried_and_transient_errors_requeue_the_survey(
    db: Db, policy: Policy
) -> None:
    ok, flaky = await customer(db, 1001), await customer(db, 1002)
    s_ok, s_flaky = await survey(db, ok, NOON), await survey(db, flaky, NOON)
    # 502s for longer than the sweep retries (20 s): the survey goes back to the outbox.
    quick = parse_policy({"surveys": {"sender": {"retry_window_seconds": 20}}})
    t = FakeTransport(flaky={1002}, retry_after_once=True)
    time = VirtualTime()
    report = await outbox.sweep(db.sessions, quick, t, Clock(NOON), sender_factory=time.sender)
    assert report.stats is not None and report.stats.pauses == 1
    assert report.stats.deferred == 1 and report.stats.failed == 0
    got = await rows(db)
    assert got[s_ok].status == "sent"
    row = got[s_flaky]
    assert row.status == "scheduled"
    assert row.reason is not None and row.reason.startswith("retrying: Bad Gateway")
    assert row.due_at == NOON + timedelta(seconds=60)  # backoff_max_seconds
    assert row.attempted_at is None and row.claim_token is None
    assert t.per_chat()[1002] > 5  # retried within the window, not 5 times and failed


class VirtualTime:
    """The sender's clock: its sleeps move time on (after one yield), nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(0.0, seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, target)

    def sender(self, transport: Any, config: SenderConfig) -> Sender:
        fast = replace(config, global_rate=10_000, per_chat_interval=0)
        return Sender(transport, fast, clock=self, sleep=self.sleep)


@dataclass
class Outage(FakeTransport):
    """The Bot API answers 502 until ``until`` on the sender's (virtual) clock."""

    time: VirtualTime = field(default_factory=VirtualTime)
    until: float = 30.0
    refused: int = 0

    async def send(self, push: Push) -> int:
        if self.time() < self.until:
            self.refused += 1
            raise TransientError("Bad Gateway")
        return await super().send(push)


async def test_a_30_second_outage_is_waited_out_and_each_survey_sent_once(
    db: Db, policy: Policy
) -> None:
    sids = [await survey(db, await customer(db, 1700 + i), NOON) for i in range(5)]
    t = Outage()
    report = await outbox.sweep(db.sessions, policy, t, Clock(NOON), sender_factory=t.time.sender)
    assert report.stats is not None
    assert (report.stats.sent, report.stats.failed, report.stats.deferred) == (5, 0, 0)
    assert t.refused >= 5 * 5  # the old budget (5 attempts) would have failed every one
    assert sorted(p.chat_id for p in t.calls) == [1700 + i for i in range(5)]  # once each
    got = await rows(db)
    assert {got[sid].status for sid in sids} == {"sent"}
    assert all(got[sid].reason is None for sid in sids)


async def test_a_long_outage_requeues_until_the_surveys_expiry_then_fails(
    db: Db, policy: Policy
) -> None:
    short = parse_policy({"surveys": {"sender": {"retry_window_seconds": 10}}})
    keeps = await survey(db, await customer(db, 1801), NOON)
    ends = await survey(db, await customer(db, 1802), NOON)
    async with db.sessions() as s, s.begin():
        row = await s.get(Survey, ends)
        assert row is not None
        row.expires_at = NOON + timedelta(seconds=90)
    down = Outage(until=float("inf"))
    clock = Clock(NOON)
    await outbox.sweep(db.sessions, short, down, clock, sender_factory=down.time.sender)
    got = await rows(db)
    assert got[keeps].status == got[ends].status == "scheduled"
    assert (got[keeps].reason or "").startswith("retrying: Bad Gateway")
    assert got[keeps].due_at == NOON + timedelta(seconds=60)
    # Still down a minute later: the one expiring in 90 s has no next try left, so it fails.
    clock.now = NOON + timedelta(seconds=60)
    await outbox.sweep(db.sessions, short, down, clock, sender_factory=down.time.sender)
    got = await rows(db)
    assert got[keeps].status == "scheduled"
    assert got[ends].status == "failed"
    reason = got[ends].reason or ""
    assert reason.startswith("Bad Gateway") and reason.endswith("(not sent before its expiry)")
    assert down.calls == []
    # Telegram is back: sent, once.
    clock.now = NOON + timedelta(seconds=120)
    up = FakeTransport()
    await sweep(db, short, up, clock)
    assert [p.chat_id for p in up.calls] == [1801]
    assert (await rows(db))[keeps].status == "sent"


async def test_a_400_about_the_message_fails_at_once(db: Db, policy: Policy) -> None:
    sid = await survey(db, await customer(db, 1901), NOON)
    t = FakeTransport(bad={1901})
    report = await sweep(db, policy, t, Clock(NOON))
    assert report.stats is not None and report.stats.failed == 1
    row = (await rows(db))[sid]
    assert (row.status, row.reason) == ("failed", "Bad Request: message is too long")
    assert len(t.calls) == 1


async def test_opt_out_applies_at_once_even_to_claimed_rows(db: Db, policy: Policy) -> None:
    a, b = await customer(db, 1101), await customer(db, 1102)
    s_a, s_b = await survey(db, a, NOON), await survey(db, b, NOON)
    later = await survey(db, a, NOON + timedelta(hours=1))

    async def opt_out_after_claim(claim: Claim) -> None:
        # /stop_surveys lands after the sweep claimed the row, before its Telegram call.
        if claim.pushes:
            async with db.sessions() as s, s.begin():
                assert await outbox.set_opt_out(s, a, True) == 2

    t = FakeTransport()
    await sweep(db, policy, t, Clock(NOON), on_claim=opt_out_after_claim)
    assert [p.chat_id for p in t.calls] == [1102]
    got = await rows(db)
    assert (got[s_a].status, got[s_a].reason) == ("skipped", "opted out")
    assert (got[later].status, got[later].reason) == ("skipped", "opted out")
    assert got[s_b].status == "sent"
    async with db.sessions() as s, s.begin():
        await outbox.set_opt_out(s, a, False)
    again = await survey(db, a, NOON + timedelta(days=20))
    await sweep(db, policy, t, Clock(NOON + timedelta(days=20)))
    assert (await rows(db))[again].status == "sent"


async def test_reconcile_sends_unattempted_rows_and_never_resends_unknown_ones(
    db: Db, policy: Policy
) -> None:
    cids = [await customer(db, 1200 + i) for i in range(4)]
    sids = [await survey(db, c, NOON) for c in cids]
    async with db.sessions() as s, s.begin():
        # As a killed process leaves them: claimed only; called Telegram, no outcome; sent
        # with its message id recorded.
        stamps: list[dict[str, Any]] = [
            {"claimed_at": NOON},
            {"claimed_at": NOON, "attempted_at": NOON},
            {"claimed_at": NOON, "attempted_at": NOON, "message_id": 77},
        ]
        for sid, values in zip(sids[:3], stamps, strict=True):
            row = await s.get(Survey, sid)
            assert row is not None
            row.status, row.claim_token = "sending", "dead"
            for k, v in values.items():
                setattr(row, k, v)
    t = FakeTransport()
    report = await sweep(db, policy, t, Clock(NOON + timedelta(seconds=5)))
    assert (report.reconciled.requeued, report.reconciled.unknown) == (1, 1)
    assert report.reconciled.recorded == 1
    assert sorted(p.chat_id for p in t.calls) == [1200, 1203]
    got = await rows(db)
    assert [got[s].status for s in sids] == ["sent", "failed", "sent", "sent"]
    assert got[sids[1]].reason == outbox_states.R_UNKNOWN


async def test_a_sweep_killed_mid_send_loses_nothing_and_duplicates_nothing(
    db: Db, policy: Policy
) -> None:
    cids = [await customer(db, 1300 + i) for i in range(30)]
    for c in cids:
        await survey(db, c, NOON)
    small = parse_policy({"surveys": {"claim_batch": 4, "sender": {"concurrency": 1}}})
    dying = FakeTransport(hang_on=12)
    task = asyncio.create_task(sweep(db, small, dying, Clock(NOON)))
    await asyncio.wait_for(dying.hanging.wait(), 10)
    task.cancel()  # the process dies with one call in flight and claimed rows in memory
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(dying.calls) == 12
    restarted = FakeTransport()
    await sweep(db, small, restarted, Clock(NOON + timedelta(seconds=1)))
    both = dying.per_chat() + restarted.per_chat()
    in_flight = dying.calls[-1].chat_id
    assert both[in_flight] == 1 and in_flight not in restarted.per_chat()
    assert all(both[1300 + i] == 1 for i in range(30)), both
    statuses = Counter(r.status for r in (await rows(db)).values())
    assert statuses == {"sent": 29, "failed": 1}  # the in-flight one: outcome unknown


async def test_expiry_of_unanswered_and_unsent_surveys(db: Db, policy: Policy) -> None:
    a, b = await customer(db, 1401), await customer(db, 1402)
    sent = await survey(db, a, NOON, kind="csat")  # 24 h to answer (NPS: 72 h)
    t, clock = FakeTransport(), Clock(NOON)
    await sweep(db, policy, t, clock)
    unsent = await survey(db, b, NOON + timedelta(hours=1))
    clock.now = NOON + timedelta(hours=23, minutes=59)
    async with db.sessions() as s, s.begin():
        assert await outbox.expire(s, policy, clock.now) == 0
    clock.now = NOON + timedelta(hours=25, minutes=1)
    async with db.sessions() as s, s.begin():
        assert await outbox.expire(s, policy, clock.now) == 2
    got = await rows(db)
    assert (got[sent].status, got[sent].reason) == ("expired", "not answered in time")
    assert (got[unsent].status, got[unsent].reason) == ("expired", "not sent in time")
    await sweep(db, policy, t, clock)
    assert len(t.calls) == 1


async def test_a_crash_while_paused_by_a_429_requeues_the_refused_survey(
    db: Db, policy: Policy
) -> None:
    cid = await customer(db, 1501)
    sid = await survey(db, cid, NOON)
    refused = FakeTransport(retry_after_once=True, retry_seconds=60)
    task = asyncio.create_task(sweep(db, policy, refused, Clock(NOON)))
    await asyncio.wait_for(refused.hanging.wait(), 10)
    for _ in range(200):  # until the refusal is on record; the sender then waits out 60 s
        if (await rows(db))[sid].attempted_at is None:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # A 429 is a refusal, not an unknown outcome: after the restart it is sent, once.
    t = FakeTransport()
    report = await sweep(db, policy, t, Clock(NOON))
    assert (report.reconciled.requeued, report.reconciled.unknown) == (1, 0)
    assert [p.chat_id for p in t.calls] == [1501]
    assert (await rows(db))[sid].status == "sent"


async def test_a_press_before_the_send_is_recorded_counts_and_the_send_is_still_recorded(
    db: Db, policy: Policy
) -> None:
    from surveys import feedback
    from surveys.feedback import AnswerStatus

    cid = await customer(db, 1501)
    sid = await survey(db, cid, NOON)
    for i in range(40):  # others in the same sweep: outcomes are written many at a time
        await survey(db, await customer(db, 1600 + i), NOON)
    clock = Clock(NOON)
    answers: list[Any] = []

    class PressedAtOnce(FakeTransport):
        async def send(self, push: Push) -> int:
            message_id = await super().send(push)
            if push.key == sid:
                # The customer presses while the sweep has yet to write the outcome.
                async with db.sessions() as s, s.begin():
                    answers.append(await feedback.answer(s, sid, cid, 9, clock.now, policy))
                self.pressed = message_id
            return message_id

    transport = PressedAtOnce()
    await sweep(db, policy, transport, clock)
    assert [a.status for a in answers] == [AnswerStatus.RECORDED]
    everything = await rows(db)
    row = everything.pop(sid)
    assert (row.status, row.score, row.message_id) == ("answered", 9, transport.pressed)
    assert {r.status for r in everything.values()} == {"sent"}
    assert row.sent_at == NOON and row.expires_at == NOON + timedelta(hours=24)
    # A survey never attempted can't have been pressed: nothing is recorded for it.
    other_cid = await customer(db, 1502)
    other = await survey(db, other_cid, NOON + timedelta(hours=1))
    async with db.sessions() as s, s.begin():
        late = await feedback.answer(s, other, other_cid, 9, NOON, policy)
    assert late.status is AnswerStatus.UNKNOWN
