"""routing/store/inbox.py DoneMarks: the done marks of updates that finish together are one
transaction (on PostgreSQL one statement); each caller returns only once its own mark is
committed, and a failed batch fails every caller in it (each retries), on SQLite inline and
on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from routing.store import inbox, lane, sqlite_driver
from routing.store.models import INBOX_DONE, INBOX_PENDING, InboundUpdate
from tests.conftest import Db

T = datetime(2026, 12, 2, 9, tzinfo=UTC)


async def _pending(db: Db, *ids: int) -> None:
    async with db.sessions() as s, s.begin():
        for i in ids:
            s.add(InboundUpdate(update_id=i, chat_id=i, payload="{}", status=INBOX_PENDING,
                                received_at=T, attempts=0))  # fmt: skip


async def _done(db: Db) -> set[int]:
    async with db.sessions() as s:
        rows = await s.scalars(
            select(InboundUpdate.update_id).where(InboundUpdate.status == INBOX_DONE)
        )
        return set(rows)


async def test_marks_finishing_together_are_one_transaction(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pending(db, *range(1, 21))
    writes: list[int] = []
    real = lane.write_all

    async def counted(engine: Any, steps: Any) -> list[int]:
        writes.append(len(steps))
        return await real(engine, steps)

    monkeypatch.setattr(lane, "write_all", counted)
    marks = inbox.DoneMarks(db.engine)

    async def one(i: int) -> bool:
        with sqlite_driver.inline():
            await marks.mark(i, T)
        return i in await _done(db)  # committed by the time the caller goes on

    assert all(await asyncio.gather(*(one(i) for i in range(1, 21))))
    # One transaction of twenty statements; on PostgreSQL one statement for all twenty
    # (which the lane runs without BEGIN and COMMIT).
    together = 1 if db.backend == "postgresql" else 20
    assert writes == [together]
    assert await one(21) is False  # no row 21: nothing to mark, no error
    assert writes == [together, 1]


async def test_a_failed_batch_fails_every_caller_in_it(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pending(db, 1, 2)

    async def down(engine: Any, steps: Any) -> list[int]:
        raise OSError("the database is away")

    monkeypatch.setattr(lane, "write_all", down)
    marks = inbox.DoneMarks(db.engine)
    results = await asyncio.gather(marks.mark(1, T), marks.mark(2, T), return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    monkeypatch.undo()
    await marks.mark(1, T)  # the retry of one of them
    assert await _done(db) == {1}


async def test_marks_that_come_while_a_write_is_in_flight_go_together_in_the_next(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A group commit: one write at a time, the next carrying every mark that came meanwhile
    # (not one write per loop turn, each a round trip on PostgreSQL).
    await _pending(db, *range(1, 12))
    real = lane.write_all
    release, started = asyncio.Event(), asyncio.Event()
    writes: list[int] = []

    async def slow(engine: Any, steps: Any) -> list[int]:
        writes.append(len(steps))
        started.set()
        if len(writes) == 1:
            await release.wait()  # the first write's round trip
        return await real(engine, steps)

    monkeypatch.setattr(lane, "write_all", slow)
    marks = inbox.DoneMarks(db.engine)
    first = asyncio.create_task(marks.mark(1, T))
    await started.wait()
    later = []
    for i in range(2, 12):  # over several loop turns, all while the first is in flight
        later.append(asyncio.create_task(marks.mark(i, T)))
        await asyncio.sleep(0)
    assert writes == [1]
    release.set()
    await asyncio.gather(first, *later)
    assert writes == [1, 1 if db.backend == "postgresql" else 10]
    assert await _done(db) == set(range(1, 12))


async def test_a_cancelled_writer_fails_the_marks_waiting_for_it(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pending(db, 1, 2)
    started = asyncio.Event()

    async def hung(engine: Any, steps: Any) -> list[int]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(lane, "write_all", hung)
    marks = inbox.DoneMarks(db.engine)
    first = asyncio.create_task(marks.mark(1, T))
    await started.wait()
    second = asyncio.create_task(marks.mark(2, T))
    await asyncio.sleep(0)
    assert marks._writer is not None
    marks._writer.cancel()
    results = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert [type(r) for r in results] == [asyncio.CancelledError, asyncio.CancelledError]
