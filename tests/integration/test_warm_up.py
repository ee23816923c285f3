"""The first update after a start runs on compiled statements: the lookup every update makes
(routing/store/update_lookup.py) is compiled by the start-up's warm-up, not on the first
customer's message (about 15 ms of CPU for the joined statement; bench/RESULTS.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import default

from routing.clock import utcnow
from routing.store import db as store_db
from routing.store import update_lookup
from tests.conftest import Db


async def _first_message_hits(url: str, *, warm: bool) -> list[bool]:
    """In a freshly started engine (as after a restart): for each statement of the first
    update's lookup, whether it was found compiled in the engine's cache."""
    engine = store_db.make_engine(url)
    sessions = store_db.make_sessionmaker(engine)
    hits: list[bool] = []

    def note(_c: Any, _cur: Any, _stmt: Any, _params: Any, context: Any, _many: Any) -> None:
        hits.append(context.cache_hit == default.CACHE_HIT)

    try:
        if warm:
            async with sessions() as s, s.begin():
                await update_lookup.warm_up(s, utcnow())
        event.listen(engine.sync_engine, "after_cursor_execute", note)
        async with sessions() as s, s.begin():
            await update_lookup.lookup(s, 1, 555, utcnow())  # a message
            await update_lookup.lookup(s, 2, None, utcnow())  # an update without a sender
    finally:
        await engine.dispose()
    return hits


async def test_after_the_warm_up_the_first_updates_lookup_is_already_compiled(db: Db) -> None:
    cold = await _first_message_hits(db.url, warm=False)
    assert cold == [False, False]  # the control: without it, the first update compiles both
    assert await _first_message_hits(db.url, warm=True) == [True, True]
