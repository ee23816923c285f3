"""Issue "Trust what people type": the command line prints stored data as data, answers in
one line instead of a traceback, and keeps agent names unique regardless of case (those, and
`agents remove`: test_cli_trust_agents.py, a file of their own so that xdist's --dist loadfile
runs the two halves on two workers).

Every test runs ``python -m bot`` in a subprocess, as users and scripts do: its output is a
pipe, not a terminal."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from bot.cli import main
from tests.integration.cli_process import ANSI, _one_line_error, _run, _seed


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}


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


# --- --version ----------------------------------------------------------------------------


def test_version() -> None:
    proc = _run(["--version"], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"contactbot {version('contactbot')}"
