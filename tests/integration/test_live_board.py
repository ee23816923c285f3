"""routing/reports/live.py on a known state, on SQLite and PostgreSQL: every figure the
wallboard and the scrape-time gauges show, checked against the rows that make it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from routing.policy.root import Policy
from routing.reports import live
from routing.store.care_models import Complaint, ComplaintEvent
from routing.store.models import Agent, Conversation, Customer, SlaEvent, Survey
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TODAY = NOW.replace(hour=0)


def at(h: int, m: int = 0, s: int = 0) -> datetime:
    return NOW.replace(hour=h, minute=m, second=s)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


async def _seed(db: Db) -> dict[str, int]:
    convs: dict[str, Conversation] = {}
    async with db.sessions() as s, s.begin():

        def customer(key: str, tier: str, name: str | None) -> Customer:
            c = Customer(external_id=key, name=name, tier=tier, created_at=NOW, updated_at=NOW)
            s.add(c)
            return c

        vip, vip2, a, b, c = (
            customer("V-1", "VIP", "Vera"),
            customer("V-2", "VIP", "Vic"),
            customer("A-1", "A", "Al"),
            customer("B-1", "B", None),
            customer("C-1", "C", "Cy"),
        )
        ann = Agent(telegram_id=1, name="Ann", max_chats=3, online=True, created_at=NOW)
        bob = Agent(
            telegram_id=2, name="Bob", max_chats=2, online=True, tiers="VIP,A", created_at=NOW
        )
        zed = Agent(telegram_id=3, name="Zed", max_chats=2, online=False, created_at=NOW)
        s.add_all([ann, bob, zed])
        await s.flush()

        def conv(key: str, who: Customer, status: str, queued: datetime, **kw: Any) -> None:
            row = Conversation(
                customer_id=who.id, status=status, tier=who.tier, priority=0, origin="test",
                queued_at=queued, **kw,
            )  # fmt: skip
            s.add(row)
            convs[key] = row

        conv("vip_waiting", vip, "queued", ago(50))  # warning: 50 s of 60
        conv("a_waiting", a, "queued", ago(400))  # breached: 400 s of 300
        # Held for Bob for 20 more seconds (a sticky window).
        conv("b_waiting", b, "queued", ago(10), reserved_agent_id=bob.id,
             reserved_until=NOW + timedelta(seconds=20))  # fmt: skip
        conv("vip_met", vip2, "assigned", at(10), agent_id=ann.id, assigned_at=at(10, 0, 20),
             first_response_at=at(10, 0, 30))  # fmt: skip
        conv("c_yesterday", c, "assigned", TODAY - timedelta(hours=1), agent_id=ann.id,
             assigned_at=TODAY, first_response_at=TODAY)  # fmt: skip
        conv("b_missed", b, "closed", at(9), agent_id=bob.id, first_response_at=at(9, 20),
             closed_at=at(9, 30))  # fmt: skip
        conv("a_met", a, "closed", at(8), agent_id=bob.id, first_response_at=at(8, 1),
             closed_at=at(8, 10))  # fmt: skip
        await s.flush()
        ids = {key: row.id for key, row in convs.items()}

        def csat(conv_key: str, who: Customer, sent: datetime, score: int | None) -> None:
            s.add(
                Survey(
                    kind="csat", customer_id=who.id, conversation_id=ids[conv_key],
                    status="answered" if score is not None else "sent", due_at=sent,
                    created_at=sent, sent_at=sent, score=score,
                    answered_at=sent + timedelta(minutes=5) if score is not None else None,
                )
            )  # fmt: skip

        csat("b_missed", b, at(9, 50), 2)
        csat("a_met", a, at(9), 5)
        csat("vip_met", vip2, at(11), None)
        for key, tier, kind, level, when in (
            ("a_waiting", "A", "first_response", "breach", ago(100)),
            ("b_missed", "B", "first_response", "breach", at(9, 15)),
            ("vip_waiting", "VIP", "first_response", "warn", ago(2)),  # a warning: not counted
            ("c_yesterday", "C", "first_response", "breach", TODAY - timedelta(minutes=1)),
        ):
            s.add(SlaEvent(conversation_id=ids[key], kind=kind, level=level, tier=tier,
                           target_seconds=60, at=when))  # fmt: skip

        def case(who: Customer, status: str, opened: datetime, **kw: Any) -> Complaint:
            row = Complaint(
                customer_id=who.id, tier=who.tier, category="delivery", severity=2.0,
                opened_by="customer", status=status, opened_at=opened, **kw,
            )  # fmt: skip
            s.add(row)
            return row

        late = case(vip, "open", at(11), ack_due_at=at(11, 30), resolve_due_at=at(23))
        acked = case(b, "acknowledged", at(11, 30), acknowledged_at=at(11, 35),
                     ack_due_at=at(12, 30), resolve_due_at=NOW + timedelta(days=1))  # fmt: skip
        case(c, "resolved", at(7), resolved_at=at(8))
        await s.flush()
        ids["late_case"], ids["acked_case"] = late.id, acked.id
        s.add(ComplaintEvent(complaint_id=late.id, kind="breach", target="acknowledge",
                             cycle=0, at=at(11, 31)))  # fmt: skip
    return ids


async def test_the_board_of_a_known_state(db: Db) -> None:
    ids = await _seed(db)
    policy = Policy()
    async with db.sessions() as s:
        b = await live.board(s, policy, NOW)

    assert b.since == TODAY and b.tiers == ["VIP", "A", "B", "C"]
    queue = {t.tier: (t.waiting, t.oldest_wait(NOW)) for t in b.queue.tiers}
    assert queue == {"VIP": (1, 50.0), "A": (1, 400.0), "B": (1, 10.0), "C": (0, 0.0)}
    assert (b.queue.agents_online, b.queue.chats_assigned) == (2, 2)

    # The waiting chats in queue order (equal keys here: by arrival) with their SLA clocks.
    waiting = [(w.conversation_id, w.customer, w.waited_s, w.target_s, w.sla, w.reserved_for)
               for w in b.waiting]  # fmt: skip
    assert waiting == [
        (ids["a_waiting"], "Al", 400.0, 300, "breach", None),
        (ids["vip_waiting"], "Vera", 50.0, 60, "warn", None),
        (ids["b_waiting"], "B-1", 10.0, 900, "ok", "Bob"),
    ]
    assert b.waiting[1].warn_s == 48.0

    agents = [(a.name, a.load, a.max_chats, a.tiers) for a in b.agents]
    assert agents == [("Ann", 2, 3, None), ("Bob", 0, 2, ["A", "VIP"])]

    today = {d.tier: d for d in b.today}
    vip, a, bt, c = today["VIP"], today["A"], today["B"], today["C"]
    assert (vip.chats, vip.met, vip.missed, vip.pending) == (2, 1, 0, 1)
    assert vip.sla_met_share == 1.0
    assert (vip.csat_answers, vip.csat_sent, vip.csat_average) == (0, 1, None)
    assert vip.csat_response_rate == 0.0
    assert (vip.breaches, vip.complaint_breaches) == (0, 1)
    assert (a.chats, a.met, a.missed, a.pending) == (2, 1, 1, 0)
    assert a.sla_met_share == 0.5
    assert (a.csat_answers, a.csat_average, a.csat_sent, a.breaches) == (1, 5.0, 1, 1)
    assert (bt.chats, bt.met, bt.missed, bt.pending) == (2, 0, 1, 1)
    assert (bt.csat_answers, bt.csat_average, bt.breaches) == (1, 2.0, 1)
    assert (c.chats, c.breaches, c.sla_met_share, c.csat_average) == (0, 0, None, None)

    assert [(x.what, x.ref, x.tier, x.kind) for x in b.breaches] == [
        ("chat", ids["a_waiting"], "A", "first_response"),
        ("complaint", ids["late_case"], "VIP", "acknowledge"),
        ("chat", ids["b_missed"], "B", "first_response"),
    ]

    assert b.complaints_open == 2
    cases = [(x.case, x.customer, x.status, x.due, x.due_at, x.overdue) for x in b.complaints]
    assert cases == [
        (ids["late_case"], "Vera", "open", "acknowledge", at(11, 30), True),
        (ids["acked_case"], "B-1", "acknowledged", "resolve", NOW + timedelta(days=1), False),
    ]


async def test_an_empty_database(db: Db) -> None:
    async with db.sessions() as s:
        b = await live.board(s, Policy(), NOW)
    assert [t.waiting for t in b.queue.tiers] == [0, 0, 0, 0]
    assert b.waiting == [] and b.agents == [] and b.breaches == [] and b.complaints == []
    assert all(d.chats == 0 and d.sla_met_share is None for d in b.today)


def test_first_response_verdicts() -> None:
    q = NOW - timedelta(seconds=100)
    assert live.first_response_verdict(q, q + timedelta(seconds=60), 60, NOW) == "met"
    assert live.first_response_verdict(q, q + timedelta(seconds=61), 60, NOW) == "missed"
    assert live.first_response_verdict(q, None, 60, NOW) == "missed"  # 100 s, unanswered
    assert live.first_response_verdict(q, None, 120, NOW) == "pending"
    assert live.first_response_verdict(q, None, None, NOW) == "pending"
    assert live.first_response_verdict(q, NOW, None, NOW) == "met"
    assert live.sla_state(47.9, 60, 0.8) == "ok"
    assert live.sla_state(48, 60, 0.8) == "warn"
    assert live.sla_state(60, 60, 0.8) == "breach"
    assert live.sla_state(10**6, None, 0.8) == "ok"
