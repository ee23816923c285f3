"""The first update after a start runs on compiled statements: the lookup every update makes
(routing/store/update_lookup.py) is compiled by the start-up's warm-up, not on the first
customer's message (about 15 ms of CPU for the joined statement; bench/RESULTS.md)."""

from __future__ import annotations

from typing import Any

import pytest

from routing.clock import utcnow
from routing.store import db as store_db
from routing.store import direct, sqlite_driver, update_lookup
from tests.conftest import Db


async def _first_message_compiles(url: str, monkeypatch: pytest.MonkeyPatch, *, warm: bool) -> int:
    """In a freshly started process and engine (as after a restart): how many statements the
    first update's lookups compile."""
    for statement in (update_lookup._FULL, update_lookup._SEEN_ONLY):
        monkeypatch.setattr(statement, "_by_dialect", {})  # nothing compiled yet
    engine = store_db.make_engine(url)
    sessions = store_db.make_sessionmaker(engine)
    compiled: list[Any] = []
    real = direct._compile

    def counted(statement: Any, dialect: Any) -> Any:
        compiled.append(statement)
        return real(statement, dialect)

    try:
        if warm:
            async with sessions() as s, s.begin():
                await update_lookup.warm_up(s, utcnow())
        monkeypatch.setattr(direct, "_compile", counted)
        # As DbSessionMiddleware runs it: inline (SQLite), outside a transaction.
        with sqlite_driver.inline():
            async with sessions() as s:
                await update_lookup.lookup(s, 1, 555, utcnow())  # a message
                await update_lookup.lookup(s, 2, None, utcnow())  # an update without a sender
    finally:
        monkeypatch.setattr(direct, "_compile", real)
        await engine.dispose()
    return len(compiled)


async def test_after_the_warm_up_the_first_updates_lookup_is_already_compiled(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control: without it, the first update compiles both.
    assert await _first_message_compiles(db.url, monkeypatch, warm=False) == 2
    assert await _first_message_compiles(db.url, monkeypatch, warm=True) == 0
