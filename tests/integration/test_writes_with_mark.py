"""Writes that go with the done mark (routing/store/inbox.py ``leave_to_mark``): a handler's
last write, such as a self-service step's record, is committed in the transaction of its
update's done mark, with the marks of the updates that finish together (issue 19), never
twice, and a refused one does not hold up the others' marks."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select

from bot.app import make_dispatcher
from bot.intake import Intake
from routing.policy.root import Policy
from routing.selfservice import deflection
from routing.store import direct, inbox, lane, sqlite_driver
from routing.store.models import (
    INBOX_DONE,
    INBOX_PENDING,
    Customer,
    InboundUpdate,
    SelfServiceSession,
)
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers

T = datetime(2026, 12, 3, 9, tzinfo=UTC)
IDLE = timedelta(minutes=30)


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


def _table(sql: str) -> str:
    found = re.search(r"(?:INTO|UPDATE)\s+(\w+)", sql)
    return found.group(1) if found else sql


async def _pending(db: Db, *ids: int) -> None:
    async with db.sessions() as s, s.begin():
        for i in ids:
            s.add(InboundUpdate(update_id=i, chat_id=i, payload="{}", status=INBOX_PENDING,
                                received_at=T, attempts=0))  # fmt: skip


async def _customers(db: Db, n: int) -> list[Customer]:
    async with db.sessions() as s, s.begin():
        people = [
            Customer(external_id=f"C{i}", telegram_id=100 + i, tier="C", created_at=T,
                     updated_at=T)
            for i in range(n)
        ]  # fmt: skip
        s.add_all(people)
    return people


async def _done(db: Db) -> set[int]:
    async with db.sessions() as s:
        rows = await s.scalars(
            select(InboundUpdate.update_id).where(InboundUpdate.status == INBOX_DONE)
        )
        return set(rows)


async def _sessions_of(db: Db) -> dict[int, int]:
    """Self-service sessions per customer id."""
    async with db.sessions() as s:
        rows = await s.execute(
            select(SelfServiceSession.customer_id, func.count()).group_by(
                SelfServiceSession.customer_id
            )
        )
        return {int(c): int(n) for c, n in rows.all()}


async def _step(db: Db, customer: Customer) -> list[lane.Step]:
    with sqlite_driver.inline():
        return await deflection.step_writes(
            db.engine, customer, T, IDLE, language="en", node="menu"
        )


async def test_writes_go_in_the_marks_transaction(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    await _pending(db, 1, 2, 3)
    people = await _customers(db, 3)
    writes = [await _step(db, c) for c in people]
    calls: list[int] = []
    real = lane.write_all

    async def counted(engine: Any, steps: Any) -> list[int]:
        calls.append(len(steps))
        return await real(engine, steps)

    monkeypatch.setattr(lane, "write_all", counted)
    marks = inbox.DoneMarks(db.engine)

    async def one(i: int) -> bool:
        with sqlite_driver.inline():
            await marks.mark(i, T, writes[i - 1])
        # Committed with the mark by the time the caller goes on.
        return people[i - 1].id in await _sessions_of(db)

    assert all(await asyncio.gather(*(one(i) for i in (1, 2, 3))))
    # One transaction: three starts and the three marks (on PostgreSQL one statement: the
    # starts as one part, the marks as another).
    assert calls == [2 if db.backend == "postgresql" else 3 + 3]
    assert await _done(db) == {1, 2, 3}
    assert await _sessions_of(db) == {c.id: 1 for c in people}


async def test_a_refused_write_is_dropped_and_holds_up_no_mark(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    await _pending(db, 1, 2, 3)
    people = await _customers(db, 2)
    good = [await _step(db, c) for c in people]
    # A start for a customer that does not exist: the foreign key refuses it.
    statement, values = good[0][0]
    refused: list[lane.Step] = [(statement, {**values, "v_customer": 999_999})]
    marks = inbox.DoneMarks(db.engine)
    caplog.set_level(logging.WARNING, logger="routing.store.inbox")
    with sqlite_driver.inline():
        await asyncio.gather(
            marks.mark(1, T, good[0]), marks.mark(2, T, refused), marks.mark(3, T, good[1])
        )
    assert await _done(db) == {1, 2, 3}
    assert await _sessions_of(db) == {c.id: 1 for c in people}
    assert "update 2: its handler's writes were refused" in caplog.text


async def test_a_failed_write_leaves_nothing_and_its_retry_writes_once(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pending(db, 1)
    (person,) = await _customers(db, 1)
    writes = await _step(db, person)

    async def down(engine: Any, steps: Any) -> list[int]:
        raise OSError("the database is away")

    monkeypatch.setattr(lane, "write_all", down)
    marks = inbox.DoneMarks(db.engine)
    with pytest.raises(OSError):
        await marks.mark(1, T, writes)
    monkeypatch.undo()
    assert await _sessions_of(db) == {} and await _done(db) == set()
    with sqlite_driver.inline():
        await marks.mark(1, T, writes)
    assert await _sessions_of(db) == {person.id: 1} and await _done(db) == {1}


async def _through_intake(
    db: Db, policy: Policy, raws: list[dict[str, Any]], api: FakeBotAPI
) -> Intake:
    bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
    dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: T)
    intake = Intake(dp, bot, db.sessions, lambda: T, retry_first=0.01)
    await intake.accept(raws)
    await intake.wait_idle()
    await api.wait_idle(quiet=0.3)
    await bot.session.close()
    return intake


async def test_a_self_service_answer_records_its_step_with_the_mark(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-service text's step is no transaction of its own; its start is in the
    transaction of the update's done mark (on PostgreSQL, in the mark's one statement)."""
    transactions: list[str] = []
    real_tx = direct.transaction

    def counted_tx(engine: Any) -> Any:
        transactions.append("direct")
        return real_tx(engine)

    lanes: list[list[str]] = []
    real_lane = lane.write_all

    async def counted_lane(engine: Any, steps: Any) -> list[int]:
        lanes.append([_table(p.compiled(engine.dialect).sql) for p, _ in steps])
        return await real_lane(engine, steps)

    monkeypatch.setattr(direct, "transaction", counted_tx)
    monkeypatch.setattr(lane, "write_all", counted_lane)
    async with FakeBotAPI() as api:
        await _through_intake(
            db, policy, [{"update_id": 1, "message": api.user_message(701, "where is my order?")}],
            api,
        )  # fmt: skip
        assert api.calls_of("sendMessage", chat_id=701)  # answered
    async with db.sessions() as s:
        ss = (await s.scalars(select(SelfServiceSession))).all()
    assert len(ss) == 1 and ss[0].searches == 1 and ss[0].question == "where is my order?"
    assert await _done(db) == {1}
    assert transactions == []
    assert lanes == [["selfservice_sessions", "inbound_updates"]]


async def test_a_mark_retried_after_its_commit_landed_writes_nothing_twice(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark's commit went through but its caller saw an error (the connection dropped
    after COMMIT): the retry finds the update done and does not write the step again."""
    real = inbox.DoneMarks.mark
    failed: list[int] = []

    async def lost_after_commit(self: inbox.DoneMarks, update_id: int, now: Any,
                                writes: Any = ()) -> None:  # fmt: skip
        await real(self, update_id, now, writes)
        if not failed:
            failed.append(update_id)
            raise OSError("connection lost after COMMIT")

    monkeypatch.setattr(inbox.DoneMarks, "mark", lost_after_commit)
    async with FakeBotAPI() as api:
        intake = await _through_intake(
            db, policy, [{"update_id": 1, "message": api.user_message(701, "where is my order?")}],
            api,
        )  # fmt: skip
    assert intake.in_flight == 0 and failed == [1]
    async with db.sessions() as s:
        ss = (await s.scalars(select(SelfServiceSession))).all()
    assert len(ss) == 1 and ss[0].searches == 1
    assert await _done(db) == {1}


async def test_a_known_customers_step_reads_nothing_of_its_own(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step takes the session the update's lookup read (no read of its own; on
    PostgreSQL its write is then one statement, no transaction), and a second text of the
    same customer adds to the session the first started."""
    async with db.sessions() as s, s.begin():
        s.add(Customer(external_id="K1", telegram_id=702, tier="C", created_at=T, updated_at=T))
    reads: list[int] = []
    real = deflection._LIVE.read

    async def counted(engine: Any, params: Any) -> Any:
        reads.append(1)
        return await real(engine, params)

    monkeypatch.setattr(deflection._LIVE, "read", counted)
    monkeypatch.setattr(deflection._LIVE_OR_START, "first", counted)
    transactions: list[str] = []
    real_tx = direct.transaction

    def counted_tx(engine: Any) -> Any:
        transactions.append("direct")
        return real_tx(engine)

    monkeypatch.setattr(direct, "transaction", counted_tx)
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: T)
        intake = Intake(dp, bot, db.sessions, lambda: T)
        for i, text in enumerate(("where is my order?", "and my refund?"), start=1):
            await intake.accept([{"update_id": i, "message": api.user_message(702, text)}])
            await intake.wait_idle()
        await api.wait_idle(quiet=0.3)
        await bot.session.close()
        assert len(api.calls_of("sendMessage", chat_id=702)) == 2
    assert reads == [] and transactions == []
    async with db.sessions() as s:
        ss = (await s.scalars(select(SelfServiceSession))).all()
    assert len(ss) == 1 and ss[0].searches == 2 and ss[0].question == "and my refund?"


async def test_pg_the_steps_of_updates_that_finish_together_are_one_statement_with_the_marks(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the steps several customers' updates left to their marks (steps into live
    sessions, first steps' starts) and the marks are one round trip, each row as it would
    be written alone."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's round trips")
    import asyncpg

    await _pending(db, 1, 2, 3, 4, 5)
    people = await _customers(db, 4)
    # Two customers have a live session (their first step), two have none.
    for c in people[:2]:
        await lane.write_all(db.engine, await _step(db, c))
    later = T + timedelta(minutes=1)
    writes = []
    for c, text in zip(people, ("refund?", None, "delivery?", None), strict=True):
        found = await deflection.step_writes(
            db.engine, c, later, IDLE, language="en", searched=text is not None,
            node=None if text else "orders", question=text,
        )  # fmt: skip
        writes.append(found)
    assert [len(w) for w in writes] == [1, 1, 1, 1]
    trips: list[str] = []
    for name in ("execute", "fetchrow", "fetch", "transaction"):
        real = getattr(asyncpg.connection.Connection, name)

        def counting(self: object, *a: object, _real: object = real, _n: str = name,
                     **kw: object) -> object:  # fmt: skip
            trips.append(_n)
            return _real(self, *a, **kw)  # type: ignore[operator]

        monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    marks = inbox.DoneMarks(db.engine)
    await asyncio.gather(*(marks.mark(i + 1, later, w) for i, w in enumerate(writes)),
                         marks.mark(5, later))  # fmt: skip
    assert trips == ["fetchrow"]
    monkeypatch.undo()
    assert await _done(db) == {1, 2, 3, 4, 5}
    async with db.sessions() as s:
        rows = {
            r.customer_id: r
            for r in (await s.scalars(select(SelfServiceSession))).all()
        }  # fmt: skip
    assert len(rows) == 4  # the live ones stepped into, not started again
    first, second, third, fourth = (rows[c.id] for c in people)
    assert (first.searches, first.question, first.path) == (1, "refund?", '["menu", "?"]')
    assert (second.searches, second.path, second.last_at) == (0, '["menu", "orders"]', later)
    assert (third.started_at, third.searches, third.question) == (later, 1, "delivery?")
    assert (fourth.started_at, fourth.path, fourth.tier) == (later, '["orders"]', "C")
    assert all(r.outcome is None and r.language == "en" for r in rows.values())
