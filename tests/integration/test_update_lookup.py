"""The per-update lookup (redelivery check + agent + customer in one statement), on every
backend."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import sqlite_driver
from routing.store.models import (
    CLOSED,
    INBOX_DONE,
    INBOX_PENDING,
    QUEUED,
    SURVEY_COMMENT_ASKED,
    Customer,
    InboundUpdate,
    Survey,
)
from routing.store.update_lookup import lookup
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=30)


async def _seed(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        await add_agent(s, 900, "Bob", now=NOW)
        retired, _ = await add_agent(s, 901, "Old", now=NOW)
        retired.active = False
        s.add(Customer(external_id="C1", name="Ann", tier="B", telegram_id=700,
                       created_at=NOW, updated_at=NOW))  # fmt: skip
        # A 64-bit Telegram id (ids exceed 2**31 since 2021).
        s.add(Customer(external_id="C2", name="Big", tier="C", telegram_id=7_000_000_001,
                       created_at=NOW, updated_at=NOW))  # fmt: skip
        s.add(InboundUpdate(update_id=5, payload="{}", status=INBOX_DONE, received_at=NOW))
        # Stored but not handled yet (a crash): not a redelivery, it is to be handled.
        s.add(InboundUpdate(update_id=11, payload="{}", status=INBOX_PENDING, received_at=NOW))
        await s.flush()
        ann = (await s.execute(select(Customer).where(Customer.external_id == "C1"))).scalar_one()
        closed = await open_conversation(s, ann, Policy(), ORIGIN_REQUEST, NOW)
        closed[0].status = CLOSED
        await s.flush()
        await open_conversation(s, ann, Policy(), ORIGIN_REQUEST, NOW)


async def test_lookup_finds_agent_customer_and_redelivery(db: Db) -> None:
    await _seed(db)
    async with db.sessions() as s, s.begin():
        agent = await lookup(s, 6, 900, SINCE)
        customer = await lookup(s, 7, 700, SINCE)
        big = await lookup(s, 8, 7_000_000_001, SINCE)
        stranger = await lookup(s, 9, 123, SINCE)
        retired = await lookup(s, 10, 901, SINCE)
        again = await lookup(s, 5, 700, SINCE)
        stored = await lookup(s, 11, 700, SINCE)
        anonymous = await lookup(s, 5, None, SINCE)
    assert agent.agent is not None and agent.agent.name == "Bob" and agent.customer is None
    assert customer.customer is not None and customer.customer.name == "Ann"
    assert customer.agent is None and not customer.seen
    # Only the open conversation, not the closed one before it.
    assert customer.conversation is not None and customer.conversation.status == QUEUED
    assert big.conversation is None
    assert big.customer is not None and big.customer.external_id == "C2"
    assert (stranger.agent, stranger.customer, stranger.seen) == (None, None, False)
    assert retired.agent is None  # a deactivated agent is not served as one
    assert again.seen and anonymous.seen
    assert not stored.seen


async def test_lookup_finds_the_survey_awaiting_a_comment(db: Db) -> None:
    """A customer's text answers the latest survey whose follow-up question was asked since
    the comment window opened; the lookup reads it in the same statement (no other)."""
    await _seed(db)
    async with db.sessions() as s, s.begin():
        ann = (await s.execute(select(Customer).where(Customer.external_id == "C1"))).scalar_one()
        for minutes, state in ((40, SURVEY_COMMENT_ASKED), (20, SURVEY_COMMENT_ASKED),
                               (10, "given"), (25, SURVEY_COMMENT_ASKED)):  # fmt: skip
            s.add(Survey(kind="csat", customer_id=ann.id, status="answered",
                         created_at=NOW, due_at=NOW, comment_state=state,
                         answered_at=NOW - timedelta(minutes=minutes)))  # fmt: skip
        await s.flush()
        want = (
            await s.execute(
                select(Survey.id).where(
                    Survey.customer_id == ann.id, Survey.answered_at == NOW - timedelta(minutes=20)
                )
            )
        ).scalar_one()
        found = await lookup(s, 12, 700, SINCE)
        none_yet = await lookup(s, 13, 7_000_000_001, SINCE)
        too_late = await lookup(s, 14, 700, NOW - timedelta(minutes=5))
    assert found.awaiting_survey == want
    assert none_yet.awaiting_survey is None and too_late.awaiting_survey is None


@pytest.mark.parametrize("inline", [True, False])
async def test_outside_a_transaction_the_rows_join_the_session_as_loaded(
    db: Db, inline: bool
) -> None:
    """As DbSessionMiddleware runs it: no transaction before or after; the agent, customer and
    chat are the session's persistent, unmodified instances, with every column loaded, and a
    handler's change to one is stored by its own transaction."""
    await _seed(db)
    with sqlite_driver.inline() if inline else nullcontext():
        async with db.sessions() as s:
            found = await lookup(s, 7, 700, SINCE)
            assert not s.in_transaction()
            ann, chat = found.customer, found.conversation
            assert ann is not None and chat is not None
            for obj in (ann, chat):
                state: Any = sa_inspect(obj)
                assert state.persistent and not state.modified and not state.expired_attributes
                assert obj in s
            assert (ann.name, ann.tier, ann.created_at, chat.status, chat.queued_at) == (
                "Ann",
                "B",
                NOW,
                QUEUED,
                NOW,
            )
            # Looked up again in the same session: the same instance (as the ORM's loading).
            assert (await lookup(s, 8, 700, SINCE)).customer is ann
            async with s.begin():
                ann.name = "Ann B."
            agent = (await lookup(s, 9, 900, SINCE)).agent
            assert agent is not None and agent.name == "Bob" and agent.active
    async with db.sessions() as s:
        stored = await s.scalar(select(Customer.name).where(Customer.telegram_id == 700))
    assert stored == "Ann B."


async def test_lookup_reads_the_customers_self_service_session_not_ended(db: Db) -> None:
    """The latest session not ended, as a self-service step reads it (it decides whether it
    went quiet); none for an agent, an unknown sender, or a customer whose sessions ended."""
    from routing.selfservice import deflection

    await _seed(db)
    idle = timedelta(minutes=30)
    async with db.sessions() as s, s.begin():
        ann = (await s.execute(select(Customer).where(Customer.external_id == "C1"))).scalar_one()
        big = (await s.execute(select(Customer).where(Customer.external_id == "C2"))).scalar_one()
        await deflection.step(s, ann, NOW - timedelta(hours=2), idle, language="en", node="a")
        assert await deflection.end(s, ann, deflection.RESOLVED, NOW - timedelta(hours=2), idle)
        first = await deflection.step(
            s, ann, NOW, idle, language="de", searched=True, question="where?"
        )
        await deflection.step(s, big, NOW, idle, language="en", node="b")
        assert await deflection.end(s, big, deflection.HANDOFF, NOW, idle)
    with sqlite_driver.inline():
        async with db.sessions() as s:
            found = await lookup(s, 20, 700, SINCE)
            assert found.selfservice is not None
            live = found.selfservice
            assert (live.id, live.last_at, live.language) == (first.id, NOW, "de")
            assert (live.answers, live.searches, live.question) == (0, 1, "where?")
            assert live.path == first.path
            assert (await lookup(s, 21, 7_000_000_001, SINCE)).selfservice is None  # ended
            assert (await lookup(s, 22, 900, SINCE)).selfservice is None  # an agent
            assert (await lookup(s, 23, 12345, SINCE)).selfservice is None  # nobody known


def _fields(found: Any) -> tuple[Any, ...]:
    """What a handler reads of a lookup, as plain values (instances are per session)."""
    return (
        found.seen,
        found.agent.name if found.agent else None,
        found.customer.external_id if found.customer else None,
        (found.conversation.id, found.conversation.status) if found.conversation else None,
        found.awaiting_survey,
        found.selfservice,
    )


async def test_lookups_asked_at_once_each_get_their_own_answer_in_one_statement(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the updates handled at the same time ask (each in its own session, outside any
    transaction): every sender's answer is the one they get alone, a redelivery included,
    and the survey window is each update's own. On PostgreSQL they are one statement
    (routing/store/gather.py), where each was a round trip (issue 19)."""
    await _seed(db)
    async with db.sessions() as s, s.begin():
        ann = (await s.execute(select(Customer).where(Customer.external_id == "C1"))).scalar_one()
        s.add(Survey(kind="csat", customer_id=ann.id, status="answered", created_at=NOW,
                     due_at=NOW, comment_state=SURVEY_COMMENT_ASKED,
                     answered_at=NOW - timedelta(minutes=20)))  # fmt: skip
    asks: list[tuple[int, int | None, datetime]] = [
        (6, 900, SINCE),  # an agent
        (7, 700, SINCE),  # a customer with an open chat and a survey awaiting a comment
        (8, 7_000_000_001, SINCE),  # a 64-bit id, no chat
        (9, 123, SINCE),  # nobody known
        (10, 901, SINCE),  # a deactivated agent
        (5, 700, SINCE),  # a redelivery
        (11, None, SINCE),  # no sender (stored, not handled yet)
        (12, 700, NOW - timedelta(minutes=5)),  # the survey's window has closed
    ]

    async def one(update_id: int, tid: int | None, since: datetime) -> tuple[Any, ...]:
        async with db.sessions() as s:
            found = await lookup(s, update_id, tid, since)
            assert not s.in_transaction()
            return _fields(found)

    alone = [await one(*a) for a in asks]
    fetched: list[str] = []
    if db.backend == "postgresql":
        import asyncpg

        real = asyncpg.connection.Connection.fetch

        async def counting(self: Any, sql: str, *args: Any, **kw: Any) -> Any:
            fetched.append(sql)
            return await real(self, sql, *args, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, "fetch", counting)
    together = await asyncio.gather(*(one(*a) for a in asks))
    monkeypatch.undo()
    assert together == alone
    assert alone[1][3] is not None and alone[1][4] is not None  # the chat, the survey
    assert alone[7][4] is None
    assert [a[0] for a in alone] == [False, False, False, False, False, True, False, False]
    if db.backend == "postgresql":
        assert len(fetched) == 1 and "unnest" in fetched[0]


async def test_lookups_asked_at_once_fail_together_when_the_database_fails(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed statement fails every lookup it was to answer (the inbox retries each
    update), and the next lookups are asked afresh."""
    if db.backend != "postgresql":
        pytest.skip("lookups are asked together on PostgreSQL")
    import asyncpg

    await _seed(db)
    real = asyncpg.connection.Connection.fetch

    async def failing(self: Any, sql: str, *args: Any, **kw: Any) -> Any:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("gone")

    async def one(update_id: int) -> Any:
        async with db.sessions() as s:
            return await lookup(s, update_id, 700, SINCE)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", failing)
    outcomes = await asyncio.gather(*(one(i) for i in (6, 7, 8)), return_exceptions=True)
    assert all(isinstance(o, DBAPIError) for o in outcomes), outcomes
    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", real)
    again = await asyncio.gather(*(one(i) for i in (6, 7, 8)))
    assert all(f.customer is not None and f.customer.name == "Ann" for f in again)
