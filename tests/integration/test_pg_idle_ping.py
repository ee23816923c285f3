"""PostgreSQL: a pooled connection is pinged before use only after sitting idle
(routing/store/db.py, ``PING_AFTER_IDLE_S``), and one the server dropped meanwhile is
replaced without the caller seeing an error. Pinging at every checkout cost a round trip per
transaction on the hot path (issue 19)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from routing.store import db as store_db
from routing.store import direct, inbox, lane
from tests.conftest import Db


@pytest.fixture
def pg(db: Db) -> Db:
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's connection pool")
    return db


async def test_a_connection_in_steady_use_is_not_pinged(
    pg: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = store_db.make_engine(pg.url)
    pings: list[Any] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real(c))
    try:
        for _ in range(20):
            async with engine.begin() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        assert pings == []
        # Idle for longer than the threshold (here: any time at all): pinged once per checkout.
        monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.0)
        for _ in range(3):
            async with engine.begin() as conn:
                await conn.execute(text("SELECT 1"))
        assert len(pings) == 3
    finally:
        await engine.dispose()


async def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    pg: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = store_db.make_engine(pg.url)
    other = store_db.make_engine(pg.url)
    try:
        async with engine.begin() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        # The server drops the pooled (idle) connection, as on a restart or an idle timeout.
        async with other.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.0)
        async with engine.begin() as conn:
            new_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        assert new_pid != pid
    finally:
        await engine.dispose()
        await other.dispose()


async def test_a_burst_reuses_the_connections_of_the_last_one(pg: Db) -> None:
    """Connections opened for a burst are kept for the next (issue 19): with SQLAlchemy's
    default pool, those beyond 5 were closed when returned and opened again by the next
    burst, a connection set-up and a server process each time. The ceiling stays 15."""
    engine = store_db.make_engine(pg.url)
    opened: list[Any] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def one() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_sleep(0.05)"))

    try:
        await asyncio.gather(*(one() for _ in range(12)))
        first = len(opened)
        assert first == 12
        for _ in range(3):
            await asyncio.gather(*(one() for _ in range(12)))
        assert len(opened) == first
        await asyncio.gather(*(one() for _ in range(40)))  # more than the ceiling: they wait
        assert len(opened) == store_db.PG_POOL_SIZE == 15
    finally:
        await engine.dispose()


_PID = direct.Statement(select(func.pg_backend_pid()))
_MARK = lane.Prepared(inbox._MARK_DONE)


async def test_direct_statements_take_an_idle_connection_without_a_greenlet(
    pg: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path's direct statements take and return an idle pooled connection on the
    loop (routing/store/pg_pool.py): a greenlet each way cost an mmap and a munmap of a
    fresh frame stack, about eight an update (issue 19). A connection that sat idle is
    still pinged first, and one the server dropped meanwhile is replaced unseen."""
    engine = store_db.make_engine(pg.url)
    other = store_db.make_engine(pg.url)
    spawned: list[str] = []
    real_spawn = direct.greenlet_spawn

    async def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        spawned.append(getattr(fn, "__name__", repr(fn)))
        return await real_spawn(fn, *args, **kw)

    monkeypatch.setattr(direct, "greenlet_spawn", counting)
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    try:
        pid = (await _PID.read(engine, {}))[0][0]  # opens the connection: the usual way
        spawned.clear()
        for _ in range(5):
            assert (await _PID.read(engine, {}))[0][0] == pid
            async with direct.transaction(engine) as tx:
                assert (await _PID.first(tx, {}))[0] == pid
            assert await lane.write(engine, _MARK, {"done_id": 0, "done_at": None}) == 0
        assert spawned == []
        assert pings == []

        # Idle past the threshold: pinged before use, in a greenlet (the one wait allowed).
        monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.0)
        assert (await _PID.read(engine, {}))[0][0] == pid
        assert len(pings) == 1

        # The server dropped it meanwhile: the statement runs on a new one all the same.
        async with other.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert (await _PID.read(engine, {}))[0][0] != pid
    finally:
        await engine.dispose()
        await other.dispose()


async def test_the_connection_handed_back_last_is_taken_first(pg: Db) -> None:
    """A steady load keeps using the few connections it needs, each with its prepared
    statements and its server process warm, rather than every connection of the pool in
    turn (each then preparing every statement of the hot path again)."""
    engine = store_db.make_engine(pg.url)
    try:
        backend = select(func.pg_backend_pid())
        pids = []
        for _ in range(3):  # three connections opened and handed back, oldest first
            held = [await engine.connect() for _ in range(3)]
            for conn in held:
                pids.append((await conn.execute(backend)).scalar())
            for conn in held:
                await conn.close()
        last = pids[-1]
        for _ in range(5):
            raw = await direct.checkout(engine, False)  # as the hot path takes one
            pid = await raw.driver_connection.fetchval("SELECT pg_backend_pid()")
            await direct.checkin(engine, raw, False, True)
            assert pid == last
    finally:
        await engine.dispose()
