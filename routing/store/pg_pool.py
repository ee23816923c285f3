"""PostgreSQL: a pooled connection taken and handed back on the loop, without a greenlet.

SQLAlchemy's async engine runs the pool's checkout and check-in in a greenlet, because either
may need the database: opening a connection, a ping, the rollback that resets a connection
on its way back. For a connection idle in the pool and in steady use none of that happens
(the queue hands it over without waiting, a ping is due only after ``db.PING_AFTER_IDLE_S``
of quiet, and a connection whose work ran on asyncpg directly has no SQLAlchemy transaction
to roll back). Yet each greenlet costs more than the pool's bookkeeping: a new greenlet gets
a frame stack of its own, which CPython 3.11 maps from the kernel and unmaps again when the
greenlet ends (an ``mmap`` and a ``munmap``: about 9 microseconds here). The hot path's
direct statements (routing/store/direct.py, lane.py) made about eight an update that way
(issue 19).

So they take such a connection here, and fall back to ``AsyncEngine.raw_connection`` (and a
greenlet for the check-in) for everything else. The SQLite counterpart is
``sqlite_driver.checkout_now``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError, MissingGreenlet
from sqlalchemy.pool import QueuePool

_TAKING: ContextVar[bool] = ContextVar("contactbot_pg_taking", default=False)

# Set on a pool record by the checkout event (db._ping_when_idle) when its ping is due but
# the checkout runs here, where the event cannot wait for it: the taker pings instead.
PING_DUE = "contactbot.ping_due"


def taking_now() -> bool:
    """Whether the current checkout is :func:`checkout_now`'s (nothing may wait in it)."""
    return _TAKING.get()


def checkout_now(sync_engine: Any) -> Any | None:
    """An idle pooled connection, taken on the loop without a greenlet, or None (none idle,
    or one must be opened again: take it the usual way). ``sync_engine``: the async
    engine's. The caller pings it first when :func:`ping_due` says so."""
    pool = sync_engine.pool
    if not isinstance(pool, QueuePool) or pool.checkedin() == 0:
        return None
    token = _TAKING.set(True)
    try:
        return sync_engine.raw_connection()
    except MissingGreenlet:
        # The idle connection had been invalidated and must be opened again: the pool has
        # taken it back (SQLAlchemy's checkout failure path), so the usual way finds it.
        return None
    finally:
        _TAKING.reset(token)


def ping_due(raw: Any) -> bool:
    """Whether a connection :func:`checkout_now` gave sat idle long enough to be pinged."""
    return bool(raw.info.pop(PING_DUE, False))  # the record's ``info``, as the event's


def checkin_now(raw: Any) -> bool:
    """Hand ``raw`` back to the pool on the loop; False (nothing done) when its reset would
    need the database: a transaction is open on it, so the pool's rollback must wait."""
    adapted = raw.dbapi_connection
    if adapted is None or getattr(adapted, "_transaction", True) is not None:
        return False
    if raw.driver_connection.is_in_transaction():
        return False
    raw.close()
    return True


def ping(dialect: Dialect, dbapi_conn: Any) -> None:
    """Ping a connection that sat idle (in a greenlet): ``DisconnectionError`` when the
    server is gone, so that it is discarded and another one taken (SQLAlchemy's documented
    pessimistic disconnect handling); any other error as it came."""
    try:
        dialect.do_ping(dbapi_conn)
    except Exception as error:
        dbapi_error = getattr(dialect.loaded_dbapi, "Error", ())
        if isinstance(error, dbapi_error) and dialect.is_disconnect(error, dbapi_conn, None):
            raise DisconnectionError() from error
        raise
