"""routing/store/lane.py: one prebuilt statement in a transaction of its own on the driver's
connection stores exactly what the ORM session would, on SQLite (inline or not, lock free or
held by another process) and on PostgreSQL, and a failing one leaves nothing half done."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from routing.store import inbox, lane, sqlite_driver
from routing.store.models import INBOX_DONE, INBOX_PENDING, InboundUpdate
from tests.conftest import Db, loop_ticks

T = datetime(2026, 12, 2, 8, 30, 1, 123456, tzinfo=UTC)


async def _pending(db: Db, *ids: int) -> None:
    async with db.sessions() as s, s.begin():
        for i in ids:
            s.add(InboundUpdate(update_id=i, chat_id=1, payload="{}", status=INBOX_PENDING,
                                received_at=T, attempts=0))  # fmt: skip


async def _row(db: Db, update_id: int) -> tuple[str, datetime | None]:
    async with db.sessions() as s:
        row = (
            await s.execute(
                select(InboundUpdate.status, InboundUpdate.handled_at).where(
                    InboundUpdate.update_id == update_id
                )
            )
        ).one()
    return row[0], row[1]


@pytest.mark.parametrize("inline", [True, False])
async def test_the_done_mark_stores_what_the_session_would(db: Db, inline: bool) -> None:
    await _pending(db, 1, 2)
    with sqlite_driver.inline() if inline else _nothing():
        await inbox.mark_done(db.engine, 1, T)
    async with db.sessions() as s, s.begin():  # the same statement through the ORM session
        await s.execute(inbox._MARK_DONE, {"done_id": 2, "done_at": T})
    assert await _row(db, 1) == await _row(db, 2) == (INBOX_DONE, T)


async def test_rowcount_and_a_failure_leaves_nothing(db: Db) -> None:
    await _pending(db, 1)
    assert await lane.write(db.engine, lane.Prepared(inbox._MARK_DONE),
                            {"done_id": 99, "done_at": T}) == 0  # fmt: skip
    duplicate = lane.Prepared(
        insert(InboundUpdate).values(
            update_id=bindparam("i"), chat_id=1, payload="{}", status=INBOX_PENDING,
            received_at=bindparam("at"), attempts=0,
        )
    )  # fmt: skip
    with pytest.raises(IntegrityError), sqlite_driver.inline():
        await lane.write(db.engine, duplicate, {"i": 1, "at": T})
    # The connection went back to the pool clean: the next transactions work.
    assert await lane.write(db.engine, duplicate, {"i": 2, "at": T}) == 1
    bump = lane.Prepared(
        update(InboundUpdate).where(InboundUpdate.update_id == bindparam("i")).values(attempts=7)
    )
    assert await lane.write(db.engine, bump, {"i": 1}) == 1
    async with db.sessions() as s:
        assert (
            await s.scalar(select(InboundUpdate.attempts).where(InboundUpdate.update_id == 1)) == 7
        )


async def test_sqlite_a_held_lock_is_waited_for_off_the_loop(db: Db) -> None:
    if db.backend != "sqlite":
        pytest.skip("SQLite's write lock")
    await _pending(db, 1)
    path = db.url.split("///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.4, lambda: other.execute("COMMIT")).start()
    try:
        async with loop_ticks() as ticks:
            with sqlite_driver.inline():
                await inbox.mark_done(db.engine, 1, T + timedelta(seconds=1))
    finally:
        other.close()
    assert ticks.count >= 10  # the loop ran while the mark waited for the lock
    assert await _row(db, 1) == (INBOX_DONE, T + timedelta(seconds=1))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_several_statements_are_one_transaction(db: Db) -> None:
    """A failing statement takes the ones before it along: the sender's "sent" mark never
    stays without its links, nor the links without the mark."""
    await _pending(db, 1)
    mark = (lane.Prepared(inbox._MARK_DONE), {"done_id": 1, "done_at": T})
    duplicate = (
        lane.Prepared(
            insert(InboundUpdate).values(
                update_id=1, chat_id=1, payload="{}", status=INBOX_PENDING,
                received_at=bindparam("at"), attempts=0,
            )
        ),
        {"at": T},
    )  # fmt: skip
    for inline in (True, False):
        with pytest.raises(IntegrityError), sqlite_driver.inline() if inline else _nothing():
            await lane.write_all(db.engine, [mark, duplicate])
        assert await _row(db, 1) == (INBOX_PENDING, None)
    assert await lane.write_all(db.engine, [mark, mark]) == [1, 1]
    assert await _row(db, 1) == (INBOX_DONE, T)


async def test_pg_one_statement_runs_without_begin_and_commit(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a lone statement (a done mark, a send's mark, a notice's link: most of
    the lane's writes) is atomic by itself: no BEGIN and COMMIT round trips around it.
    Several statements still share one transaction (the test above)."""
    if db.backend == "sqlite":
        pytest.skip("PostgreSQL's round trips")
    import asyncpg

    await _pending(db, 1, 2)
    opened: list[int] = []
    real = asyncpg.connection.Connection.transaction

    def counting(self: asyncpg.Connection, **kw: object) -> object:
        opened.append(1)
        return real(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncpg.connection.Connection, "transaction", counting)
    mark = lane.Prepared(inbox._MARK_DONE)
    assert await lane.write(db.engine, mark, {"done_id": 1, "done_at": T}) == 1
    assert opened == []
    steps = [(mark, {"done_id": 2, "done_at": T}), (mark, {"done_id": 1, "done_at": T})]
    assert await lane.write_all(db.engine, steps) == [1, 1]
    assert opened == [1]
    assert await _row(db, 1) == (INBOX_DONE, T)
    assert await _row(db, 2) == (INBOX_DONE, T)


def _instance(name: str) -> lane.Step:
    from routing.store.cluster import Instance

    insert_one = lane.Prepared(
        insert(Instance).values(
            id=bindparam("name"), host="h", pid=1, started_at=bindparam("at"),
            last_seen=bindparam("at"), has_redis=False,
        )
    )  # fmt: skip
    return insert_one, {"name": name, "at": T}


async def test_pg_writes_to_different_tables_are_one_statement(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send's mark, the relay's links and the agent's last chat: on PostgreSQL one
    statement (data-modifying CTEs), one round trip instead of five (BEGIN, three writes,
    COMMIT), with each part's count, and all or nothing."""
    if db.backend == "sqlite":
        pytest.skip("PostgreSQL's round trips")
    import asyncpg

    await _pending(db, 1, 2)
    trips: list[str] = []
    for name in ("execute", "fetchrow", "fetch", "transaction"):
        real = getattr(asyncpg.connection.Connection, name)

        def counting(self: object, *a: object, _real: object = real, _n: str = name,
                     **kw: object) -> object:  # fmt: skip
            trips.append(_n)
            return _real(self, *a, **kw)  # type: ignore[operator]

        monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    mark = (lane.Prepared(inbox._MARK_DONE), {"done_id": 1, "done_at": T})
    nobody = lane.Prepared(
        update(InboundUpdate.__table__).where(InboundUpdate.update_id == 99).values(attempts=5)
    )
    # Two inserts into one table may share it (each adds its own row); an update may not.
    assert await lane.write_all(db.engine, [mark, _instance("a"), _instance("b")]) == [1, 1, 1]
    assert trips == ["fetchrow"]
    assert await _row(db, 1) == (INBOX_DONE, T)
    trips.clear()
    # A part that fails takes the others along (one statement is atomic).
    other = (lane.Prepared(inbox._MARK_DONE), {"done_id": 2, "done_at": T})
    with pytest.raises(IntegrityError):
        await lane.write_all(db.engine, [other, _instance("c"), _instance("a")])
    assert trips == ["fetchrow"]
    assert await _row(db, 2) == (INBOX_PENDING, None)
    trips.clear()
    # Two writes to one table (the second would not see the first): a transaction.
    assert await lane.write_all(db.engine, [other, (nobody, {})]) == [1, 0]
    assert trips == ["transaction", "execute", "execute", "execute", "execute"]  # BEGIN ... COMMIT


def test_only_writes_that_cannot_see_each_other_are_one_statement() -> None:
    from sqlalchemy.dialects import postgresql

    from routing.delivery.sending import _CLAIM_D, _HEAD_D, _SENT_LANE
    from routing.queue.conversations import _LAST_INBOUND_LANE, _LINK_LANE
    from routing.store.models import Delivery

    d = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]

    def one(*ps: lane.Prepared) -> str | None:
        return lane.one_statement([(p, {}) for p in ps], d)

    sql = one(_SENT_LANE, _LINK_LANE, _LINK_LANE, _LAST_INBOUND_LANE)
    assert sql is not None and sql.startswith("WITH w0 AS (UPDATE deliveries")
    # Parameters renumbered across the parts: $1-$5, then $6-$9, $10-$13, $14-$15.
    assert "VALUES ($10::BIGINT" in sql and "agents.id = $15::INTEGER RETURNING 1" in sql
    assert one(_SENT_LANE, _SENT_LANE) is None  # one table updated twice
    assert one(_SENT_LANE, _CLAIM_D) is None  # a part that returns rows
    assert one(_SENT_LANE, _HEAD_D) is None  # a read
    reads_deliveries = lane.Prepared(
        update(InboundUpdate.__table__)
        .where(InboundUpdate.update_id.in_(select(Delivery.id)))
        .values(attempts=1)
    )
    assert one(_SENT_LANE, reads_deliveries) is None  # it names the table the other writes
    assert one(_LINK_LANE, reads_deliveries) is not None


def test_gathered_makes_one_step_of_several_rows_only_when_it_may() -> None:
    from sqlalchemy.dialects import postgresql

    from routing.selfservice import deflection

    d = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    mark = (lane.Prepared(inbox._MARK_DONE), {"done_id": 1, "done_at": T})
    step = deflection._STEP

    def row(sid: int) -> lane.Step:
        return step, {"sid": sid, "v_at": T, "v_answers": 1, "v_searches": 0, "v_path": None,
                      "v_question": None}  # fmt: skip

    together = lane.gathered([row(1), mark, row(2), row(3)])
    assert [p for p, _ in together] == [deflection._STEP_MANY, mark[0]]
    assert together[0][1]["sid"] == [1, 2, 3] and together[0][1]["v_answers"] == [1, 1, 1]
    # One row twice: left as it was, in order (one statement must not change a row twice).
    twice = [row(1), row(1)]
    assert lane.gathered(twice) == twice
    assert lane.gathered([row(1), mark]) == [row(1), mark]  # alone: its own form
    # A keyed update and an insert of values into the same table cannot change what the
    # other does: one statement. Two updates of one table may not be.
    start = deflection._START_WRITE
    assert lane.one_statement([(deflection._STEP_MANY, {}), (start, {}), mark], d) is not None
    assert lane.one_statement([(deflection._STEP_MANY, {}), (deflection._START_MANY, {})], d)
    assert lane.one_statement([(step, {}), (deflection._STEP_MANY, {})], d) is None
    # Two updates of one table's rows named by different keys cannot either; by one key
    # (one row twice), they may.
    assert lane.one_statement([row(1), (deflection._STEP_MANY, {"sid": [2, 3]})], d)
    assert lane.one_statement([row(2), (deflection._STEP_MANY, {"sid": [2, 3]})], d) is None
    assert lane.one_statement([(step, {}), (deflection._END_QUIET, {})], d) is None
