"""The ``contactbot`` command line, as users and their scripts call it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=base | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "CONTACTBOT_TOKEN is not set"), ("not a token", "CONTACTBOT_TOKEN is malformed")],
)
def test_run_without_a_valid_token_explains_in_one_line(
    tmp_path: Path, token: str | None, expected: str
) -> None:
    env = {"CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    if token is not None:
        env["CONTACTBOT_TOKEN"] = token
    proc = _run(["run"], env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_db_upgrade_creates_the_database(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (cli_env / "cli.db").exists()
    assert "up to date" in capsys.readouterr().out


def test_agents_add_and_list(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "add", "4242", "--name", "Ann", "--max-chats", "5"]) == 0
    assert "added agent Ann (4242), max 5 chats" in capsys.readouterr().out
    assert main(["agents", "add", "4242", "--name", "Ann B", "--role", "supervisor"]) == 0
    assert "updated supervisor Ann B" in capsys.readouterr().out
    assert main(["agents", "add", "0", "--name", "Nobody"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["agents", "list"]) == 0
    listing = capsys.readouterr().out
    assert "4242" in listing and "Ann B" in listing and "supervisor" in listing


def test_policy_check(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(ROOT / "contactbot.example.toml")]) == 0
    assert "OK (4 tiers: VIP, A, B, C" in capsys.readouterr().out
    broken = cli_env / "broken.toml"
    broken.write_text('[[tiers]]\nname = "VIP"\nmin_spend = 10\n', encoding="utf-8")
    assert main(["policy", "check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.toml: invalid policy" in err and "min_spend = 0" in err


def test_import_then_score(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers = cli_env / "customers.csv"
    customers.write_text(
        "external_id,name,phone,tier_override\n"
        "C1,Big Spender,+12025550143,\n"
        "C2,Small,,\n"
        ",No Id,,\n"
        "C3,Pinned,,VIP\n",
        encoding="utf-8",
    )
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    old = (datetime.now(UTC) - timedelta(days=800)).date().isoformat()
    orders = cli_env / "orders.csv"
    orders.write_text(
        "external_id,order_id,amount,category,ordered_at,status\n"
        f"C1,O1,300000,tv,{recent},delivered\n"
        f"C1,O2,250000.50,tv,{recent},delivered\n"
        f"C2,O3,60000,books,{old},delivered\n"
        f"C2,O4,abc,books,{recent},delivered\n",
        encoding="utf-8",
    )
    # A bad row is reported with its line, good rows load, and the exit code says so.
    assert main(["import", "customers", str(customers)]) == 1
    captured = capsys.readouterr()
    assert "line 4:" in captured.err
    assert main(["import", "orders", str(orders), "--dry-run"]) == 1
    assert "would load 3" in capsys.readouterr().out
    assert main(["import", "orders", str(orders)]) == 1
    captured = capsys.readouterr()
    assert "line 5:" in captured.err
    # The import rescored: C1 is VIP by trailing spend, C2's order is outside the window.
    assert "Big Spender" in captured.out
    assert main(["score"]) == 0
    out = capsys.readouterr().out
    assert "no tier changes" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    assert rows["VIP"].split("│")[2].strip() == "2"  # C1 by spend, C3 pinned
    assert rows["C"].split("│")[2].strip() == "1"
