"""Self-service on the database: own orders only, and session outcomes / deflection counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.customers import orders
from routing.selfservice import deflection
from routing.store.models import Customer, Order
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
IDLE = timedelta(minutes=30)


def _customer(ext: str | None, tg: int, *, guest: bool = False) -> Customer:
    return Customer(
        external_id=ext, telegram_id=tg, tier="C", is_guest=guest, created_at=NOW, updated_at=NOW
    )


async def test_orders_are_scoped_to_the_customer(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        ann, bob, guest = _customer("ANN", 1), _customer("BOB", 2), _customer(None, 3, guest=True)
        s.add_all([ann, bob, guest])
        for i, (oid, ext) in enumerate([("O-1", "ANN"), ("O-2", "ANN"), ("O-3", "BOB")]):
            s.add(
                Order(
                    order_id=oid,
                    external_id=ext,
                    amount_cents=100,
                    ordered_at=NOW - timedelta(days=10 - i),
                    status="shipped",
                )
            )
        await s.flush()
        assert [o.order_id for o in await orders.recent_orders(s, ann, 5)] == ["O-2", "O-1"]
        assert [o.order_id for o in await orders.recent_orders(s, ann, 1)] == ["O-2"]
        found = await orders.order_status(s, ann, " #O-1 ")
        assert found is not None and found.order_id == "O-1"
        # Bob's order does not exist for Ann; guests have no orders at all.
        assert await orders.order_status(s, ann, "O-3") is None
        assert await orders.order_status(s, ann, "") is None
        assert await orders.recent_orders(s, guest, 5) == []
        assert await orders.order_status(s, guest, "O-1") is None


async def test_session_outcomes_and_deflection_count(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        people = [_customer(f"C{i}", 10 + i) for i in range(5)]
        s.add_all(people)
        await s.flush()
        resolved, handed, quiet, live, browser = people
        for c in people[:4]:
            await deflection.step(s, c, NOW, IDLE, language="en", answered=True)
        # Opened the menu and left: not a deflection.
        await deflection.step(s, browser, NOW, IDLE, language="en")
        assert await deflection.end(s, resolved, deflection.RESOLVED, NOW, IDLE)
        assert await deflection.end(s, handed, deflection.HANDOFF, NOW, IDLE)
        # Ending twice finds no live session.
        assert not await deflection.end(s, handed, deflection.HANDOFF, NOW, IDLE)
        later = NOW + timedelta(minutes=20)
        await deflection.step(s, live, later, IDLE, language="en", searched=True)
        assert await deflection.tried_selfservice(s, live, later, IDLE)
        # 40 minutes on: the quiet customer's session has expired, the live one has not.
        check = NOW + timedelta(minutes=40)
        counts = await deflection.deflection(s, check, IDLE)
        assert (counts.resolved, counts.handoff, counts.expired, counts.live) == (1, 1, 1, 1)
        assert counts.abandoned == 1
        assert counts.deflected == 2 and counts.ended == 4
        # A step after expiry opens a new session rather than reviving the old one.
        fresh = await deflection.step(s, quiet, check, IDLE, language="zh_Hans")
        assert fresh.answers == 0 and fresh.language == "zh_Hans"
        assert not await deflection.tried_selfservice(s, quiet, check, IDLE)


async def _step_as_the_bot(db: Db, c: Customer, at: datetime, **kw: object) -> deflection.Live:
    from routing.store import direct, sqlite_driver

    # As bot/handlers/customer/selfservice.py records a step: a direct transaction.
    with sqlite_driver.inline():
        async with direct.transaction(db.engine) as tx:
            return await deflection.step(tx, c, at, IDLE, language="en", **kw)  # type: ignore[arg-type]


async def test_steps_recorded_as_the_bot_does(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first step starts the session, later ones add to it, a step after the quiet time
    starts another; on PostgreSQL a first step is one round trip (the look for a live
    session and the start are one statement) and a later one two."""
    from sqlalchemy import select

    from routing.store.models import SelfServiceSession

    async with db.sessions() as s, s.begin():
        c = _customer("C1", 10)
        s.add(c)
    trips: list[str] = []
    if db.backend == "postgresql":
        import asyncpg

        for name in ("execute", "fetch", "fetchrow", "transaction"):
            real = getattr(asyncpg.connection.Connection, name)

            def counting(self: object, *a: object, _real: object = real, _n: str = name,
                         **kw: object) -> object:  # fmt: skip
                trips.append(_n)
                return _real(self, *a, **kw)  # type: ignore[operator]

            monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    first = await _step_as_the_bot(db, c, NOW, node="menu")
    assert (first.answers, first.searches, first.path) == (0, 0, '["menu"]')
    assert trips == ([] if db.backend == "sqlite" else ["fetch"])
    trips.clear()
    second = await _step_as_the_bot(
        db, c, NOW + timedelta(minutes=1), answered=True, searched=True, question=" where? "
    )
    assert second.id == first.id
    assert (second.answers, second.searches, second.question) == (1, 1, "where?")
    assert second.path == '["menu", "?"]'
    assert trips == ([] if db.backend == "sqlite" else ["fetch", "execute"])
    later = await _step_as_the_bot(db, c, NOW + timedelta(hours=2), node="faq")
    assert later.id != first.id and (later.answers, later.path) == (0, '["faq"]')
    async with db.sessions() as s:
        rows = (await s.execute(
            select(SelfServiceSession.id, SelfServiceSession.outcome, SelfServiceSession.answers)
            .order_by(SelfServiceSession.id)
        )).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [(first.id, deflection.EXPIRED, 1), (later.id, None, 0)]
