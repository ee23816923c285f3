"""The ``contactbot`` command line (also ``python -m bot``): ``main`` and the command table.

One module per command family; shared pieces beside them:
  parser      the argparse parser (commands, options, help, exit statuses)
  output      DataConsole, shown(): stored data printed as data, never as markup
  database    opening the database for a command; its failures as one line (exit 3)
  run         run, db upgrade
  importing   import customers|orders
  customers   score, customers show|override
  invite      customers invite
  agents      agents add|list|remove
  simulate    simulate
  surveys     surveys status
  complaints  complaints list|show (cases, one case's timeline)
  conversations  conversations show (one chat's transcript, internal notes marked)
  broadcast   broadcast (tier announcements), broadcast status
  report      report (the figures of a period: table, csv, json, html)
  policy      policy check

Start-up is lazy: the parser needs nothing beyond the standard library, so ``--version``,
``--help`` and a usage error answer at once; the settings, the database layer and the chosen
command's module (with its dependencies: aiogram, SQLAlchemy, reports...) are imported only
after the command line parsed, and only that one command's module.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from bot.cli.parser import build_parser

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["COMMANDS", "command", "main"]

Command = Callable[["Settings", argparse.Namespace], int]

# command -> (module, function): the module is imported when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bot.cli.run", "cmd_run"),
    "db": ("bot.cli.run", "cmd_db"),
    "import": ("bot.cli.importing", "cmd_import"),
    "agents": ("bot.cli.agents", "cmd_agents"),
    "score": ("bot.cli.customers", "cmd_score"),
    "customers": ("bot.cli.customers", "cmd_customers"),
    "policy": ("bot.cli.policy", "cmd_policy"),
    "surveys": ("bot.cli.surveys", "cmd_surveys"),
    "complaints": ("bot.cli.complaints", "cmd_complaints"),
    "conversations": ("bot.cli.conversations", "cmd_conversations"),
    "broadcast": ("bot.cli.broadcast", "cmd_broadcast"),
    "simulate": ("bot.cli.simulate", "cmd_simulate"),
    "report": ("bot.cli.report", "cmd_report"),
}


def command(name: str) -> Command:
    """The function of command NAME, its module imported now."""
    module, function = COMMANDS[name]
    return cast(Command, getattr(importlib.import_module(module), function))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --version, --help and usage errors exit here
    from sqlalchemy.exc import DBAPIError

    from bot.cli.database import DatabaseUnavailable, database_failure
    from bot.cli.output import err, fit_output
    from bot.config import ConfigError, load_settings
    from bot.logs import configure as configure_logging
    from routing.policy.root import PolicyError

    fit_output()
    try:
        settings = load_settings()
        configure_logging(settings)  # once, before any command (run in both modes)
        return command(args.command)(settings, args)
    except (ConfigError, PolicyError) as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    except (DatabaseUnavailable, DBAPIError, OSError, TimeoutError) as exc:
        # A database that is down, refusing or of an unsupported kind: one line, not a
        # traceback (`run` reports its own failures the same way).
        message = database_failure(exc, settings)
        if message is None:
            raise
        err.print(f"contactbot: {message}", markup=False)
        return 3
