"""Who sent an update, and has it been handled before: one statement per update.

Every update needs the same three facts before a handler runs: was this update id already
handled (a redelivery), is the sender a registered agent, and which customer row is theirs.
Asked separately they were three statements and, through aiosqlite, three trips to the
driver thread on the hot path of every message; joined they are one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.models import OPEN_STATUSES, Agent, Conversation, Customer, ProcessedUpdate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    seen: bool
    agent: Agent | None
    customer: Customer | None
    # The customer's open (queued or assigned) conversation, if any.
    conversation: Conversation | None = None


def _lookup_statements() -> tuple[Any, Any]:
    # Built once: constructing the joined statement and its cache key on every update cost
    # more CPU than running it.
    update_id = bindparam("update_id", type_=BigInteger)
    seen = exists().where(ProcessedUpdate.update_id == update_id).label("seen")
    sender = select(bindparam("tid", type_=BigInteger).label("tid")).subquery()
    full = (
        select(seen, Agent, Customer, Conversation)
        .select_from(sender)
        .outerjoin(Agent, and_(Agent.telegram_id == sender.c.tid, Agent.active.is_(True)))
        .outerjoin(Customer, Customer.telegram_id == sender.c.tid)
        .outerjoin(
            Conversation,
            and_(
                Conversation.customer_id == Customer.id,
                Conversation.status.in_(OPEN_STATUSES),
            ),
        )
    )
    return select(seen), full


_SEEN_ONLY, _FULL = _lookup_statements()


async def lookup(session: AsyncSession, update_id: int, telegram_id: int | None) -> Lookup:
    """The redelivery check, the sender's agent and customer rows and the customer's open
    conversation, in one round trip."""
    if telegram_id is None:
        seen = await session.scalar(_SEEN_ONLY, {"update_id": update_id})
        return Lookup(bool(seen), None, None)
    row = (await session.execute(_FULL, {"update_id": update_id, "tid": telegram_id})).one()
    return Lookup(bool(row[0]), row[1], row[2], row[3])


Clock = Callable[[], datetime]
# Rows per INSERT: two bound parameters each, well under SQLite's variable limit.
BATCH = 500


class ProcessedLog:
    """Handled update ids, recorded in batches off the hot path.

    Recording each id in its own transaction cost every update a BEGIN, an INSERT and a
    COMMIT. Ids wait here (and count as handled at once) and are written together every
    ``interval`` seconds. The price: after a crash, updates handled in the last interval
    before it are not known as handled if Telegram redelivers them.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        interval: float = 0.05,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.interval = interval
        self._pending: dict[int, datetime] = {}
        self._writing: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, update_id: int) -> bool:
        return update_id in self._pending or update_id in self._writing

    def add(self, update_id: int) -> None:
        self._pending[update_id] = self.clock()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.interval)
        try:
            await self.flush()
        except Exception:  # a failed batch is retried with the next one
            log.exception("could not record handled updates; will retry")
            self._pending = self._writing | self._pending
            self._writing = {}

    async def flush(self) -> None:
        while self._pending:
            self._writing, self._pending = self._pending, {}
            rows = [{"update_id": u, "processed_at": t} for u, t in self._writing.items()]
            async with self.sessions() as s, s.begin():
                pg = s.get_bind().dialect.name == "postgresql"
                ins = postgresql.insert if pg else sqlite.insert
                for i in range(0, len(rows), BATCH):
                    stmt = ins(ProcessedUpdate).values(rows[i : i + BATCH])
                    await s.execute(stmt.on_conflict_do_nothing(index_elements=["update_id"]))
            self._writing = {}

    async def close(self) -> None:
        """Write whatever is waiting (on shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pending = self._writing | self._pending
        self._writing = {}
        await self.flush()
