"""Tier announcements in the survey outbox (surveys/broadcasts.py, surveys/news.py):
idempotent creation and resumption, who gets a row and why not, the text by language, the
announcement cap apart from the survey cap, quiet hours, expiry, the news opt-out, figures.

A fake transport stands in for Telegram; the e2e test (tests/e2e/test_broadcast_e2e.py)
runs the real bot and command against the fake Bot API.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from routing.policy.root import Policy, parse_policy
from routing.store.broadcast_models import Broadcast
from routing.store.models import Customer, Survey
from surveys import broadcast_figures, broadcasts, outbox
from surveys.broadcasts import BroadcastError, Draft
from surveys.news import NewsPush
from surveys.push import Sender
from surveys.push_pacing import SenderConfig
from surveys.push_transport import Push, Unreachable
from tests.conftest import Db

NOON = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
TEXTS = {"en": "Stores close at 18:00 on 31 December.", "zh_Hans": "12月31日门店18:00关门。"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeTransport:
    blocked: set[int] = field(default_factory=set)
    calls: list[Push] = field(default_factory=list)

    async def send(self, push: Push) -> int:
        self.calls.append(push)
        if push.chat_id in self.blocked:
            raise Unreachable("Forbidden: bot was blocked by the user")
        return 1000 + len(self.calls)

    def texts(self) -> dict[int, str]:
        return {p.chat_id: p.payload.text for p in self.calls if isinstance(p.payload, NewsPush)}


def fast(transport: Any, config: SenderConfig) -> Sender:
    return Sender(transport, replace(config, global_rate=10_000, per_chat_interval=0))


async def sweep(db: Db, policy: Policy, t: FakeTransport, now: datetime) -> outbox.SweepReport:
    return await outbox.sweep(db.sessions, policy, t, Clock(now), sender_factory=fast)


async def add(db: Db, tg: int | None, tier: str = "A", **kw: Any) -> int:
    async with db.sessions() as s, s.begin():
        c = Customer(
            external_id=f"X{tg}-{tier}-{len(kw)}-{id(kw)}",
            telegram_id=tg,
            tier=tier,
            created_at=NOON,
            updated_at=NOON,
            **kw,
        )
        s.add(c)
        await s.flush()
        return c.id


async def news_rows(db: Db, key: str | None = None) -> dict[int, Survey]:
    async with db.sessions() as s:
        q = select(Survey).where(Survey.kind == "news")
        if key is not None:
            q = q.where(Survey.campaign == key)
        return {r.customer_id: r for r in (await s.execute(q)).scalars()}


def draft(policy: Policy, tiers: str = "VIP,A", at: datetime = NOON, **kw: Any) -> Draft:
    return Draft.make(policy, tiers.split(","), kw.pop("texts", TEXTS), at, **kw)


# --------------------------------------------------------------------------- the draft


def test_the_draft_checks_tiers_languages_and_lengths(policy: Policy) -> None:
    d = draft(policy, "A,VIP", texts={"zh-CN": "你好", "en": "  Hello\n"})
    assert d.tiers == ("VIP", "A")  # the policy's order
    assert dict(d.texts) == {"en": "Hello", "zh_Hans": "你好"}
    assert d.key.startswith("news:20261210T1200Z:") and len(d.key) <= 64
    assert draft(policy, "VIP,A").key != draft(policy, "VIP").key
    with pytest.raises(BroadcastError, match="unknown tier 'Z'"):
        draft(policy, "VIP,Z")
    with pytest.raises(BroadcastError, match="no tier"):
        draft(policy, " , ")
    with pytest.raises(BroadcastError, match="not one the bot speaks"):
        draft(policy, texts={"en": "x", "fr": "y"})
    with pytest.raises(BroadcastError, match="no text in the default language en"):
        draft(policy, texts={"zh_Hans": "你好"})
    with pytest.raises(BroadcastError, match="the en text is empty"):
        draft(policy, texts={"en": " \n"})
    with pytest.raises(BroadcastError, match="two texts for zh_Hans"):
        draft(policy, texts={"en": "x", "zh": "a", "zh_Hans": "b"})
    assert draft(policy, texts={"en": "x" * 4096})
    with pytest.raises(BroadcastError, match="4097 characters; Telegram allows 4096"):
        draft(policy, texts={"en": "x" * 4097})
    # Telegram counts UTF-16 code units: an emoji outside the BMP is two.
    with pytest.raises(BroadcastError, match="4098 characters"):
        draft(policy, texts={"en": "😀" * 2049})
    with pytest.raises(BroadcastError, match="needs a zone"):
        draft(policy, at=NOON.replace(tzinfo=None))


# --------------------------------------------------------------------------- creation


async def test_rows_for_reachable_customers_skips_with_reasons_and_counts(
    db: Db, policy: Policy
) -> None:
    ok = [await add(db, 100 + i, "VIP" if i < 3 else "A") for i in range(8)]
    opted = await add(db, 200, news_opt_out=True)
    blocked = await add(db, 201, unreachable_at=NOON - timedelta(days=1))
    survey_opt = await add(db, 202, surveys_opt_out=True)  # still gets announcements
    await add(db, 300, is_guest=True)
    await add(db, None)  # no Telegram chat
    await add(db, 400, "B")  # another tier
    d = draft(policy)
    made = await broadcasts.create(db.sessions, d, policy, NOON, created_by="ops")
    assert (made.key, made.rows, made.written, made.resumed, made.existed) == (
        d.key, 11, 11, False, False,
    )  # fmt: skip
    rows = await news_rows(db, d.key)
    assert set(rows) == {*ok, opted, blocked, survey_opt}
    assert (rows[opted].status, rows[opted].reason) == ("skipped", "opted out")
    assert (rows[blocked].status, rows[blocked].reason) == ("skipped", "unreachable")
    assert {rows[c].status for c in [*ok, survey_opt]} == {"scheduled"}
    assert rows[ok[0]].due_at == NOON
    assert rows[ok[0]].expires_at == NOON + timedelta(hours=48)
    async with db.sessions() as s:
        b = await s.get(Broadcast, d.key)
        assert b is not None and b.finished_at == NOON and b.created_by == "ops"
        assert (b.recipients, b.guests, b.no_chat) == (11, 1, 1)
        assert json.loads(b.texts) == TEXTS and b.default_language == "en"

    # The same command again: nothing new, nothing twice.
    again = await broadcasts.create(db.sessions, d, policy, NOON + timedelta(minutes=1))
    assert (again.key, again.existed, again.written, again.rows) == (d.key, True, 0, 11)
    assert len(await news_rows(db)) == 11


async def test_a_crash_part_way_is_resumed_without_a_second_row(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await add(db, 1000 + i) for i in range(25)]
    d = draft(policy, "A")
    monkeypatch.setattr(broadcasts, "BATCH", 10)
    real_insert = broadcasts.insert_once
    calls = 0

    def dying_insert(session: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the command dies after its first batch was committed
            raise RuntimeError("killed")
        return real_insert(session)

    monkeypatch.setattr(broadcasts, "insert_once", dying_insert)
    with pytest.raises(RuntimeError):
        await broadcasts.create(db.sessions, d, policy, NOON)
    assert len(await news_rows(db)) == 10
    async with db.sessions() as s:
        b = await s.get(Broadcast, d.key)
        assert b is not None and b.finished_at is None

    # The bot's tick leaves it to the command for a while, then finishes it.
    assert await broadcasts.resume_unfinished(db.sessions, NOON + timedelta(minutes=5)) == []
    monkeypatch.setattr(broadcasts, "insert_once", real_insert)
    done = await broadcasts.resume_unfinished(db.sessions, NOON + timedelta(minutes=10))
    assert [(r.key, r.rows, r.written, r.resumed) for r in done] == [(d.key, 25, 15, True)]
    assert set(await news_rows(db)) == set(ids)
    assert await broadcasts.resume_unfinished(db.sessions, NOON + timedelta(hours=1)) == []


async def test_the_same_command_without_at_resumes_or_refuses(db: Db, policy: Policy) -> None:
    for i in range(3):
        await add(db, 2000 + i)
    first = draft(policy, "A", at_given=False)
    async with db.sessions() as s, s.begin():  # a command that died before writing any row
        s.add(
            Broadcast(
                key=first.key, tiers="A", texts=json.dumps(TEXTS), default_language="en",
                digest=first.digest, fire_at=NOON, expires_at=NOON + timedelta(hours=48),
                created_at=NOON,
            )
        )  # fmt: skip
    # Run again two minutes later ("now" is another minute): the unfinished one is finished.
    later = NOON + timedelta(minutes=2)
    rerun = draft(policy, "A", at=later, at_given=False)
    assert rerun.key != first.key
    made = await broadcasts.create(db.sessions, rerun, policy, later)
    assert (made.key, made.resumed, made.rows, made.fire_at) == (first.key, True, 3, NOON)
    # Once more: the same announcement went out within 24 h: refused, nothing written.
    with pytest.raises(BroadcastError, match=f"created as {first.key}.*give --at"):
        await broadcasts.create(
            db.sessions, draft(policy, "A", at=later, at_given=False), policy, later
        )
    # A chosen time is a new broadcast of the same text; so is the same command a day on.
    chosen = draft(policy, "A", at=later + timedelta(hours=1))
    assert (await broadcasts.create(db.sessions, chosen, policy, later)).rows == 3
    day = later + timedelta(days=1, minutes=1)
    assert (await broadcasts.create(db.sessions, draft(policy, "A", at=day, at_given=False),
                                    policy, day)).rows == 3  # fmt: skip
    async with db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Broadcast)) == 3


# --------------------------------------------------------------------------- sending


async def test_sent_once_in_the_customers_language_and_never_expired(
    db: Db, policy: Policy
) -> None:
    zh = await add(db, 501, language="zh-CN")
    en = await add(db, 502, language="en-GB")
    fr = await add(db, 503, language="fr")  # no French text: the default language's
    none = await add(db, 504)
    blocked = await add(db, 505)
    d = draft(policy)
    await broadcasts.create(db.sessions, d, policy, NOON)
    t = FakeTransport(blocked={505})
    report = await sweep(db, policy, t, NOON)
    assert t.texts() == {
        501: TEXTS["zh_Hans"], 502: TEXTS["en"], 503: TEXTS["en"], 504: TEXTS["en"],
        505: TEXTS["en"],
    }  # fmt: skip
    assert {p.payload.language for p in t.calls if p.chat_id == 501} == {"zh_Hans"}
    assert report.stats is not None and report.stats.sent == 4
    rows = await news_rows(db)
    assert {rows[c].status for c in (zh, en, fr, none)} == {"sent"}
    assert rows[zh].message_id is not None and rows[zh].chat_id == 501
    assert rows[blocked].status == "failed" and rows[blocked].reason.startswith("unreachable")
    async with db.sessions() as s:
        assert (await s.get(Customer, blocked)).unreachable_at is not None  # type: ignore[union-attr]

    # Nothing is sent twice; a sent announcement asks nothing, so it never "expires".
    await sweep(db, policy, t, NOON + timedelta(minutes=1))
    assert len(t.calls) == 5
    async with db.sessions() as s, s.begin():
        await outbox.expire(s, policy, NOON + timedelta(days=30))
    assert {r.status for r in (await news_rows(db)).values()} == {"sent", "failed"}


async def test_an_unsent_announcement_expires_after_its_hours(db: Db, policy: Policy) -> None:
    cid = await add(db, 601)
    await broadcasts.create(db.sessions, draft(policy, "A"), policy, NOON)
    async with db.sessions() as s, s.begin():
        assert await outbox.expire(s, policy, NOON + timedelta(hours=48)) == 1
    row = (await news_rows(db))[cid]
    assert (row.status, row.reason) == ("expired", "not sent in time")
    t = FakeTransport()
    await sweep(db, policy, t, NOON + timedelta(hours=49))
    assert t.calls == []


async def test_quiet_hours_defer_an_announcement(db: Db) -> None:
    policy = parse_policy({"surveys": {"timezone": "UTC"}})
    tokyo = await add(db, 701, timezone="Asia/Tokyo")  # 21:00 there at noon UTC
    here = await add(db, 702)
    await broadcasts.create(db.sessions, draft(policy, "A"), policy, NOON)
    t = FakeTransport()
    report = await sweep(db, policy, t, NOON)
    assert [p.chat_id for p in t.calls] == [702] and report.deferred == 1
    row = (await news_rows(db))[tokyo]
    assert row.status == "scheduled" and row.reason == "deferred: quiet hours"
    assert row.due_at == datetime(2026, 12, 11, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    await sweep(db, policy, t, datetime(2026, 12, 11, 0, 1, tzinfo=UTC))
    assert [p.chat_id for p in t.calls] == [702, 701]
    assert (await news_rows(db))[here].status == "sent"


async def test_the_announcement_cap_is_apart_from_the_survey_cap(db: Db, policy: Policy) -> None:
    surveyed = await add(db, 801)  # sent a survey yesterday: still gets the announcement
    announced = await add(db, 802)  # sent an announcement 3 days ago: capped (7 days)
    long_ago = await add(db, 803)  # sent one 8 days ago: not capped
    async with db.sessions() as s, s.begin():
        for cid, kind, days, camp in (
            (surveyed, "nps", 1, None),
            (announced, "news", 3, "news:old"),
            (long_ago, "news", 8, "news:older"),
        ):
            at = NOON - timedelta(days=days)
            s.add(Survey(kind=kind, customer_id=cid, status="sent", due_at=at, created_at=at,
                         sent_at=at, campaign=camp))  # fmt: skip
    d = draft(policy, "A")
    async with db.sessions() as s:
        figures = await broadcast_figures.plan(s, d, policy)
    assert figures.tiers["A"].skipped["frequency cap"] == 1
    assert figures.tiers["A"].receive == Counter({"en": 2})
    await broadcasts.create(db.sessions, d, policy, NOON)
    # A CSAT due now for the customer who gets the announcement: not held back by it.
    async with db.sessions() as s, s.begin():
        s.add(Survey(kind="csat", customer_id=long_ago, status="scheduled", due_at=NOON,
                     created_at=NOON, expires_at=NOON + timedelta(hours=24)))  # fmt: skip
    t = FakeTransport()
    report = await sweep(db, policy, t, NOON)
    assert report.settled == {"frequency cap": 1}
    assert Counter(p.chat_id for p in t.calls) == Counter({801: 1, 803: 2})
    rows = await news_rows(db, d.key)
    assert (rows[announced].status, rows[announced].reason) == ("skipped", "frequency cap")

    # Off (0): nobody is capped.
    off = parse_policy({"care": {"announcements": {"frequency_cap_days": 0}}})
    d2 = draft(off, "A", at=NOON + timedelta(hours=1))
    await broadcasts.create(db.sessions, d2, off, NOON + timedelta(hours=1))
    t2 = FakeTransport()
    await sweep(db, off, t2, NOON + timedelta(hours=1))
    assert sorted(p.chat_id for p in t2.calls) == [801, 802, 803]


async def test_two_broadcasts_due_together_reach_a_customer_once(db: Db, policy: Policy) -> None:
    cid = await add(db, 901, "VIP")
    await broadcasts.create(db.sessions, draft(policy, "VIP"), policy, NOON)
    await broadcasts.create(db.sessions, draft(policy, "VIP,A"), policy, NOON)
    t = FakeTransport()
    await sweep(db, policy, t, NOON)
    assert [p.chat_id for p in t.calls] == [901]
    async with db.sessions() as s:
        got = Counter(
            (r.status, r.reason)
            for r in (await s.execute(select(Survey).where(Survey.customer_id == cid))).scalars()
        )
    assert got == Counter({("sent", None): 1, ("skipped", "frequency cap"): 1})


# --------------------------------------------------------------------------- opt-out


async def test_stop_news_skips_pending_announcements_and_not_surveys(
    db: Db, policy: Policy
) -> None:
    cid = await add(db, 1001)
    other = await add(db, 1002)
    d = draft(policy, "A")
    await broadcasts.create(db.sessions, d, policy, NOON)
    async with db.sessions() as s, s.begin():
        s.add(Survey(kind="nps", customer_id=cid, status="scheduled", due_at=NOON,
                     created_at=NOON, expires_at=NOON + timedelta(hours=72)))  # fmt: skip
    async with db.sessions() as s, s.begin():
        assert await outbox.set_opt_out(s, cid, True, news=True) == 1
    # /stop_surveys skips the survey, not the other customer's announcement.
    async with db.sessions() as s, s.begin():
        assert await outbox.set_opt_out(s, other, True) == 0
    t = FakeTransport()
    await sweep(db, policy, t, NOON)
    kinds = Counter((p.chat_id, type(p.payload).__name__) for p in t.calls)
    assert kinds == Counter({(1001, "SurveyPush"): 1, (1002, "NewsPush"): 1})
    rows = await news_rows(db)
    assert (rows[cid].status, rows[cid].reason) == ("skipped", "opted out")
    async with db.sessions() as s, s.begin():
        assert await outbox.set_opt_out(s, cid, False, news=True) == 0
        assert (await s.get(Customer, cid)).news_opt_out is False  # type: ignore[union-attr]


async def test_an_opt_out_after_creation_is_honoured_at_send_time(db: Db, policy: Policy) -> None:
    cid = await add(db, 1101)
    await broadcasts.create(db.sessions, draft(policy, "A"), policy, NOON)
    async with db.sessions() as s, s.begin():  # e.g. set by an import, not /stop_news
        (await s.get(Customer, cid)).news_opt_out = True  # type: ignore[union-attr]
    t = FakeTransport()
    report = await sweep(db, policy, t, NOON)
    assert t.calls == [] and report.settled == {"opted out": 1}


# --------------------------------------------------------------------------- figures


async def test_progress_counts_states_and_reasons(db: Db, policy: Policy) -> None:
    for i in range(4):
        await add(db, 1200 + i, language="zh_Hans" if i == 0 else None)
    await add(db, 1210, news_opt_out=True)
    await add(db, 1211, is_guest=True)
    await add(db, None)
    d = draft(policy, "A")
    async with db.sessions() as s:
        before = await broadcast_figures.plan(s, d, policy)
    assert before.receivers == 4
    assert before.tiers["A"].receive == Counter({"en": 3, "zh_Hans": 1})
    assert before.skipped() == Counter({"opted out": 1, "guest": 1, "no telegram chat": 1})
    await broadcasts.create(db.sessions, d, policy, NOON)
    async with db.sessions() as s:
        (p,) = await broadcast_figures.progress(s)
    assert (p.rows, p.pending, p.sent, p.done, p.finished) == (5, 4, 0, 1, True)
    assert p.languages == ("en", "zh_Hans")
    await sweep(db, policy, FakeTransport(blocked={1203}), NOON)
    async with db.sessions() as s:
        (p,) = await broadcast_figures.progress(s, d.key)
        assert await broadcast_figures.progress(s, "news:nope") == []
    assert (p.rows, p.pending, p.sent, p.share_done) == (5, 0, 3, 1.0)
    assert p.skipped == Counter({"opted out": 1, "guest": 1, "no telegram chat": 1})
    assert p.failed == Counter({"unreachable": 1})
