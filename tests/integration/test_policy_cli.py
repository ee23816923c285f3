"""`contactbot policy check` and `contactbot run` agree on what a usable policy file is, and
say what is wrong without a traceback: one line per problem, naming the key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BAD = """\
[scoring]
timezone = "Europe/Berlinn"
schedule = "0 25 1 * *"

[[surveys.nps.campaigns]]
tier = "Gold"
schedule = "0 11 1 * *"
"""


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=base | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_shipped_example_passes(tmp_path: Path) -> None:
    proc = _run(["policy", "check", str(ROOT / "contactbot.example.toml")], {}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "contactbot.example.toml: OK (4 tiers: VIP, A, B, C" in proc.stdout


def test_policy_check_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    proc = _run(["policy", "check", str(bad)], {}, tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"contactbot: {bad}: invalid policy (3 problems):",
        '  [scoring] schedule: "0 25 1 * *": hour 25 is out of range 0-23',
        '  [scoring] timezone: "Europe/Berlinn" is not a time zone (an IANA name, e.g. '
        '"Europe/Berlin"; did you mean "Europe/Berlin"?)',
        '  [[surveys.nps.campaigns]] #1 tier: no such tier "Gold" (tiers: VIP, A, B, C)',
    ]


def test_policy_check_reports_a_toml_syntax_error_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scoring]\nwindow_days = 30\ntimezone = "UTC\n', encoding="utf-8")
    proc = _run(["policy", "check", str(bad)], {}, tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"contactbot: {bad}: not valid TOML: ") and "line 3" in line


def test_run_refuses_the_same_file_in_one_line_before_any_network(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    db = tmp_path / "bot.db"
    env = {
        "CONTACTBOT_CONFIG": str(bad),
        "CONTACTBOT_TOKEN": "123456:ABC",
        # Nothing listens here: a network error would show instead of the policy error.
        "CONTACTBOT_TELEGRAM_API_URL": f"http://127.0.0.1:{_unused_port()}",
        "CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
    }
    proc = _run(["run"], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line == (
        f"contactbot: {bad}: invalid policy: "
        '[scoring] schedule: "0 25 1 * *": hour 25 is out of range 0-23; '
        '[scoring] timezone: "Europe/Berlinn" is not a time zone (an IANA name, e.g. '
        '"Europe/Berlin"; did you mean "Europe/Berlin"?); '
        '[[surveys.nps.campaigns]] #1 tier: no such tier "Gold" (tiers: VIP, A, B, C)'
    )
    assert not db.exists()  # refused before touching the database


def test_other_commands_refuse_it_in_the_same_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[queue.sla]\nfirst_response_seconds = { Gold = 60 }\n", encoding="utf-8")
    db = tmp_path / "bot.db"
    env = {"CONTACTBOT_CONFIG": str(bad), "CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    proc = _run(["score"], env, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"contactbot: {bad}: invalid policy: "
        "[queue.sla] first_response_seconds.Gold: no such tier (tiers: VIP, A, B, C)"
    ]
