"""Stale and superseded tier notices are dropped at send time (the issue: a customer pinned,
released and pinned again before linking Telegram, then downgraded to B, was told "you are
now a VIP customer" twice during a chat with an agent)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from routing.customers.identity import link_by_code
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.scoring import report
from routing.scoring.tier_notices import send_pending
from routing.store.models import ASSIGNED, CLOSED, Conversation, Customer, TierChange
from tests.conftest import Db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TG, MANAGER = 901, 9001
B_TEXT = "Good news, Kim: you are now a B customer. Thank you for your loyalty!"
VIP_TEXT = "Good news, Kim: you are now a VIP customer. Thank you for your loyalty!"


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, telegram_id: int, text: str) -> bool:
        await asyncio.sleep(0.05)  # let a concurrent sweep run meanwhile
        self.sent.append((telegram_id, text))
        return True


async def _imported(db: Db, **kw: object) -> None:
    """A customer from the CRM who has not linked Telegram yet (their account manager, when
    named, a registered agent: only agents are told)."""
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id="K", name="Kim", tier="C", created_at=NOW, updated_at=NOW, **kw))
        if "account_manager" in kw:
            await add_agent(s, MANAGER, "Max", now=NOW)


async def _pin(db: Db, policy: Policy, tier: str | None, minutes: int) -> None:
    async with db.sessions() as s, s.begin():
        await report.set_override(
            s,
            "K",
            tier,
            by="ops",
            reason="test",
            policy=policy,
            now=NOW + timedelta(minutes=minutes),
        )


async def _link(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        assert (await link_by_code(s, TG, "K", now=NOW)).customer is not None


async def _sweep(db: Db, policy: Policy, notifier: FakeNotifier, minutes: int) -> int:
    async with db.sessions() as s, s.begin():
        return await send_pending(s, notifier, policy, NOW + timedelta(minutes=minutes))


async def _notices(db: Db) -> list[tuple[str | None, str, str | None]]:
    async with db.sessions() as s:
        rows = await s.execute(
            select(TierChange.from_tier, TierChange.to_tier, TierChange.notice).order_by(
                TierChange.id
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_reported_sequence_tells_the_customer_once_naming_b(db: Db, policy: Policy) -> None:
    """Pinned VIP, released, pinned VIP again, all before linking Telegram (the bot down, or
    its sweep not yet run); then linked, then pinned to B. The customer was C when they last
    heard from us and is B now: one notice, naming B. Never VIP."""
    await _imported(db)
    await _pin(db, policy, "VIP", 1)
    await _pin(db, policy, None, 2)
    await _pin(db, policy, "VIP", 3)
    await _link(db)
    await _pin(db, policy, "B", 4)
    notifier = FakeNotifier()
    assert await _sweep(db, policy, notifier, 5) == 4
    assert await _sweep(db, policy, notifier, 6) == 0
    assert notifier.sent == [(TG, B_TEXT)]
    assert await _notices(db) == [
        ("C", "VIP", "superseded"),
        ("VIP", "C", "superseded"),
        ("C", "VIP", "superseded"),
        ("VIP", "B", "sent"),
    ]


async def test_reported_sequence_with_the_sweep_running_throughout(db: Db, policy: Policy) -> None:
    """The same with the bot up: the account manager hears of every VIP change as it
    happens; the customer's notice waits until they link, and is then about B only."""
    await _imported(db, account_manager=str(MANAGER))
    notifier = FakeNotifier()
    await _pin(db, policy, "VIP", 1)
    assert await _sweep(db, policy, notifier, 1) == 0  # waiting for Telegram
    await _pin(db, policy, None, 2)
    await _sweep(db, policy, notifier, 2)
    await _pin(db, policy, "VIP", 3)
    await _sweep(db, policy, notifier, 3)
    assert await _sweep(db, policy, notifier, 4) == 0  # still unlinked: not even picked
    assert notifier.sent == [
        (MANAGER, "Your customer Kim (K) is now VIP (was C)."),
        (MANAGER, "Your customer Kim (K) is no longer VIP: now C."),
        (MANAGER, "Your customer Kim (K) is now VIP (was C)."),
    ]
    await _link(db)
    await _pin(db, policy, "B", 5)
    await _sweep(db, policy, notifier, 5)
    await _sweep(db, policy, notifier, 6)
    assert notifier.sent[3:] == [
        (TG, B_TEXT),
        (MANAGER, "Your customer Kim (K) is no longer VIP: now B."),
    ]
    assert [n for _, _, n in await _notices(db)] == [
        "superseded",
        "sent",
        "superseded",
        "sent",
    ]


async def test_no_notice_during_a_chat_with_an_agent(db: Db, policy: Policy) -> None:
    """A notice for a customer in a conversation waits until it is closed, and is then sent
    once, naming the tier they hold then."""
    await _imported(db, telegram_id=TG)
    async with db.sessions() as s, s.begin():
        customer = (await s.execute(select(Customer))).scalar_one()
        s.add(
            Conversation(
                customer_id=customer.id,
                status=ASSIGNED,
                tier="C",
                priority=1,
                origin="test",
                queued_at=NOW,
            )
        )
    notifier = FakeNotifier()
    await _pin(db, policy, "VIP", 1)
    await _pin(db, policy, None, 2)
    await _pin(db, policy, "VIP", 3)
    for minute in (3, 4, 5):
        assert await _sweep(db, policy, notifier, minute) == 0
    assert notifier.sent == []
    async with db.sessions() as s, s.begin():
        await s.execute(update(Conversation).values(status=CLOSED, closed_at=NOW))
    assert await _sweep(db, policy, notifier, 6) == 3
    assert await _sweep(db, policy, notifier, 7) == 0
    assert notifier.sent == [(TG, VIP_TEXT)]


async def test_back_and_forth_before_anyone_is_told_says_nothing(db: Db, policy: Policy) -> None:
    await _imported(db)
    await _pin(db, policy, "VIP", 1)
    await _pin(db, policy, None, 2)
    await _link(db)
    notifier = FakeNotifier()
    assert await _sweep(db, policy, notifier, 3) == 2
    assert notifier.sent == []
    assert await _notices(db) == [("C", "VIP", "superseded"), ("VIP", "C", "unchanged")]


async def test_old_news_is_stale(db: Db, policy: Policy) -> None:
    await _imported(db)
    await _pin(db, policy, "VIP", 1)
    await _link(db)
    notifier = FakeNotifier()
    assert await _sweep(db, policy, notifier, 8 * 24 * 60) == 1
    assert notifier.sent == []
    assert await _notices(db) == [("C", "VIP", "stale")]


async def test_two_sweeps_at_once_send_a_notice_once(db: Db, policy: Policy) -> None:
    await _imported(db, telegram_id=TG, account_manager=str(MANAGER))
    await _pin(db, policy, "VIP", 1)
    notifier = FakeNotifier()
    counts = await asyncio.gather(_sweep(db, policy, notifier, 2), _sweep(db, policy, notifier, 2))
    assert sorted(counts) == [0, 1]
    assert sorted(notifier.sent) == [
        (TG, VIP_TEXT),
        (MANAGER, "Your customer Kim (K) is now VIP (was C)."),
    ]
    assert await _notices(db) == [("C", "VIP", "sent")]
