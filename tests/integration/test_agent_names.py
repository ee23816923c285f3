"""Agent names are unique regardless of case: in the database (migration 0007, which renames
clashes already stored), at `agents add`, and when `/transfer NAME` looks an agent up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from routing.queue import agents
from routing.store.db import downgrade, upgrade
from routing.store.models import Agent
from tests.conftest import Db

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _names(db: Db) -> dict[int, str]:
    async with db.sessions() as s:
        rows = await s.execute(select(Agent.telegram_id, Agent.name))
        return {int(tg): str(name) for tg, name in rows.all()}


async def test_migration_renames_stored_clashes_then_enforces(db: Db) -> None:
    await downgrade(db.engine, "0006")
    stored = [
        (1, "ann", False),  # removed: an active "Ann" keeps the name
        (2, "Ann", True),
        (3, "Ann (2)", True),  # a name the renames must not take
        (4, "ANN", True),
        (5, "Bob", True),
        (6, "x" * 100, True),
        (7, "X" * 100, True),
    ]
    async with db.engine.begin() as conn:
        for tg, name, active in stored:
            await conn.execute(
                text(
                    "INSERT INTO agents (telegram_id, name, role, max_chats, online, active, "
                    "created_at) VALUES (:tg, :name, 'agent', 3, false, :active, :at)"
                ),
                {"tg": tg, "name": name, "active": active, "at": T0.replace(tzinfo=None)},
            )
    await upgrade(db.engine)
    assert await _names(db) == {
        1: "ann (3)",
        2: "Ann",
        3: "Ann (2)",
        4: "ANN (4)",
        5: "Bob",
        6: "x" * 100,
        7: "X" * 96 + " (2)",
    }
    with pytest.raises(IntegrityError):
        async with db.sessions() as s, s.begin():
            s.add(Agent(telegram_id=8, name="bOB", role="agent", created_at=T0))
    # Down and up again: the index goes and comes back, the names stay.
    await downgrade(db.engine, "0006")
    await upgrade(db.engine)
    assert (await _names(db))[4] == "ANN (4)"


async def test_add_refuses_a_clash_regardless_of_case(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        await agents.add_agent(s, 1, "Ann", now=T0)
    with pytest.raises(agents.AgentError, match=r"'ann' is taken by agent 'Ann' \(1\)"):
        async with db.sessions() as s, s.begin():
            await agents.add_agent(s, 2, "ann", now=T0)
    # casefold() clashes the database's lower() does not see are refused as well.
    async with db.sessions() as s, s.begin():
        await agents.add_agent(s, 3, "Straße", now=T0)
    with pytest.raises(agents.AgentError, match="taken by agent 'Straße'"):
        async with db.sessions() as s, s.begin():
            await agents.add_agent(s, 4, "STRASSE", now=T0)
    assert await _names(db) == {1: "Ann", 3: "Straße"}


@pytest.mark.parametrize(
    ("telegram_id", "message"),
    [(2**63, r"below 2\^63"), (0, "positive integer"), (-1, "positive integer")],
)
async def test_telegram_ids_the_database_cannot_store_are_refused(
    db: Db, telegram_id: int, message: str
) -> None:
    with pytest.raises(agents.AgentError, match=message):
        async with db.sessions() as s, s.begin():
            await agents.add_agent(s, telegram_id, "Big", now=T0)
    async with db.sessions() as s, s.begin():
        agent, _ = await agents.add_agent(s, 2**63 - 1, "Biggest", now=T0)
    assert agent.telegram_id == 2**63 - 1


async def test_transfer_finds_exactly_one_agent_regardless_of_case(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        await agents.add_agent(s, 1, "Ann", now=T0)
        await agents.add_agent(s, 2, "Ann Lee", now=T0)
        # Stored before names were checked: equal under casefold(), not under lower().
        s.add(Agent(telegram_id=3, name="Straße", role="agent", created_at=T0))
        s.add(Agent(telegram_id=4, name="STRASSE", role="agent", created_at=T0))
    async with db.sessions() as s:
        for ref in ("ann", "ANN", " Ann "):
            found = await agents.by_name(s, ref)
            assert found is not None and found.telegram_id == 1
        found = await agents.by_name(s, "ann lee")
        assert found is not None and found.telegram_id == 2
        assert await agents.by_name(s, "an") is None
        # Two agents answer to "strasse": no guess.
        assert await agents.by_name(s, "strasse") is None
        found = await agents.by_name(s, "3")
        assert found is not None and found.name == "Straße"


async def test_a_capacity_the_database_cannot_store_is_refused(db: Db) -> None:
    with pytest.raises(agents.AgentError, match="--max-chats must be between 1 and 2147483647"):
        async with db.sessions() as s, s.begin():
            await agents.add_agent(s, 1, "Ann", max_chats=2**31, now=T0)
    async with db.sessions() as s, s.begin():
        agent, _ = await agents.add_agent(s, 1, "Ann", max_chats=2**31 - 1, now=T0)
    assert agent.max_chats == 2**31 - 1
