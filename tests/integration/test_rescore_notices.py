"""Tier notices: the outbox written by rescoring, swept through a TierNotifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from routing.policy.root import Policy, parse_policy
from routing.queue.agents import add_agent
from routing.scoring import rescoring
from routing.scoring.tier_notices import send_pending
from routing.store.models import Customer, Order, TierChange
from tests.conftest import Db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeNotifier:
    def __init__(self, fail: set[int] | None = None) -> None:
        self.sent: list[tuple[int, str]] = []
        self.fail = fail or set()

    async def send(self, telegram_id: int, text: str) -> bool:
        if telegram_id in self.fail:
            return False
        self.sent.append((telegram_id, text))
        return True


async def _customer(db: Db, ext: str, **kw: object) -> None:
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id=ext, tier="C", created_at=NOW, updated_at=NOW, **kw))
        s.add(Order(order_id=f"{ext}-0", external_id=ext, amount_cents=100, ordered_at=NOW))


async def _order(db: Db, ext: str, amount: int, n: int = 1) -> None:
    async with db.sessions() as s, s.begin():
        s.add(
            Order(order_id=f"{ext}-{n}", external_id=ext, amount_cents=amount * 100, ordered_at=NOW)
        )


async def _rescore(db: Db, policy: Policy, days: int = 0) -> None:
    async with db.sessions() as s, s.begin():
        await rescoring.rescore(s, policy, NOW + timedelta(days=days))


async def test_upgrade_tells_the_customer_in_their_language_and_vip_tells_the_manager(
    db: Db, policy: Policy
) -> None:
    async with db.sessions() as s, s.begin():
        await add_agent(s, 777, "Mia", role="agent", max_chats=3, now=NOW)
    await _customer(db, "G", name="Greta", telegram_id=501, language="de-AT", account_manager="mia")
    await _customer(db, "Z", name="Zed", telegram_id=502, language="xx")
    await _rescore(db, policy)  # first grading: no notices
    notifier = FakeNotifier()
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW) == 0

    await _order(db, "G", 600_000)
    await _order(db, "Z", 60_000)
    await _rescore(db, policy, days=1)
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=1)) == 2
    assert notifier.sent == [
        (501, "Gute Nachrichten, Greta: Sie sind jetzt VIP-Kunde. Danke für Ihre Treue!"),
        (777, "Your customer Greta (G) is now VIP (was C)."),
        (502, "Good news, Zed: you are now a B customer. Thank you for your loyalty!"),
    ]
    async with db.sessions() as s:
        notices = list(await s.scalars(select(TierChange.notice).order_by(TierChange.id)))
    assert notices.count("sent") == 2


async def test_vip_downgrade_tells_only_the_manager_and_stale_notices_are_dropped(
    db: Db,
) -> None:
    policy = parse_policy({"scoring": {"downgrade_after": 1}})
    async with db.sessions() as s, s.begin():
        await add_agent(s, 9001, "Max", now=NOW)  # the manager, named by Telegram id
    await _customer(db, "V", name="Vic", telegram_id=601, account_manager="9001")
    await _rescore(db, policy)
    await _order(db, "V", 600_000)
    await _rescore(db, policy, days=1)
    notifier = FakeNotifier()
    async with db.sessions() as s, s.begin():
        # Nine days on (the bot was down): the upgrade is old news, dropped, not sent.
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=9)) == 1
    assert notifier.sent == []
    await _order(db, "V", 600_000, n=2)
    await _rescore(db, policy, days=10)  # still VIP: no change, no notice
    # A year and more later the spend has left the window: VIP -> C. Nobody was told of
    # the VIP tier, so there is nothing to tell of its loss either.
    await _rescore(db, policy, days=400)
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=400)) == 1
    assert notifier.sent == []

    # Told of the VIP tier when it came, the manager (only) is told of its loss.
    async with db.sessions() as s, s.begin():
        at = NOW + timedelta(days=401)
        s.add(Order(order_id="V-3", external_id="V", amount_cents=60_000_000, ordered_at=at))
    await _rescore(db, policy, days=401)
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=401)) == 1
    await _rescore(db, policy, days=800)  # the order left the window
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=800)) == 1
    assert notifier.sent == [
        (601, "Good news, Vic: you are now a VIP customer. Thank you for your loyalty!"),
        (9001, "Your customer Vic (V) is now VIP (was C)."),
        (9001, "Your customer Vic (V) is no longer VIP: now C."),
    ]
    async with db.sessions() as s:
        rows = list(
            await s.execute(select(TierChange.to_tier, TierChange.notice).order_by(TierChange.id))
        )
    assert [tuple(r) for r in rows] == [
        ("VIP", "stale"),
        ("C", "unchanged"),
        ("VIP", "sent"),
        ("C", "sent"),
    ]


async def test_a_manager_no_agent_answers_to_is_not_told(db: Db) -> None:
    """A numeric account_manager that is no agent's Telegram id names nobody: the manager's
    part fails (nobody to tell), as it does for a name no agent has."""
    policy = parse_policy({"scoring": {"downgrade_after": 1}})
    await _customer(db, "U", name="Uma", telegram_id=701, account_manager="9002")
    await _rescore(db, policy)
    await _order(db, "U", 600_000)
    await _rescore(db, policy, days=1)
    notifier = FakeNotifier()
    async with db.sessions() as s, s.begin():
        assert await send_pending(s, notifier, policy, NOW + timedelta(days=1)) == 1
    assert [to for to, _ in notifier.sent] == [701]  # the customer, not "9002"
    async with db.sessions() as s:
        notices = list(await s.scalars(select(TierChange.notice).order_by(TierChange.id)))
    assert notices[-1] == "failed"
