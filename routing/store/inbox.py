"""The inbox: raw updates stored before Telegram is told they arrived.

Telegram forgets an update once it is confirmed (the next ``getUpdates`` offset, or a 2xx
answer to the webhook). Confirming only what is committed here means a crash, a kill or an
outage of the handlers never loses one: pending rows are handled when the bot is back. The
row is also the redelivery guard: an update id already ``done`` is not handled again.

Storing is one INSERT for a whole ``getUpdates`` batch; marking one handled is one UPDATE.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, any_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from routing.store import direct, lane
from routing.store.models import INBOX_DONE, INBOX_PENDING, INBOX_QUARANTINED, InboundUpdate

# Update kinds whose payload carries the chat it happens in; the rest carry only a user.
_CHAT_KINDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "message_reaction",
    "message_reaction_count",
    "chat_boost",
    "removed_chat_boost",
)
_INBOX = cast(Table, InboundUpdate.__table__)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawUpdate:
    update_id: int
    chat_id: int | None
    payload: str  # the JSON text as received


def chat_key(raw: Mapping[str, Any]) -> int | None:
    """The chat (else the user) an update belongs to: its updates are handled in order.

    Never raises: a malformed update gets no key and is handled (quarantined) on its own.
    """
    for kind, body in raw.items():
        if kind == "update_id" or not isinstance(body, Mapping):
            continue
        if kind in _CHAT_KINDS:
            chat = body.get("chat")
            if isinstance(chat, Mapping) and isinstance(chat.get("id"), int):
                return int(chat["id"])
        if kind == "callback_query":
            message = body.get("message")
            chat = message.get("chat") if isinstance(message, Mapping) else None
            if isinstance(chat, Mapping) and isinstance(chat.get("id"), int):
                return int(chat["id"])
        for who in ("from", "user", "voter_chat"):
            person = body.get(who)
            if isinstance(person, Mapping) and isinstance(person.get("id"), int):
                return int(person["id"])
    return None


def parse_batch(raws: Sequence[Any]) -> tuple[list[RawUpdate], list[str]]:
    """Raw updates as received (dicts) -> rows to store, and one line per item without an
    integer ``update_id`` (those cannot be stored, confirmed or handled: reported, skipped)."""
    rows: list[RawUpdate] = []
    bad: list[str] = []
    for raw in raws:
        uid = raw.get("update_id") if isinstance(raw, Mapping) else None
        if not isinstance(uid, int) or isinstance(uid, bool):
            bad.append(f"an update without an integer update_id: {str(raw)[:200]!r}")
            continue
        rows.append(RawUpdate(uid, chat_key(raw), json.dumps(raw, ensure_ascii=False)))
    return rows, bad


def _insert_new(dialect: Any) -> Any:
    ins = dialect.insert(_INBOX).values(
        update_id=bindparam("update_id"),
        chat_id=bindparam("chat_id"),
        payload=bindparam("payload"),
        status=INBOX_PENDING,
        attempts=0,
        received_at=bindparam("received_at", type_=InboundUpdate.received_at.type),
    )
    return ins.on_conflict_do_nothing(index_elements=["update_id"]).returning(_INBOX.c.update_id)


# Built once per dialect and run as one executemany (SQLAlchemy batches it into multi-row
# INSERTs, "insertmanyvalues", with RETURNING): a statement rebuilt with the batch's rows in
# its VALUES was compiled anew for every getUpdates answer, 1.3 ms for a single update.
_INSERT_NEW = {"sqlite": _insert_new(sqlite), "postgresql": _insert_new(postgresql)}


async def store(session: AsyncSession, rows: Sequence[RawUpdate], now: datetime) -> set[int]:
    """Insert new updates as pending; returns the ids that were new (others are redeliveries
    of updates already stored, handled or not)."""
    if not rows:
        return set()
    stmt = _INSERT_NEW[session.get_bind().dialect.name]
    values = [
        {"update_id": r.update_id, "chat_id": r.chat_id, "payload": r.payload, "received_at": now}
        for r in rows
    ]
    return set((await session.execute(stmt, values)).scalars())


async def pending(session: AsyncSession, limit: int = 10_000) -> list[RawUpdate]:
    """Stored updates not yet handled, oldest first (after a crash or a drain timeout)."""
    rows = await session.execute(
        select(InboundUpdate.update_id, InboundUpdate.chat_id, InboundUpdate.payload)
        .where(InboundUpdate.status == INBOX_PENDING)
        .order_by(InboundUpdate.update_id)
        .limit(limit)
    )
    return [RawUpdate(u, c, p) for u, c, p in rows.all()]


async def pending_for_chat(
    session: AsyncSession, chat_id: int, limit: int | None = None
) -> list[RawUpdate]:
    """One chat's stored updates not yet handled, in update id order."""
    rows = await session.execute(
        select(InboundUpdate.update_id, InboundUpdate.chat_id, InboundUpdate.payload)
        .where(InboundUpdate.chat_id == chat_id, InboundUpdate.status == INBOX_PENDING)
        .order_by(InboundUpdate.update_id)
        .limit(limit)
    )
    return [RawUpdate(u, c, p) for u, c, p in rows.all()]


async def stale_pending(
    session: AsyncSession, received_before: datetime, limit: int = 500
) -> list[RawUpdate]:
    """Pending rows stored before ``received_before``, oldest first."""
    rows = await session.execute(
        select(InboundUpdate.update_id, InboundUpdate.chat_id, InboundUpdate.payload)
        .where(
            InboundUpdate.status == INBOX_PENDING,
            InboundUpdate.received_at < received_before,
        )
        .order_by(InboundUpdate.update_id)
        .limit(limit)
    )
    return [RawUpdate(u, c, p) for u, c, p in rows.all()]


async def is_done(session: AsyncSession, update_id: int) -> bool:
    status = await session.scalar(
        select(InboundUpdate.status).where(InboundUpdate.update_id == update_id)
    )
    return status == INBOX_DONE


# Once per handled update: a Core statement on the table, built once (an ORM-enabled
# UPDATE is rebuilt, cache-keyed and synchronised with the session on every call).
_MARK_DONE = (
    update(_INBOX)
    .where(_INBOX.c.update_id == bindparam("done_id"))
    .values(status=INBOX_DONE, handled_at=bindparam("done_at"))
)


_MARK_DONE_LANE = lane.Prepared(_MARK_DONE)
# PostgreSQL: a batch's marks as one statement, so the lane runs it without BEGIN and COMMIT
# (one round trip for the batch). Their ``handled_at`` is the batch's latest: the marks were
# made in the same turn of the event loop, microseconds apart.
_MARK_DONE_MANY = lane.Prepared(
    update(_INBOX)
    .where(_INBOX.c.update_id == any_(bindparam("done_ids", type_=postgresql.ARRAY(BigInteger))))
    .values(status=INBOX_DONE, handled_at=bindparam("done_at"))
)


async def mark_done(engine: AsyncEngine, update_id: int, now: datetime) -> None:
    """Mark an update handled, in a transaction of its own straight on the driver's
    connection (routing/store/lane.py): it happens once per update and needs no session."""
    await lane.write(engine, _MARK_DONE_LANE, {"done_id": update_id, "done_at": now})


# --- writes that go with the done mark ------------------------------------------------------


@dataclass
class WithMark:
    """Writes a handler leaves to its update's done mark (see :func:`leave_to_mark`)."""

    steps: list[lane.Step] = field(default_factory=list)
    open: bool = True


_WITH_MARK: ContextVar[WithMark | None] = ContextVar("contactbot_with_mark", default=None)


@contextmanager
def writes_with_mark() -> Iterator[WithMark]:
    """Around one attempt at handling an update (bot/intake.py): what the handlers leave to
    the done mark collects here. A failed attempt's writes are dropped with it."""
    collected = WithMark()
    token = _WITH_MARK.set(collected)
    try:
        yield collected
    finally:
        collected.open = False  # a task the handler spawned cannot add to a finished one
        _WITH_MARK.reset(token)


def leave_to_mark(steps: Sequence[lane.Step]) -> bool:
    """Leave ``steps`` to the done mark of the update being handled: they are committed in
    the mark's transaction, with the marks of the updates that finish together (a group
    commit), not in a transaction of their own. False when no update is being handled
    through the inbox here (the caller writes them itself).

    Only for a handler's last write, which nothing after it in the update reads (it is not
    visible before the mark), such as a self-service step's record (issue 19: on SQLite its
    own transaction was a sixth of a self-service answer's CPU). The next update of the
    same chat starts after the mark, so it sees them; a crash before the mark loses them
    with the mark, and the update, handled again, writes them once. The writes of updates
    that finish together (different chats) must not depend on one another: PostgreSQL
    makes several rows of one statement as one part of the marks' statement
    (lane.gathered), in no particular order among them."""
    collected = _WITH_MARK.get()
    if collected is None or not collected.open:
        return False
    collected.steps.extend(steps)
    return True


def collecting() -> bool:
    """Whether :func:`leave_to_mark` would take writes here."""
    collected = _WITH_MARK.get()
    return collected is not None and collected.open


@dataclass(eq=False)
class _Mark:
    update_id: int
    at: datetime
    writes: tuple[lane.Step, ...]
    done: asyncio.Future[None]


def _refused(error: BaseException) -> bool:
    """The database refused a statement's values (a constraint, a bad value), as opposed to
    being away or busy: retrying the same write cannot succeed."""
    return isinstance(error, IntegrityError | DataError)


class DoneMarks:
    """Done marks of updates that finish together, written in one transaction (a group
    commit); on PostgreSQL in one statement. The writes handlers left to them
    (:func:`leave_to_mark`) go in the same transaction, each update's before its mark.

    Each caller returns once its own mark is committed, exactly as with :func:`mark_done`,
    and fails with the batch if it fails (the caller retries). One write is in flight at a
    time: marks that come while it is wait for it and go together in the next, so under
    load the batches grow with the round trip instead of each loop turn paying one (on
    PostgreSQL single marks were half a statement per update; bench/RESULTS.md, issue 19).
    Alone, a mark waits one loop turn at most.

    A write the database refuses (a constraint) does not hold up the others: the batch is
    then written update by update, and the refused update's writes are dropped with a
    warning while its mark is still made (they are bookkeeping; its answers were sent)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._batch: list[_Mark] = []
        self._writer: asyncio.Task[None] | None = None

    async def mark(self, update_id: int, now: datetime, writes: Sequence[lane.Step] = ()) -> None:
        loop = asyncio.get_running_loop()
        one = _Mark(update_id, now, tuple(writes), loop.create_future())
        self._batch.append(one)
        if self._writer is None or self._writer.done():
            # Runs on the loop's next turn: marks added until then join this batch. The
            # task copies the caller's context (sqlite_driver.inline, as for mark_done).
            self._writer = loop.create_task(self._write_all())
        # Shielded: a caller cancelled while waiting does not cancel the others' write.
        await asyncio.shield(one.done)

    async def _write_all(self) -> None:
        # Until no batch waits: the one gathered while the last write was in flight goes
        # next (nothing awaits between this check and the task's end, so none is missed).
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                await self._write(batch)
            except BaseException as error:
                _fail(batch, error)
                if not isinstance(error, Exception):
                    # Cancelled (shutdown): the batch gathered meanwhile fails too, so
                    # none of its callers waits for a writer that is gone.
                    _fail(self._batch, error)
                    self._batch = []
                    raise

    async def _write(self, batch: list[_Mark]) -> None:
        try:
            if self.engine.dialect.name == "postgresql" and all(len(m.writes) < 2 for m in batch):
                # With the sends' marks, plans and links written at the same time: one
                # statement for all (lane.together), where each stream was one of its own.
                # Only writes that do not depend on one another: an update's two writes (a
                # quiet session's end, then a start) keep their own transaction, in order.
                await lane.together(self.engine).write(self._steps(batch))
            else:
                await lane.write_all(self.engine, self._steps(batch))
        except Exception as error:
            if not (_refused(error) and any(m.writes for m in batch)):
                raise
            for one in batch:  # whose write was refused: each update on its own
                await self._alone(one)
            return
        for one in batch:
            one.done.set_result(None)

    async def _alone(self, one: _Mark) -> None:
        try:
            try:
                await lane.write_all(self.engine, self._steps([one]))
            except Exception as error:
                if not (_refused(error) and one.writes):
                    raise
                log.warning(
                    "update %s: its handler's writes were refused and are dropped: %s",
                    one.update_id,
                    " ".join(str(error).split())[:300],
                )
                await lane.write_all(
                    self.engine, self._steps([_Mark(one.update_id, one.at, (), one.done)])
                )
        except Exception as error:
            _fail([one], error)
        else:
            one.done.set_result(None)

    def _steps(self, batch: list[_Mark]) -> list[lane.Step]:
        writes = [w for one in batch for w in one.writes]
        if self.engine.dialect.name == "postgresql" and all(len(m.writes) < 2 for m in batch):
            # The updates are of different chats, their writes independent: several rows'
            # writes of one statement become one statement (lane.gathered), and with the
            # marks one statement in all (lane.one_statement), not a transaction of each.
            writes = lane.gathered(writes)
        if len(batch) > 1 and self.engine.dialect.name == "postgresql":
            at = max(one.at for one in batch)
            ids = [one.update_id for one in batch]
            return [*writes, (_MARK_DONE_MANY, {"done_ids": ids, "done_at": at})]
        marks: list[lane.Step] = [
            (_MARK_DONE_LANE, {"done_id": one.update_id, "done_at": one.at}) for one in batch
        ]
        return [*writes, *marks]


def _fail(batch: list[_Mark], error: BaseException) -> None:
    for one in batch:
        if not one.done.done():
            one.done.set_exception(error)
            one.done.exception()  # retrieved: a caller that went away must not be reported


@dataclass(frozen=True)
class Effect:
    """What handling an update did that handling it again must not redo.

    A crash between a handler's commit and the done mark makes the next start handle the
    update again. Acts that name their object guard themselves (a stored transcript row is
    not relayed twice, a closed chat is not closed twice); acts that pick one ("the next
    chat", "the chat I am in") would pick another. Those record what they did here, in the
    transaction that does it, and a second handling resumes from it instead."""

    kind: str  # CLAIMED, CLOSED, TRANSFERRED
    conversation_id: int
    agent_id: int | None = None  # whom the chat went to (a claim, a transfer to a person)

    def __str__(self) -> str:
        agent = "" if self.agent_id is None else f":{self.agent_id}"
        return f"{self.kind}:{self.conversation_id}{agent}"

    @classmethod
    def parse(cls, raw: str) -> Effect:
        kind, conv, *agent = raw.split(":")
        return cls(kind, int(conv), int(agent[0]) if agent else None)


CLAIMED = "claim"
CLOSED = "close"
TRANSFERRED = "transfer"


async def record_effect(session: AsyncSession, update_id: int, effect: Effect) -> None:
    """In the transaction of the act: ``update_id`` did ``effect``. An update fed without
    the inbox (tests, tools) has no row, and nothing is recorded."""
    await _RECORD_EFFECT.execute(session, {"update_id": update_id, "effect": str(effect)})


async def effect_of(session: AsyncSession, update_id: int) -> Effect | None:
    """What an earlier handling of ``update_id`` recorded, if anything."""
    raw = await _EFFECT_OF.scalar(session, {"update_id": update_id})
    return Effect.parse(raw) if raw else None


# Prebuilt (routing/store/direct.py): every claim records its effect and asks for an earlier one.
_RECORD_EFFECT = direct.Statement(
    update(InboundUpdate)
    .where(InboundUpdate.update_id == bindparam("update_id", type_=InboundUpdate.update_id.type))
    .values(effect=bindparam("effect", type_=InboundUpdate.effect.type))
)
_EFFECT_OF = direct.Statement(
    select(InboundUpdate.effect).where(
        InboundUpdate.update_id == bindparam("update_id", type_=InboundUpdate.update_id.type)
    )
)


async def record_failure(session: AsyncSession, update_id: int, error: str) -> int:
    """Count a failed attempt at handling; returns the attempts so far."""
    attempts = await session.scalar(
        update(InboundUpdate)
        .where(InboundUpdate.update_id == update_id)
        .values(attempts=InboundUpdate.attempts + 1, error=error[:2000])
        .returning(InboundUpdate.attempts)
    )
    return int(attempts or 0)


async def quarantine(session: AsyncSession, update_id: int, error: str, now: datetime) -> None:
    """Keep an update that cannot be handled (unparseable, or failing every time) for a
    person to look at, and go on with the next ones."""
    await session.execute(
        update(InboundUpdate)
        .where(InboundUpdate.update_id == update_id)
        .values(status=INBOX_QUARANTINED, handled_at=now, error=error[:2000])
    )


async def prune(session: AsyncSession, done_before: datetime, quarantined_before: datetime) -> None:
    """Handled rows only guard against redelivery, which Telegram does within hours."""
    await session.execute(
        delete(InboundUpdate).where(
            InboundUpdate.status == INBOX_DONE, InboundUpdate.handled_at < done_before
        )
    )
    await session.execute(
        delete(InboundUpdate).where(
            InboundUpdate.status == INBOX_QUARANTINED,
            InboundUpdate.handled_at < quarantined_before,
        )
    )


async def quarantined(session: AsyncSession, limit: int = 50) -> list[InboundUpdate]:
    return list(
        (
            await session.execute(
                select(InboundUpdate)
                .where(InboundUpdate.status == INBOX_QUARANTINED)
                .order_by(InboundUpdate.update_id.desc())
                .limit(limit)
            )
        ).scalars()
    )
