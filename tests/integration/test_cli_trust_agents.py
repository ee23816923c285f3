"""Issue "Trust what people type", agents: names unique regardless of case, and `agents
remove` (split from test_cli_trust.py so that the two run on two xdist workers).

Every test runs ``python -m bot`` in a subprocess, as users and scripts do: its output is a
pipe, not a terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, update

from routing.policy.root import parse_policy
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import ASSIGNED, QUEUED, Agent, Conversation, Customer
from tests.integration.cli_process import ANSI, T0, _one_line_error, _run


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}


# --- agent names unique regardless of case -----------------------------------------------


def test_agent_names_clash_regardless_of_case(env: dict[str, str]) -> None:
    assert _run(["agents", "add", "1", "--name", "Ann"], env).returncode == 0
    _one_line_error(
        _run(["agents", "add", "2", "--name", "aNN"], env), 2, "'aNN'", "'Ann' (1)", "case"
    )
    # The same agent may change the case of their own name.
    renamed = _run(["agents", "add", "1", "--name", "ANN"], env)
    assert renamed.returncode == 0 and "updated agent ANN (1)" in renamed.stdout
    # Control characters are refused in new names.
    _one_line_error(_run(["agents", "add", "3", "--name", ANSI], env), 2, "control characters")
    listing = _run(["agents", "list"], env).stdout
    assert "ANN" in listing and "aNN" not in listing and "Agents (1)" in listing


# --- agents remove ----------------------------------------------------------------------


def _assigned_chat(url: str, agent_tg: int) -> int:
    async def go() -> int:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s, s.begin():
                agent = (
                    await s.execute(select(Agent).where(Agent.telegram_id == agent_tg))
                ).scalar_one()
                customer = Customer(
                    external_id="C1", name="Cu", tier="B", created_at=T0, updated_at=T0
                )
                s.add(customer)
                await s.flush()
                conv, _ = await open_conversation(s, customer, parse_policy({}), ORIGIN_REQUEST, T0)
                await s.execute(
                    update(Conversation)
                    .where(Conversation.id == conv.id)
                    .values(status=ASSIGNED, agent_id=agent.id, assigned_at=T0)
                )
                return conv.id
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _state(url: str, conv_id: int) -> tuple[list[tuple[int, bool, bool]], str, int | None]:
    async def go() -> tuple[list[tuple[int, bool, bool]], str, int | None]:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as s:
                agents = [
                    (a.telegram_id, a.active, a.online)
                    for a in (await s.execute(select(Agent).order_by(Agent.id))).scalars()
                ]
                conv = await s.get(Conversation, conv_id)
                assert conv is not None
                return agents, conv.status, conv.agent_id
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_agents_remove(env: dict[str, str]) -> None:
    url = env["CONTACTBOT_DATABASE_URL"]
    assert _run(["agents", "add", "1", "--name", "Ann"], env).returncode == 0
    assert _run(["agents", "add", "2", "--name", "Bob"], env).returncode == 0
    conv = _assigned_chat(url, 1)

    # Ann holds a chat: she is deactivated (the conversation names her), the chat requeued.
    proc = _run(["agents", "remove", "1"], env)
    assert proc.returncode == 0, proc.stderr
    assert "deactivated agent Ann (1)" in proc.stdout
    assert "1 open chat back in the queue" in proc.stdout
    agents, status, holder = _state(url, conv)
    assert agents == [(1, False, False), (2, True, False)]
    assert (status, holder) == (QUEUED, None)
    assert "Ann" not in _run(["agents", "list"], env).stdout
    again = _run(["agents", "remove", "1"], env)
    assert again.returncode == 0 and "already removed" in again.stdout
    # Her name stays hers: a new "ann" is refused, her own id brings her back.
    _one_line_error(_run(["agents", "add", "3", "--name", "ann"], env), 2, "removed agent")
    assert _run(["agents", "add", "1", "--name", "Ann"], env).returncode == 0
    assert "Ann" in _run(["agents", "list"], env).stdout

    # Bob was never in a conversation: his row is deleted.
    proc = _run(["agents", "remove", "2"], env)
    assert proc.returncode == 0 and "removed agent Bob (2); 0 open chats" in proc.stdout
    agents, _, _ = _state(url, conv)
    assert [a[0] for a in agents] == [1]
    _one_line_error(_run(["agents", "remove", "2"], env), 1, "no agent with TELEGRAM_ID 2")
