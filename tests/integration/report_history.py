"""A known history for the report tests (tests/integration/test_report*.py): customers of
every tier, agents, conversations with exact timestamps, surveys, self-service sessions,
complaints, tier changes and orders, in the week [SINCE, UNTIL) plus a few rows just outside
it. The figures each test expects are worked out in its comments from the rows below.

Default policy: first-response targets VIP 60 s, A 300 s, B 900 s, C 3600 s; resolution VIP
1 h, A 4 h, B 8 h, C 24 h; VIP is human_first; CSAT detractor <= 2, NPS detractor <= 6;
self-service sessions end after 30 quiet minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.care_models import Complaint, ComplaintEvent
from routing.store.models import (
    Agent,
    Conversation,
    Customer,
    Order,
    SelfServiceSession,
    Survey,
    SurveyCampaign,
    TierChange,
)

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 8, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
ANN_TG, BOB_TG = 1111, 2222

# external_id -> (tier, 12-month spend, account manager). Some ids start like a formula: the
# CSV must make them safe. Spend desc: 900k 600k 300k 250k 100k 60k 25k 10k 5k 0.
CUSTOMERS = {
    "V1": ("VIP", 900_000.0, "Ann"),
    "V2": ("VIP", 600_000.0, None),
    "A1": ("A", 300_000.0, str(BOB_TG)),
    "\tA2": ("A", 250_000.0, None),
    "@B1": ("B", 100_000.0, None),
    "B2": ("B", 60_000.0, None),
    "-C1": ("C", 10_000.0, None),
    "=2+5": ("C", 5_000.0, None),
    "C3": ("C", 0.0, None),
    "C4": ("C", 25_000.0, None),
}


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return SINCE + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


async def seed(s: AsyncSession) -> dict[str, int]:
    """Write the history; returns the conversation ids by name (c1..c10)."""
    ids: dict[str, int] = {}
    for ext, (tier, spend, manager) in CUSTOMERS.items():
        c = Customer(external_id=ext, tier=tier, spend_12m=spend, account_manager=manager,
                     created_at=at(-60), updated_at=at(-60))  # fmt: skip
        s.add(c)
        await s.flush()
        ids[ext] = c.id
        # Orders of the last 12 months adding up to the spend (the report reads spend_12m,
        # which rescoring computes from them).
        if spend:
            for i, share in enumerate((0.25, 0.75)):
                s.add(Order(order_id=f"{ext}-{i}", external_id=ext,
                            amount_cents=round(spend * share * 100), category="shoes",
                            ordered_at=at(-30 * (i + 1)), status="paid"))  # fmt: skip
    guest = Customer(tier="C", is_guest=True, created_at=at(0), updated_at=at(0))
    s.add(guest)
    ann = Agent(telegram_id=ANN_TG, name="Ann", created_at=at(-90))
    bob = Agent(telegram_id=BOB_TG, name="Bob", created_at=at(-90))
    s.add_all([ann, bob])
    await s.flush()

    def conv(name: str, ext: str, origin: str, queued: datetime, *, agent: Agent | None = None,
             assigned: datetime | None = None, answered: datetime | None = None,
             closed: datetime | None = None, csat: str | None = None,
             score: int | None = None) -> None:  # fmt: skip
        tier = CUSTOMERS[ext][0]
        status = "closed" if closed else "assigned" if assigned else "queued"
        c = Conversation(customer_id=ids[ext], status=status, tier=tier, priority=0,
                         origin=origin, queued_at=queued, agent_id=agent.id if agent else None,
                         assigned_at=assigned, first_response_at=answered,
                         closed_at=closed)  # fmt: skip
        s.add(c)
        pending.append((name, c, csat, score, closed))

    pending: list[tuple[str, Conversation, str | None, int | None, datetime | None]] = []
    # c1 V1 VIP: wait 30 s (met), resolved in 40 min (met), handle 2380 s, CSAT 5.
    conv("c1", "V1", "human_first", at(0, 10), agent=ann, assigned=at(0, 10, 0, 20),
         answered=at(0, 10, 0, 30), closed=at(0, 10, 40), csat="answered", score=5)  # fmt: skip
    # c2 V2 VIP: wait 120 s (missed), 2 h (missed), handle 7140 s, CSAT 2 (a detractor).
    conv("c2", "V2", "human_first", at(0, 12), agent=bob, assigned=at(0, 12, 1),
         answered=at(0, 12, 2), closed=at(0, 14), csat="answered", score=2)  # fmt: skip
    # c3 A1 A: wait exactly 300 s (met: at most the target), 1 h (met), handle 3420 s; CSAT
    # sent, never answered.
    conv("c3", "A1", "customer_request", at(1, 9), agent=ann, assigned=at(1, 9, 3),
         answered=at(1, 9, 5), closed=at(1, 10), csat="expired")  # fmt: skip
    # c4 @B1 B: gave up in the queue after 600 s (< 900: not judged); CSAT skipped.
    conv("c4", "@B1", "customer_request", at(1, 15), closed=at(1, 15, 10), csat="skipped")
    # c5 -C1 C: held by Bob, closed after 2 h without an agent message: abandoned (not in
    # queue), first response missed (> 3600 s), resolution not judged; handle 5400 s; CSAT 3.
    conv("c5", "-C1", "customer_request", at(2, 8), agent=bob, assigned=at(2, 8, 30),
         closed=at(2, 10), csat="answered", score=3)  # fmt: skip
    # c6 \tA2 A: wait 600 s (missed), still open at NOW: resolution missed.
    conv("c6", "\tA2", "customer_request", at(3, 11), agent=bob, assigned=at(3, 11, 5),
         answered=at(3, 11, 10))  # fmt: skip
    # c7 =2+5 C: still queued at NOW (3.5 days): both targets missed.
    conv("c7", "=2+5", "customer_request", at(6, 23))
    # c8 V1 VIP: wait 50 s (met), closed after 90 min (resolution missed), handle 5390 s, CSAT 4.
    conv("c8", "V1", "human_first", at(4, 9), agent=ann, assigned=at(4, 9, 0, 10),
         answered=at(4, 9, 0, 50), closed=at(4, 10, 30), csat="answered", score=4)  # fmt: skip
    # Outside the period: one second before SINCE, and at UNTIL (exclusive).
    conv("c9", "C3", "customer_request", at(0) - timedelta(seconds=1), agent=ann,
         assigned=at(0), answered=at(0, 0, 0, 5), closed=at(0, 1), csat="answered",
         score=1)  # fmt: skip
    conv("c10", "C4", "customer_request", at(7), agent=ann, assigned=at(7, 0, 1),
         answered=at(7, 0, 2), closed=at(7, 1), csat="answered", score=1)  # fmt: skip
    await s.flush()
    for name, c, csat, score, closed in pending:
        ids[name] = c.id
        if csat is not None and closed is not None:
            sent = None if csat == "skipped" else closed + timedelta(minutes=5)
            s.add(Survey(kind="csat", customer_id=c.customer_id, conversation_id=c.id,
                         agent_id=c.agent_id, status=csat, due_at=closed, created_at=closed,
                         sent_at=sent, score=score,
                         answered_at=sent + timedelta(minutes=1) if score else None))  # fmt: skip

    # NPS: campaigns for VIP and A; one answer outside a campaign (C1's tier: C).
    for tier in ("VIP", "A"):
        s.add(SurveyCampaign(key=f"nps:{tier}", kind="nps", tier=tier, fire_at=at(0),
                             sample_ratio=1.0, created_at=at(0)))  # fmt: skip
    await s.flush()
    for ext, campaign, score, answered in (
        ("V1", "nps:VIP", 10, at(2)),  # promoter (Ann manages V1)
        ("V2", "nps:VIP", 6, at(3)),  # detractor
        ("A1", "nps:A", 8, at(5)),  # passive (Bob, by Telegram id, manages A1)
        ("\tA2", "nps:A", 9, at(6)),  # promoter
        ("-C1", None, 3, at(1)),  # detractor, tier C
        ("@B1", None, 0, at(-2)),  # before the period: not counted
        ("B2", None, None, None),  # sent, not answered: not counted
    ):
        s.add(Survey(kind="nps", customer_id=ids[ext], campaign=campaign, due_at=at(0),
                     created_at=at(0), sent_at=at(0, 11),
                     status="answered" if score is not None else "sent", score=score,
                     answered_at=answered))  # fmt: skip

    # Self-service sessions (started in the period unless said): C resolved x2, handoff, live;
    # B expired (quiet after an answer), abandoned (quiet, no answer); one before SINCE.
    quiet, live = at(5), NOW - timedelta(minutes=1)
    for ext, outcome, answers, started, last in (
        ("-C1", "resolved", 1, at(1), at(1)),
        ("C3", "resolved", 2, at(2), at(2)),
        ("=2+5", "handoff", 1, at(2), at(2)),
        ("C4", None, 1, at(6), live),
        ("@B1", None, 1, at(5), quiet),
        ("B2", None, 0, at(5), quiet),
        ("C3", "expired", 1, at(-1), at(-1)),
    ):
        s.add(SelfServiceSession(customer_id=ids[ext], tier=CUSTOMERS[ext][0], started_at=started,
                                 last_at=last, answers=answers, outcome=outcome,
                                 ended_at=last if outcome else None))  # fmt: skip

    # Complaints: k1 VIP (Bob) opened, breached twice, resolved in the period; k2 C (Ann)
    # opened, still open; k3 A (nobody) opened before, breached and resolved in it; k4 B
    # opened after UNTIL.
    def case(ext: str, agent: Agent | None, opened: datetime, status: str) -> Complaint:
        k = Complaint(customer_id=ids[ext], tier=CUSTOMERS[ext][0], category="delivery",
                      severity=1.0, opened_by="customer", agent_id=agent.id if agent else None,
                      status=status, opened_at=opened)  # fmt: skip
        s.add(k)
        return k

    k1 = case("V2", bob, at(0, 15), "resolved")
    k2 = case("-C1", ann, at(3), "open")
    k3 = case("A1", None, at(-12), "resolved")
    k4 = case("@B1", None, at(8), "open")
    await s.flush()
    for k, kind, target, when in (
        (k1, "opened", None, at(0, 15)), (k1, "breach", "acknowledge", at(0, 15, 20)),
        (k1, "breach", "resolve", at(1, 16)), (k1, "resolved", None, at(2)),
        (k2, "opened", None, at(3)),
        (k3, "opened", None, at(-12)), (k3, "breach", "resolve", at(1)),
        (k3, "resolved", None, at(5)),
        (k4, "opened", None, at(8)),
    ):  # fmt: skip
        s.add(ComplaintEvent(complaint_id=k.id, kind=kind, target=target, cycle=0, at=when))

    # Tier changes: in the period A->VIP (up), VIP->A (down), new C, C->B (up); one before.
    for ext, before, after, when in (
        ("V1", "A", "VIP", at(2)),
        ("\tA2", "VIP", "A", at(3)),
        ("C4", None, "C", at(1)),
        ("B2", "C", "B", at(4)),
        ("=2+5", "B", "C", at(-17)),
    ):
        s.add(TierChange(customer_id=ids[ext], from_tier=before, to_tier=after,
                         spend_12m=CUSTOMERS[ext][1], reason="test", changed_at=when))  # fmt: skip
    await s.flush()
    return ids
