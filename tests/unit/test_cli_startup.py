"""The command line starts lazily: ``--version``, ``--help`` and a usage error import no
command's dependencies (aiogram, SQLAlchemy, rich, the domain), and each command's module is
imported only when that command runs. The command table still names every command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import COMMANDS, command
from bot.cli.parser import AGENT_ROLES, build_parser
from routing.queue.agents import ROLES

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiogram", "sqlalchemy", "rich", "routing", "surveys", "pydantic", "bot.config")

PROBE = """
import sys
from bot.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = {heavy!r}
print(sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy))))
"""


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["agents", "add", "--help"], ["no-such-command"]]
)
def test_parsing_imports_no_command_dependencies(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_the_table_names_every_command_and_each_resolves() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(COMMANDS) == set(sub.choices)
    for name in COMMANDS:
        assert callable(command(name)), name


def test_the_parsers_roles_are_the_domains() -> None:
    assert AGENT_ROLES == ROLES
