"""Opening the database for a command: the preflight checks, migrations, and a database
failure turned into one line for the user (exit 3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from routing.store import db

T = TypeVar("T")


async def with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Check the database, bring its schema up to date, run ``work`` on it, close it."""
    await _check_database(settings)
    engine = db.make_engine(settings.database_url)
    try:
        await db.upgrade(engine)
        return await work(engine)
    finally:
        await engine.dispose()


class DatabaseUnavailable(Exception):
    """The database URL or the database itself: the message is one line for the user."""


async def _check_database(settings: Settings) -> None:
    """The checks `run` makes of the database (bot.preflight), before any command uses it:
    a supported scheme (not mysql://), then a connection within the preflight timeout."""
    from bot import preflight

    url = settings.database_url
    scheme = preflight._database_scheme(url)
    if scheme not in preflight.DATABASE_SCHEMES:
        raise DatabaseUnavailable(
            f"CONTACTBOT_DATABASE_URL has the unsupported scheme {scheme!r}: use "
            "sqlite+aiosqlite:///path/to/contactbot.db or postgresql+asyncpg://user@host/db"
        )
    try:
        # Also opens an SQLite file without aiosqlite first (a clean one-line failure).
        await preflight._check_database(url, settings.preflight_timeout)
    except preflight.PreflightError as exc:
        raise DatabaseUnavailable(str(exc)) from None


def database_failure(exc: BaseException, settings: Settings) -> str | None:
    """One line for a database that failed after the checks (gone away, refusing), or None
    if ``exc`` is something else (a bug: let its traceback show)."""
    from sqlalchemy.exc import DBAPIError

    from bot.preflight import describe

    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    if isinstance(exc, DBAPIError | OSError):
        return describe(exc, settings)
    if isinstance(exc, TimeoutError):
        return f"the database at {safe_url(settings.database_url)} did not answer in time"
    return None


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
