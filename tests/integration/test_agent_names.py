"""Agent names are unique regardless of case: in the database (migration 0007, which renames
clashes already stored), at `agents add`, and when `/transfer NAME` looks an agent up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
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


async def test_the_account_manager_is_found_by_id_or_name_in_any_case(db: Db) -> None:
    """``manager_of`` looks the one agent up (issue 19: it loaded every agent for each VIP
    chat opened) and keeps ``find_manager``'s rule: a Telegram id, else the name under
    casefold(), active agents only, including folds SQLite's lower() does not make."""
    async with db.sessions() as s, s.begin():
        await agents.add_agent(s, 11, "Ann Lee", now=T0)
        await agents.add_agent(s, 12, "Élodie", now=T0)
        await agents.add_agent(s, 13, "Straße", now=T0)
        gone, _ = await agents.add_agent(s, 14, "Gone", now=T0)
        gone.active = False
    for ref in ("12", "ann lee"):
        async with db.sessions() as s:
            found = await agents.manager_of(s, ref)
            assert found is not None
            # The one agent was read, not every agent (each an ORM instance in the session).
            assert len(s.sync_session.identity_map) == 1, ref
    async with db.sessions() as s:
        for ref, tg in [
            ("11", 11), (" 12 ", 12), ("ann lee", 11), ("ANN LEE", 11), ("  Ann Lee ", 11),
            ("élodie", 12), ("ÉLODIE", 12), ("STRASSE", 13), ("straße", 13),
        ]:  # fmt: skip
            found = await agents.manager_of(s, ref)
            assert found is not None and found.telegram_id == tg, ref
        for ref in ("14", "Gone", "gone", "99", "Ann", "", "  ", None, str(2**64)):
            assert await agents.manager_of(s, ref) is None, ref


async def _steps_of_manager_of(db: Db, ref: str) -> int:
    """SQLite's virtual-machine steps (in units of 100) of one ``manager_of``."""
    async with db.sessions() as s:
        conn = await s.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        await raw._execute(raw._conn.set_progress_handler, count, 100)
        try:
            assert await agents.manager_of(s, ref) is not None
        finally:
            await raw._execute(raw._conn.set_progress_handler, None, 100)
        return steps[0]


async def test_finding_the_account_manager_does_not_read_every_agent(db: Db) -> None:
    """Counted, not timed: the work of one lookup by id and by name with 20 agents and with
    2,000 (it read all of them, for every VIP chat opened)."""
    if db.backend != "sqlite":
        pytest.skip("SQLite's step counter")
    work = []
    for total in (20, 2_000):
        async with db.sessions() as s, s.begin():
            have = await s.scalar(select(func.count()).select_from(Agent))
            s.add_all(
                Agent(telegram_id=100 + i, name=f"Agent {i}", role="agent", created_at=T0)
                for i in range(int(have or 0), total)
            )
        work.append(
            (await _steps_of_manager_of(db, "110"), await _steps_of_manager_of(db, "agent 10"))
        )
    (by_id_few, by_name_few), (by_id_many, by_name_many) = work
    assert by_id_many <= by_id_few + 2 and by_name_many <= by_name_few + 2, work
