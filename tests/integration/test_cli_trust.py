"""Issue "Trust what people type": the command line prints stored data as data, answers in
one line instead of a traceback, and keeps agent names unique regardless of case.

Every test runs ``python -m bot`` in a subprocess, as users and scripts do: its output is a
pipe, not a terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.cli import main
from routing.policy.root import parse_policy
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import ASSIGNED, QUEUED, Agent, Conversation, Customer

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ANSI = "\x1b[31mRed"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=base | {"CONTACTBOT_PREFLIGHT_TIMEOUT": "5"} | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a cold start imports every command (seconds on a loaded CI box)
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}


def _seed(url: str, agents: list[tuple[int, str]], customers: list[tuple[str, str]]) -> None:
    """Rows as an older version (or another tool) may have stored them: unvalidated."""

    async def go() -> None:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s, s.begin():
                for tg, name in agents:
                    s.add(Agent(telegram_id=tg, name=name, role="agent", created_at=T0))
                for external_id, name in customers:
                    s.add(
                        Customer(
                            external_id=external_id,
                            name=name,
                            tier="C",
                            created_at=T0,
                            updated_at=T0,
                        )
                    )
        finally:
            await engine.dispose()

    asyncio.run(go())


# --- stored data is printed, never interpreted ------------------------------------------


def test_markup_and_escapes_in_stored_names_are_printed_as_data(env: dict[str, str]) -> None:
    url = env["CONTACTBOT_DATABASE_URL"]
    _seed(
        url,
        agents=[(1, "[/bold]"), (2, ANSI), (3, "bell\x07 and C1\x9b")],
        customers=[("C1", "[/bold] x"), ("C2", ANSI + " :smile: [red]y[/red]")],
    )
    listing = _run(["agents", "list"], env)
    assert listing.returncode == 0, listing.stderr
    assert "[/bold]" in listing.stdout
    assert "\\x1b[31mRed" in listing.stdout
    assert "bell\\x07 and C1\\x9b" in listing.stdout
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in listing.stdout

    shown = _run(["customers", "show", "C1"], env)
    assert shown.returncode == 0, shown.stderr
    assert "C1 [/bold] x" in shown.stdout
    shown = _run(["customers", "show", "C2"], env)
    assert shown.returncode == 0, shown.stderr
    # Neither an escape, nor an emoji code, nor markup is interpreted.
    assert "C2 \\x1b[31mRed :smile: [red]y[/red]" in shown.stdout
    assert "\x1b" not in shown.stdout


def test_markup_in_an_imported_name_does_not_break_the_import_summary(
    env: dict[str, str], tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("external_id,name\nC1,[/bold]\n", encoding="utf-8")
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "external_id,order_id,amount,category,ordered_at,status\n"
        f"C1,O1,900000,tv,{recent},delivered\n",
        encoding="utf-8",
    )
    assert _run(["import", "customers", str(customers)], env).returncode == 0
    proc = _run(["import", "orders", str(orders)], env)
    assert proc.returncode == 0, proc.stderr
    # The summary lists the tier change, by the customer's name.
    changes = [line for line in proc.stdout.splitlines() if "C1" in line]
    assert changes and "[/bold]" in changes[0], proc.stdout


def test_piped_output_is_not_wrapped(env: dict[str, str]) -> None:
    long_customer = "Customer " + "x" * 190
    long_agent = "Agent " + "y" * 94  # the longest name an agent may have (100)
    _seed(env["CONTACTBOT_DATABASE_URL"], [(1, long_agent)], [("C1", long_customer)])
    shown = _run(["customers", "show", "C1"], env)
    assert shown.returncode == 0, shown.stderr
    assert any(long_customer in line for line in shown.stdout.splitlines()), shown.stdout
    listing = _run(["agents", "list"], env)
    assert listing.returncode == 0, listing.stderr
    rows = [line for line in listing.stdout.splitlines() if long_agent in line]
    assert len(rows) == 1 and "│ 1 " in rows[0], listing.stdout


# --- one line, not a traceback ---------------------------------------------------------


def test_a_telegram_id_past_64_bits_is_refused_in_one_line(env: dict[str, str]) -> None:
    big = "99999999999999999999"
    _one_line_error(_run(["agents", "add", big, "--name", "Big"], env), 2, "TELEGRAM_ID", big)
    _one_line_error(_run(["agents", "remove", big], env), 2, "TELEGRAM_ID")
    listing = _run(["agents", "list"], env)
    assert listing.returncode == 0 and "Big" not in listing.stdout


def test_an_unusable_database_is_one_line_for_agents_list() -> None:
    line = _one_line_error(
        _run(["agents", "list"], {"CONTACTBOT_DATABASE_URL": "mysql://x"}),
        3,
        "unsupported scheme 'mysql'",
        "postgresql+asyncpg://",
    )
    url = "postgresql+asyncpg://contactbot:s3cret@127.0.0.1:1/nowhere"
    line = _one_line_error(
        _run(["agents", "list"], {"CONTACTBOT_DATABASE_URL": url}),
        3,
        "cannot connect to the database at",
        "127.0.0.1:1",
    )
    assert "s3cret" not in line


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x",
        "not a url",
        "postgresql+asyncpg://contactbot:s3cret@127.0.0.1:1/nowhere",
        "sqlite+aiosqlite:////nonexistent-dir/x.db",
    ],
)
def test_every_database_command_reports_an_unusable_database_in_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same, in process (quicker), for each command that opens the database."""
    for key in list(os.environ):
        if key.startswith("CONTACTBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONTACTBOT_DATABASE_URL", url)
    commands = [
        ["db", "upgrade"],
        ["score"],
        ["surveys", "status"],
        ["agents", "list"],
        ["agents", "add", "5", "--name", "Ann"],
        ["agents", "remove", "5"],
        ["customers", "show", "C1"],
        ["customers", "override", "C1", "--clear"],
    ]
    for command in commands:
        assert main(command) == 3, command
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, (command, captured.err)
        assert "database" in lines[0].lower() and "s3cret" not in lines[0], (command, lines)


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


# --- --version ----------------------------------------------------------------------------


def test_version() -> None:
    proc = _run(["--version"], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"contactbot {version('contactbot')}"
