"""What the bot says about itself is true: the /help texts name exactly the commands the
README's "Bot commands" table lists for each role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import i18n, texts

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ROLES = ("customer", "agent", "supervisor")
_COMMAND = re.compile(r"(?<![\w/<])/([a-z][a-z0-9_]*)\b")


def readme_commands() -> dict[str, set[str]]:
    """``| who | command | what it does |`` rows of the "Bot commands" section, by role."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Bot commands\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no '## Bot commands' section"
    found: dict[str, set[str]] = {role: set() for role in ROLES}
    rows = 0
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 3 or cells[0] not in ROLES:
            continue
        rows += 1
        # Commands are the code spans of the command column ("`/online`, `/offline`").
        for span in re.findall(r"`([^`]*)`", cells[1]):
            found[cells[0]].update(_COMMAND.findall(span))
    assert rows >= 5, f"too few command rows parsed from README.md ({rows})"
    return found


def help_texts() -> dict[str, str]:
    # The supervisor's help is the agent help plus this suffix (bot/handlers/agent.py).
    return {
        "customer": texts.CUSTOMER_HELP,
        "agent": texts.AGENT_HELP,
        "supervisor": texts.SUPERVISOR_HELP_SUFFIX,
    }


def test_the_readme_table_is_parsed() -> None:
    listed = readme_commands()
    assert {"start", "help"} <= listed["customer"]
    assert {"online", "offline", "help"} <= listed["agent"]
    assert listed["supervisor"] == {"stats"}


@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
@pytest.mark.parametrize("role", ROLES)
def test_help_names_exactly_the_commands_the_readme_lists(role: str, locale: str) -> None:
    listed = readme_commands()[role]
    with i18n.speaking(locale):
        shown = set(_COMMAND.findall(help_texts()[role]))
    missing = sorted(listed - shown)
    unknown = sorted(shown - listed)
    assert not missing, f"{role} help ({locale}) lacks {missing}, listed in README.md"
    assert not unknown, f"{role} help ({locale}) names {unknown}, which README.md does not list"
