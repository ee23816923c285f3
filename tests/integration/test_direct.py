"""routing/store/direct.py: a prebuilt statement run on the session's own driver connection
reads and writes exactly what the session would (types both ways, ``IN`` lists, RETURNING),
inside the session's transaction (a rollback takes its writes back), sees the session's
pending ORM changes, and fails with SQLAlchemy's exceptions: on SQLite inline (the bot's
handling) and not, and on PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import nullcontext
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from routing.store import direct, sqlite_driver
from routing.store.models import INBOX_DONE, INBOX_PENDING, InboundUpdate
from tests.conftest import Db, loop_ticks

T = datetime(2026, 12, 2, 8, 30, 1, 123456, tzinfo=UTC)
_T = InboundUpdate

PENDING_OR_DONE = direct.Statement(
    select(_T.update_id, _T.status, _T.received_at, _T.handled_at)
    .where(_T.chat_id == bindparam("chat"), _T.status.in_((INBOX_PENDING, INBOX_DONE)))
    .order_by(_T.update_id)
)
ADD = direct.Statement(
    insert(_T)
    .values(update_id=bindparam("v_id"), chat_id=bindparam("v_chat"), payload="{}",
            status=INBOX_PENDING, received_at=bindparam("v_at", type_=_T.received_at.type),
            attempts=0)
    .returning(_T.update_id, _T.received_at)
)  # fmt: skip
DONE = direct.Statement(
    update(_T)
    .where(_T.chat_id == bindparam("chat"))
    .values(status=INBOX_DONE, handled_at=bindparam("v_at", type_=_T.handled_at.type))
)


def _mode(inline: bool) -> object:
    return sqlite_driver.inline() if inline else nullcontext()


@pytest.mark.parametrize("inline", [True, False])
async def test_reads_and_writes_what_the_session_would(db: Db, inline: bool) -> None:
    with _mode(inline):  # type: ignore[attr-defined]
        async with db.sessions() as s, s.begin():
            added = await ADD.first(s, {"v_id": 1, "v_chat": 7, "v_at": T})
            assert (added.update_id, added.received_at) == (1, T)
            await ADD.execute(s, {"v_id": 2, "v_chat": 7, "v_at": T})
            s.add(InboundUpdate(update_id=3, chat_id=7, payload="{}", status="quarantined",
                                received_at=T, attempts=5))  # fmt: skip
            s.add(InboundUpdate(update_id=4, chat_id=7, payload="{}", status=INBOX_PENDING,
                                received_at=T, attempts=0))  # fmt: skip
            # Not flushed yet: a direct statement sees them all the same (autoflush).
            assert (await DONE.execute(s, {"chat": 7, "v_at": T})).rowcount == 4
            rows = await PENDING_OR_DONE.rows(s, {"chat": 7})
    # The IN list holds both statuses; the quarantined row changed to done as well.
    assert [(r.update_id, r.status, r.received_at, r.handled_at) for r in rows] == [
        (i, INBOX_DONE, T, T) for i in (1, 2, 3, 4)
    ]
    async with db.sessions() as s:  # what the ORM reads back
        stored = (await s.execute(select(_T).order_by(_T.update_id))).scalars().all()
    assert [(u.update_id, u.status, u.received_at, u.handled_at) for u in stored] == [
        (i, INBOX_DONE, T, T) for i in (1, 2, 3, 4)
    ]


@pytest.mark.parametrize("inline", [True, False])
async def test_its_writes_are_the_sessions_transaction(db: Db, inline: bool) -> None:
    with _mode(inline):  # type: ignore[attr-defined]
        async with db.sessions() as s:
            async with s.begin():
                await ADD.execute(s, {"v_id": 1, "v_chat": 7, "v_at": T})
            with pytest.raises(RuntimeError):
                async with s.begin():
                    await ADD.execute(s, {"v_id": 2, "v_chat": 7, "v_at": T})
                    raise RuntimeError("the handler failed")
            async with s.begin():
                rows = await PENDING_OR_DONE.rows(s, {"chat": 7})
    assert [r.update_id for r in rows] == [1]


@pytest.mark.parametrize("inline", [True, False])
async def test_a_constraint_fails_as_sqlalchemys_integrity_error(db: Db, inline: bool) -> None:
    with _mode(inline):  # type: ignore[attr-defined]
        async with db.sessions() as s:
            async with s.begin():
                await ADD.execute(s, {"v_id": 1, "v_chat": 7, "v_at": T})
            with pytest.raises(IntegrityError):
                async with s.begin():
                    await ADD.execute(s, {"v_id": 1, "v_chat": 8, "v_at": T})
            async with s.begin():  # the session is usable after the rollback
                assert await PENDING_OR_DONE.scalar(s, {"chat": 7}) == 1
                assert await PENDING_OR_DONE.scalar(s, {"chat": 8}) is None


@pytest.mark.parametrize("inline", [True, False])
async def test_a_read_on_the_engine_needs_no_session(db: Db, inline: bool) -> None:
    async with db.sessions() as s, s.begin():
        for i in (1, 2):
            s.add(InboundUpdate(update_id=i, chat_id=7, payload="{}", status=INBOX_PENDING,
                                received_at=T, attempts=0))  # fmt: skip
    with _mode(inline):  # type: ignore[attr-defined]
        rows = await PENDING_OR_DONE.read(db.engine, {"chat": 7})
        again = await PENDING_OR_DONE.read(db.engine, {"chat": 7})  # the connection went back
    assert (
        [(r.update_id, r.received_at) for r in rows]
        == [(1, T), (2, T)]
        == [(r.update_id, r.received_at) for r in again]
    )


# --- a transaction of its own (direct.transaction) ---------------------------------------


@pytest.mark.parametrize("inline", [True, False])
async def test_a_transaction_of_its_own_commits_or_rolls_back(db: Db, inline: bool) -> None:
    with _mode(inline):  # type: ignore[attr-defined]
        async with direct.transaction(db.engine) as tx:
            await ADD.execute(tx, {"v_id": 1, "v_chat": 7, "v_at": T})
            assert [r.update_id for r in await PENDING_OR_DONE.rows(tx, {"chat": 7})] == [1]
        with pytest.raises(RuntimeError):
            async with direct.transaction(db.engine) as tx:
                await ADD.execute(tx, {"v_id": 2, "v_chat": 7, "v_at": T})
                raise RuntimeError("the step failed")
        with pytest.raises(IntegrityError):
            async with direct.transaction(db.engine) as tx:
                await DONE.execute(tx, {"chat": 7, "v_at": T})
                await ADD.execute(tx, {"v_id": 1, "v_chat": 8, "v_at": T})
        # The connection went back usable each time; only the first transaction stayed.
        async with direct.transaction(db.engine) as tx:
            rows = await PENDING_OR_DONE.rows(tx, {"chat": 7})
    assert [(r.update_id, r.status, r.handled_at) for r in rows] == [(1, INBOX_PENDING, None)]


async def test_sqlite_a_held_lock_is_waited_for_off_the_loop(db: Db) -> None:
    if db.backend != "sqlite":
        pytest.skip("SQLite's write lock")
    other = sqlite3.connect(db.url.split("///", 1)[1], isolation_level=None,
                            check_same_thread=False)  # fmt: skip
    other.execute("BEGIN IMMEDIATE")  # another process writing
    threading.Timer(0.4, lambda: other.execute("COMMIT")).start()
    try:
        async with loop_ticks() as ticks:
            with sqlite_driver.inline():
                async with direct.transaction(db.engine) as tx:
                    await ADD.execute(tx, {"v_id": 1, "v_chat": 7, "v_at": T})
    finally:
        other.close()
    assert ticks.count >= 10  # the loop ran while the transaction waited for the lock
    async with db.sessions() as s:
        assert await PENDING_OR_DONE.scalar(s, {"chat": 7}) == 1


# --- PostgreSQL: BEGIN waits for the first write; a last write needs none -----------------


async def test_pg_reads_and_a_last_write_run_without_a_transaction(db: Db) -> None:
    if db.backend == "sqlite":
        pytest.skip("PostgreSQL's round trips (SQLite's transaction holds its write lock)")
    async with direct.transaction(db.engine) as tx:
        assert await PENDING_OR_DONE.rows(tx, {"chat": 7}) == []
        assert not tx.pg.is_in_transaction()  # a read begins nothing
        await ADD.execute(tx, {"v_id": 1, "v_chat": 7, "v_at": T}, last=True)
        assert not tx.pg.is_in_transaction()  # one statement: atomic alone
        with pytest.raises(RuntimeError, match="marked last"):
            await DONE.execute(tx, {"chat": 7, "v_at": T})
    async with direct.transaction(db.engine) as tx:
        await ADD.execute(tx, {"v_id": 2, "v_chat": 7, "v_at": T})
        assert tx.pg.is_in_transaction()  # a write that is not the last begins
        await DONE.execute(tx, {"chat": 7, "v_at": T}, last=True)
    with pytest.raises(RuntimeError):
        async with direct.transaction(db.engine) as tx:
            await ADD.execute(tx, {"v_id": 3, "v_chat": 7, "v_at": T})
            raise RuntimeError("the step failed")  # rolled back: 3 is not kept
    async with direct.transaction(db.engine) as tx:
        rows = await PENDING_OR_DONE.rows(tx, {"chat": 7})
        assert not tx.pg.is_in_transaction()
    assert [(r.update_id, r.status) for r in rows] == [(1, INBOX_DONE), (2, INBOX_DONE)]
