"""The per-update lookup (redelivery check + agent + customer in one statement), on every
backend."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

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
