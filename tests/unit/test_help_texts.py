"""What the bot says about itself is true: the /help texts name exactly the commands the
README's "Bot commands" table lists for each role, every command an agent's router answers
is in the agents' /help, and the shipped FAQ states the opening hours the shipped policy
serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiogram import Router
from aiogram.filters import Command

from bot import i18n, texts
from bot.handlers import get_routers
from routing.policy.root import Policy
from routing.policy.selfservice import default_selfservice

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
    # The supervisor's help is the agent help plus the supervisors' lines (bot/texts/agent.py).
    agent = texts.agent.help_text()
    supervisor = texts.agent.help_text(supervisor=True).splitlines()
    return {
        "customer": texts.customer.help_text(),
        "agent": agent,
        "supervisor": "\n".join(line for line in supervisor if line not in agent.splitlines()),
    }


def test_the_readme_table_is_parsed() -> None:
    listed = readme_commands()
    assert {"start", "help"} <= listed["customer"]
    assert {"online", "offline", "help", "transfer", "note", "r"} <= listed["agent"]
    assert listed["supervisor"] == {"stats", "takeover"}


# --- every command an agent can send is in their /help -----------------------------------

# /start is what Telegram sends on first contact; for an agent it shows /help itself.
NOT_IN_HELP = {"start"}


def _commands(router: Router) -> set[str]:
    """The commands of every Command filter under ``router``."""
    found: set[str] = set()
    for observer in router.observers.values():
        for handler in observer.handlers:
            for f in handler.filters or ():
                if isinstance(f.callback, Command):
                    found |= {c for c in f.callback.commands if isinstance(c, str)}
    for sub in router.sub_routers:
        found |= _commands(sub)
    return found


def registered_agent_commands() -> set[str]:
    """Every command the routers answer for agents: everything but the customers' audience."""
    return set().union(*(_commands(r) for r in get_routers() if r.name != "customers"))


def test_the_routers_are_walked() -> None:
    assert {"online", "next", "transfer", "note", "r", "close", "stats"} <= (
        registered_agent_commands()
    )


@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
def test_every_registered_agent_command_is_in_help(locale: str) -> None:
    with i18n.speaking(locale):
        shown = set(_COMMAND.findall(texts.agent.help_text(supervisor=True)))
        menu = {c for c, _a, _d in texts.agent.commands()}
        menu |= {c for c, _a, _d in texts.agent.commands(supervisor=True)}
    missing = sorted(registered_agent_commands() - shown - NOT_IN_HELP)
    assert not missing, f"agents' /help ({locale}) lacks {missing}: add them to commands()"
    assert shown == menu, "the help is made from texts.agent.commands() alone"


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


# --- the shipped FAQ vs the shipped policy -------------------------------------------------

_DAY = re.compile(
    r"\b(mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|周[一二三四五六日天]|\d{1,2}:\d{2}", re.I
)


def test_the_default_faq_states_the_hours_the_default_tiers_are_served() -> None:
    policy = Policy()
    ss = policy.selfservice
    assert ss == default_selfservice()
    hours = {tier: tuple(ss.access(tier).spans()) for tier in policy.tier_names}
    # One FAQ answer speaks for every tier, so it can only be true if they share their hours.
    assert len(set(hours.values())) == 1, f"default tiers have different hours: {hours}"
    entry = ss.entry("hours")
    assert entry is not None and not isinstance(entry.answer, str)
    spans = next(iter(hours.values()))
    for language, answer in entry.answer.items():
        if not spans:  # served 24/7: say so, and name no days or times of day
            assert "24/7" in answer, f"hours FAQ ({language}) does not say 24/7: {answer!r}"
            assert not _DAY.search(answer), f"hours FAQ ({language}) names hours: {answer!r}"
        else:  # the opening and closing times of every span, as "9:00" or "09:00"
            for span in spans:
                for t in (span.start, span.end):
                    hm = f"{t.hour}:{t.minute:02d}" if t is not None else "24:00"
                    assert re.search(rf"(?<!\d)0?{hm}", answer), (language, answer, hm)
