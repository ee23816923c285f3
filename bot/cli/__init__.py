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
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from sqlalchemy.exc import DBAPIError

from bot.cli.agents import cmd_agents
from bot.cli.broadcast import cmd_broadcast
from bot.cli.complaints import cmd_complaints
from bot.cli.conversations import cmd_conversations
from bot.cli.customers import cmd_customers, cmd_score
from bot.cli.database import DatabaseUnavailable, database_failure
from bot.cli.importing import cmd_import
from bot.cli.output import err, fit_output
from bot.cli.parser import build_parser
from bot.cli.policy import cmd_policy
from bot.cli.report import cmd_report
from bot.cli.run import cmd_db, cmd_run
from bot.cli.simulate import cmd_simulate
from bot.cli.surveys import cmd_surveys
from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure as configure_logging
from routing.policy.root import PolicyError

__all__ = ["COMMANDS", "main"]


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "db": cmd_db,
    "import": cmd_import,
    "agents": cmd_agents,
    "score": cmd_score,
    "customers": cmd_customers,
    "policy": cmd_policy,
    "surveys": cmd_surveys,
    "complaints": cmd_complaints,
    "conversations": cmd_conversations,
    "broadcast": cmd_broadcast,
    "simulate": cmd_simulate,
    "report": cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    fit_output()
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)  # once, before any command (run in both modes)
        return COMMANDS[args.command](settings, args)
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
