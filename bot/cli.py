"""The ``contactbot`` command line (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import ConfigError, Settings
from routing.customers import identity as customers
from routing.policy.root import Policy, PolicyError, load_policy
from routing.queue import agents
from routing.scoring import report
from routing.store import db
from routing.store.models import Agent

T = TypeVar("T")

# Control characters (C0, DEL, C1: ESC among them) in stored strings are shown as \xNN.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The consoles' own safety net keeps newlines and tabs: messages may span lines.
_CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Piped output is not wrapped: a script reads one record per line.
_PIPE_WIDTH = 100_000


def _escape_control(text: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(value: object) -> str:
    """A stored value as printed: control characters (newlines too) as \\xNN escapes."""
    return "" if value is None else _escape_control(str(value))


class DataConsole(Console):
    """A console that prints data, never interprets it: no markup, no :emoji: codes, no
    highlighting, and control characters other than newline and tab shown as escapes, in
    every string it renders (print arguments, table cells and titles)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(_escape_control(text, _CONTROL_BUT_LAYOUT), **kwargs)


out = DataConsole()
# soft_wrap: an error stays one line however narrow the terminal.
err = DataConsole(stderr=True, soft_wrap=True)


def _fit_output() -> None:
    """Output to a pipe or file is not wrapped at 80 columns, tables included."""
    for console in (out, err):
        if not console.is_terminal:
            console.soft_wrap = True
            console.width = _PIPE_WIDTH


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contactbot")
    except PackageNotFoundError:  # pragma: no cover - running from a tree never installed
        return "unknown (not installed)"


RUN_EXIT_CODES = """\
exit status:
  0  stopped (Ctrl+C or SIGTERM)
  2  a setting is wrong: CONTACTBOT_TOKEN missing or malformed, an invalid policy file
  3  the bot cannot start: a URL with an unsupported scheme, or the database, Redis or the
     Telegram Bot API unreachable or refusing (a rejected token too), or the webhook port
     unavailable; stderr says which in one line"""

DB_EXIT_CODES = """\
Commands that use the database (db, import, agents, score, customers, surveys) exit 3, with
one line on stderr, when CONTACTBOT_DATABASE_URL has an unsupported scheme or the database
cannot be reached within CONTACTBOT_PREFLIGHT_TIMEOUT seconds (default 5)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="contactbot",
        description="Telegram contact-center bot with priority routing by customer tier.",
        epilog=DB_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="start the bot (long polling unless --webhook)",
        description="Start the bot: long polling, or a webhook server with --webhook.\n"
        "First it checks the database, Redis (if configured) and the Telegram Bot API,\n"
        "each within CONTACTBOT_PREFLIGHT_TIMEOUT seconds (default 5).",
        epilog=RUN_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--webhook", action="store_true", help="serve a webhook instead of polling")

    dbp = sub.add_parser("db", help="database schema")
    dbsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply migrations up to the latest schema")

    imp = sub.add_parser("import", help="load CRM data from CSV (idempotent upsert)")
    impsub = imp.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in ("customers", "orders"):
        pin = " (in tier_override: releases the pin, logged in the tier history)"
        k = impsub.add_parser(
            kind,
            help=f"import {kind}.csv",
            description=f"Upsert {kind}.csv. The delimiter (',' ';' tab '|') is detected from "
            "the header line. An empty cell keeps the stored value; a cell holding (clear) "
            f"clears it{pin if kind == 'customers' else ''}. Bad rows are reported as "
            "'line N: reason'; good rows load.",
        )
        k.add_argument("file", type=Path, metavar="FILE.csv")
        k.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
        k.add_argument(
            "--date-format",
            metavar="F",
            help="orders: strptime format of ordered_at, e.g. %%d.%%m.%%Y "
            "(default: YYYY-MM-DD, ISO 8601 or 2025/8/9)",
        )
        k.add_argument(
            "--decimal-comma",
            action="store_true",
            help="orders: amounts use ',' for decimals and '.' between thousands (1.234,56)",
        )

    ag = sub.add_parser("agents", help="manage agents")
    agsub = ag.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    add = agsub.add_parser("add", help="register (or update) an agent")
    add.add_argument("telegram_id", type=int, metavar="TELEGRAM_ID")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=agents.ROLES, default="agent")
    add.add_argument("--max-chats", type=int, default=3)
    add.add_argument(
        "--tiers", help="comma-separated tiers this agent serves, e.g. VIP,A (default: all)"
    )
    agsub.add_parser("list", help="list agents")
    rm = agsub.add_parser(
        "remove",
        help="remove an agent; their open chats go back to the queue",
        description="Remove an agent. Their open chats go back to the front of the queue "
        "(the customers are not messaged; online agents see the chats on /next). An agent "
        "named by past conversations is deactivated instead of deleted: `agents add` with "
        "the same TELEGRAM_ID brings them back.",
    )
    rm.add_argument("telegram_id", type=int, metavar="TELEGRAM_ID")

    sim = sub.add_parser("simulate", help="simulate a day of the queue (capacity planning)")
    sim.add_argument("scenario", type=Path, metavar="SCENARIO.toml")
    sim.add_argument("--seed", type=int, help="random seed (default: the scenario's, else 1)")
    sim.add_argument("--format", choices=("json", "table"), default="table")
    sim.add_argument(
        "--recommend",
        action="store_true",
        help="find the smallest agent count that meets every tier's SLA at the service level",
    )

    sub.add_parser("score", help="recompute scores and tiers now")

    cu = sub.add_parser("customers", help="one customer's score, tier and history")
    cusub = cu.add_subparsers(dest="customers_command", required=True, metavar="ACTION")
    show = cusub.add_parser("show", help="score by dimension, tier, override and tier history")
    show.add_argument("external_id", metavar="ID", help="the customer's external_id")
    ov = cusub.add_parser("override", help="pin a customer's tier (or --clear the pin)")
    ov.add_argument("external_id", metavar="ID")
    ov.add_argument("tier", nargs="?", metavar="TIER")
    ov.add_argument("--by", help="who pins it (required with TIER)")
    ov.add_argument("--reason", help="why (required with TIER)")
    ov.add_argument("--clear", action="store_true", help="release the pin: the model decides")
    inv = cusub.add_parser(
        "invite",
        help="one-time invitation links (t.me/<bot>?start=<token>) that identify a customer",
        description="Print a single-use, expiring deep link that links whoever opens it to "
        "customer ID (only the token's hash is stored), or with --tier T --out FILE.csv write "
        "one for every customer of tier T (external_id,name,link,expires_at) for a mail merge.",
    )
    inv.add_argument("external_id", nargs="?", metavar="ID", help="the customer's external_id")
    inv.add_argument("--tier", metavar="T", help="invite every customer of this tier")
    inv.add_argument("--out", type=Path, metavar="FILE.csv", help="the CSV (with --tier)")
    inv.add_argument(
        "--expires",
        metavar="DURATION",
        help="e.g. 12h, 7d, 2w (default: [identification] invite_expires_days)",
    )
    inv.add_argument("--qr", type=Path, metavar="FILE.png", help="also write the link as a QR")
    inv.add_argument(
        "--bot-username",
        help="the bot's @username (default: CONTACTBOT_BOT_USERNAME, else asked of Telegram)",
    )
    inv.add_argument("--by", help="who makes the invitations (recorded; default: the OS user)")

    sv = sub.add_parser("surveys", help="survey progress")
    svsub = sv.add_subparsers(dest="surveys_command", required=True, metavar="ACTION")
    st = svsub.add_parser("status", help="sent, answered, pending, failed, response and send rate")
    st.add_argument("--campaign", metavar="KEY", help="one campaign run (default: all surveys)")

    pol = sub.add_parser("policy", help="the policy file")
    polsub = pol.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    chk = polsub.add_parser("check", help="validate a policy file")
    chk.add_argument(
        "file", nargs="?", type=Path, help="default: CONTACTBOT_CONFIG or ./contactbot.toml"
    )
    return p


async def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    await _check_database(settings)
    engine = db.make_engine(settings.database_url)
    try:
        await db.upgrade(engine)
        return await work(engine)
    finally:
        await engine.dispose()


class DatabaseUnavailable(Exception):
    """The database URL or the database itself: the message is one line for the user."""


async def _check_database(settings: Settings) -> None:
    """The checks `run` makes of the database (bot.preflight), before any command uses it:
    a supported scheme (not mysql://), then a connection within the preflight timeout."""
    from bot import preflight

    url = settings.database_url
    scheme = preflight._database_scheme(url)
    if scheme not in preflight.DATABASE_SCHEMES:
        raise DatabaseUnavailable(
            f"CONTACTBOT_DATABASE_URL has the unsupported scheme {scheme!r}: use "
            "sqlite+aiosqlite:///path/to/contactbot.db or postgresql+asyncpg://user@host/db"
        )
    try:
        # Also opens an SQLite file without aiosqlite first (a clean one-line failure).
        await preflight._check_database(url, settings.preflight_timeout)
    except preflight.PreflightError as exc:
        raise DatabaseUnavailable(str(exc)) from None


def _database_failure(exc: BaseException, settings: Settings) -> str | None:
    """One line for a database that failed after the checks (gone away, refusing), or None
    if ``exc`` is something else (a bug: let its traceback show)."""
    from sqlalchemy.exc import DBAPIError

    from bot.preflight import describe

    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    if isinstance(exc, DBAPIError | OSError):
        return describe(exc, settings)
    if isinstance(exc, TimeoutError):
        return f"the database at {_safe_url(settings.database_url)} did not answer in time"
    return None


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import DBAPIError

    from bot.preflight import PreflightError, describe, install_log_filters, preflight

    token = settings.require_token()
    settings.load_policy()  # fail fast, before touching the network
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A failed getUpdates is one log line per attempt, not two lines or a traceback.
    install_log_filters()

    async def start() -> None:
        await preflight(settings, token)
        from bot.app import run_polling, run_webhook  # after the checks: a failure is quick

        await (run_webhook if args.webhook else run_polling)(settings, token)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(start())
    except (
        PreflightError,
        DBAPIError,
        OSError,
        TelegramNetworkError,
        TelegramUnauthorizedError,
        RedisConnectionError,
    ) as exc:
        # Expected when a service is down or a port taken: one line, not a traceback.
        message = describe(exc, settings, token)
        if message is None:  # pragma: no cover - describe() knows every type caught here
            raise
        err.print(f"contactbot: {message}", markup=False)
        return 3
    return 0


def _cmd_db(settings: Settings, _args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> None:
        return None  # _with_engine already upgraded

    asyncio.run(_with_engine(settings, work))
    out.print(f"database at {_safe_url(settings.database_url)} is up to date")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _print_rescore(result: customers.RescoreResult, policy: Policy, *, limit: int = 50) -> None:
    table = Table(title=f"Tier distribution ({result.customers} customers)")
    table.add_column("tier")
    table.add_column("customers", justify="right")
    table.add_column("share", justify="right")
    for tier in policy.tier_names:
        n = result.distribution.get(tier, 0)
        share = f"{100 * n / result.customers:.1f}%" if result.customers else "-"
        table.add_row(shown(tier), str(n), share)
    out.print(table)
    total = result.change_count
    if not total:
        out.print("no tier changes")
        return
    changes = Table(title=f"Tier changes: {total}")
    for col in ("external_id", "name", "from", "to", "spend_12m", "reason"):
        changes.add_column(col)
    for c in result.changes[:limit]:
        changes.add_row(
            shown(c.external_id),
            shown(c.name),
            shown(c.from_tier),
            shown(c.to_tier),
            f"{c.spend_12m:,.2f}",
            shown(f"{c.kind}, score {c.score:.1f}: {c.reason}"),
        )
    out.print(changes)
    if total > limit:
        out.print(f"... and {total - limit} more (all in `contactbot customers show ID`)")


async def _rescore(
    engine: AsyncEngine, policy: Policy, trigger: str = "cli"
) -> customers.RescoreResult:
    from routing.clock import utcnow

    sessions = db.make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        return await customers.rescore(s, policy, utcnow(), trigger=trigger)


def _cmd_score(settings: Settings, _args: argparse.Namespace) -> int:
    policy = settings.load_policy()
    result = asyncio.run(_with_engine(settings, lambda e: _rescore(e, policy)))
    _print_rescore(result, policy)
    return 0


def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from routing.customers import importer

    policy = settings.load_policy()
    if args.date_format is not None:
        try:
            importer.check_date_format(args.date_format)
        except importer.ImportOptionError as exc:
            err.print(f"contactbot: {exc}", markup=False)
            return 2

    async def run(engine: AsyncEngine) -> importer.ImportReport:
        sessions = db.make_sessionmaker(engine)
        if args.kind == "customers":
            return await importer.import_customers(
                sessions, args.file, policy, dry_run=args.dry_run
            )
        return await importer.import_orders(
            sessions,
            args.file,
            policy,
            dry_run=args.dry_run,
            date_format=args.date_format,
            decimal_comma=args.decimal_comma,
        )

    async def work(
        engine: AsyncEngine,
    ) -> tuple[importer.ImportReport, customers.RescoreResult | None]:
        report = await run(engine)
        # New data can move tiers: rescore at once so routing uses it from the next chat.
        rescored = (
            None if args.dry_run or report.ok == 0 else await _rescore(engine, policy, "import")
        )
        return report, rescored

    try:
        report, rescored = asyncio.run(_with_engine(settings, work))
    except importer.ImportFileError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    # markup=False: cells and hints hold brackets ("[identification] default_region").
    for w in report.warnings:
        err.print(f"warning: {w}", markup=False)
    for e in report.errors:
        err.print(str(e), markup=False)
    verb = "would load" if report.dry_run else "loaded"
    counts = (
        ""
        if report.dry_run
        else f" ({report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged)"
    )
    out.print(
        f"{args.kind}: {report.rows} rows read, {verb} {report.ok}, "
        f"{report.rows - report.ok} rejected{counts} in {report.seconds:.2f} s",
        markup=False,
        soft_wrap=True,  # one line, whatever the terminal's width
    )
    if rescored is not None:
        _print_rescore(rescored, policy, limit=20)
    return 1 if report.errors else 0


def _cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
    from routing.clock import utcnow

    async def add(engine: AsyncEngine) -> str:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            agent, created = await agents.add_agent(
                s,
                args.telegram_id,
                args.name,
                role=args.role,
                max_chats=args.max_chats,
                now=utcnow(),
            )
            if args.tiers is not None:
                agent.tiers = _agent_tiers(args.tiers, settings.load_policy())
            verb = "added" if created else "updated"
            return (
                f"{verb} {agent.role} {shown(agent.name)} ({agent.telegram_id}), "
                f"max {agent.max_chats} chats, tiers {shown(agent.tiers or 'all')}"
            )

    async def remove(engine: AsyncEngine) -> agents.Removal:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await agents.remove_agent(s, args.telegram_id)

    async def list_(engine: AsyncEngine) -> list[tuple[Agent, int]]:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await agents.list_agents(s)

    if args.agents_command in ("add", "remove"):
        try:
            # Refused before the database is opened: it cannot store past 64 bits.
            agents.check_telegram_id(args.telegram_id)
            if args.agents_command == "remove":
                _print_removal(asyncio.run(_with_engine(settings, remove)))
                return 0
            out.print(asyncio.run(_with_engine(settings, add)))
        except agents.AgentNotFound as exc:
            err.print(f"contactbot: {shown(exc)}")
            return 1
        except agents.AgentError as exc:
            err.print(f"contactbot: {shown(exc)}")
            return 2
        return 0
    rows = asyncio.run(_with_engine(settings, list_))
    table = Table(title=f"Agents ({len(rows)})")
    for col in ("telegram_id", "name", "role", "online", "open chats", "max chats", "tiers"):
        table.add_column(col)
    for a, n in rows:
        table.add_row(
            str(a.telegram_id),
            shown(a.name),
            shown(a.role),
            "yes" if a.online else "no",
            str(n),
            str(a.max_chats),
            shown(a.tiers or "all"),
        )
    out.print(table)
    return 0


def _print_removal(r: agents.Removal) -> None:
    who = f"agent {shown(r.name)} ({r.telegram_id})"
    if r.already_removed:
        out.print(f"{who} was already removed")
        return
    what = (
        f"removed {who}"
        if r.deleted
        else f"deactivated {who}: past conversations name them "
        f"(`contactbot agents add {r.telegram_id} --name ...` brings them back)"
    )
    chats = f"{r.requeued} open chat{'' if r.requeued == 1 else 's'} back in the queue"
    out.print(f"{what}; {chats}")


def _agent_tiers(raw: str, policy: Policy) -> str | None:
    names = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in names if t not in policy.tier_names]
    if unknown:
        raise agents.AgentError(
            f"--tiers: unknown tier(s) {', '.join(unknown)}; "
            f"the policy's tiers are {', '.join(policy.tier_names)}"
        )
    return ",".join(names) or None


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from routing import simulate

    policy = settings.load_policy()
    try:
        scenario = simulate.load_scenario(args.scenario, policy)
    except simulate.ScenarioError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    seed = args.seed if args.seed is not None else scenario.seed
    targets = scenario.sla.first_response_seconds or policy.queue.sla.first_response_seconds
    extra: dict[str, Any] = {"seed": seed}
    if args.recommend:
        rec = simulate.recommend(scenario, policy, seed=seed)
        sentence = rec.sentence({t: targets[t] for t in scenario.arrivals if t in targets})
        extra["recommendation"] = {
            "agents": rec.agents,
            "service_level": rec.service_level,
            "tried": {str(k): v for k, v in sorted(rec.tried.items())},
            "summary": sentence,
        }
        if rec.result is None:
            if args.format == "json":
                out.print_json(data=extra)
            else:
                out.print(sentence)
            return 1
        result = rec.result
    else:
        result = simulate.simulate(scenario, policy, seed=seed)
    if args.format == "json":
        # Plain print: rich would wrap or colour what scripts parse.
        print(simulate.to_json(result, extra))
        return 0
    table = Table(
        title=f"Simulated {result.simulated_seconds / 3600:.1f} h, {result.agents} agents"
    )
    cols = (
        "tier",
        "arrived",
        "served",
        "gave up",
        "mean s",
        "p50 s",
        "p90 s",
        "p99 s",
        "SLA met",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "tier" else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    for tier, st in result.tiers.items():
        met = st["sla_met_ratio"]
        table.add_row(
            tier,
            num(st["arrivals"]),
            num(st["served"]),
            num(st["abandoned"]),
            num(st["wait_mean_s"]),
            num(st["wait_p50_s"]),
            num(st["wait_p90_s"]),
            num(st["wait_p99_s"]),
            "-" if met is None else f"{met:.1%}",
        )
    out.print(table)
    out.print(f"agent utilization: {result.agent_utilization:.1%}   seed: {seed}")
    if args.recommend:
        out.print(extra["recommendation"]["summary"])
    return 0


def _bot_username(settings: Settings, given: str | None) -> str:
    """--bot-username, else CONTACTBOT_BOT_USERNAME, else getMe with the configured token."""
    import os
    import re

    name = given or os.environ.get("CONTACTBOT_BOT_USERNAME")
    if not name:
        from bot.app import make_bot

        async def get_me() -> str:
            bot = make_bot(settings.require_token(), settings.telegram_api_url)
            try:
                return (await bot.get_me()).username or ""
            finally:
                await bot.session.close()

        name = asyncio.run(get_me())
    name = name.strip().lstrip("@")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{3,31}", name):
        raise ValueError(f"{name!r} is not a bot username")
    return name


def _cmd_invite(settings: Settings, args: argparse.Namespace, policy: Policy) -> int:
    import csv
    import getpass
    from datetime import timedelta

    from routing.clock import utcnow
    from routing.customers import invitations

    if bool(args.external_id) == bool(args.tier) or bool(args.tier) != bool(args.out):
        err.print("contactbot: give an ID, or --tier T with --out FILE.csv", markup=False)
        return 2
    if args.tier and args.qr:
        err.print("contactbot: --qr makes one image: give an ID, not --tier", markup=False)
        return 2
    if args.tier and args.tier not in policy.tier_names:
        err.print(f"contactbot: no tier {args.tier!r} in the policy", markup=False)
        return 2
    try:
        ttl = (
            invitations.parse_duration(args.expires)
            if args.expires
            else timedelta(days=policy.identification.invite_expires_days)
        )
        username = _bot_username(settings, args.bot_username)
    except ValueError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    by = args.by or getpass.getuser()

    async def make(engine: AsyncEngine) -> list[invitations.NewInvitation] | None:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            if args.tier:
                return await invitations.create_for_tier(
                    s, args.tier, now=utcnow(), ttl=ttl, created_by=by
                )
            one = await invitations.create_for_customer(
                s, args.external_id, now=utcnow(), ttl=ttl, created_by=by
            )
            return None if one is None else [one]

    made = asyncio.run(_with_engine(settings, make))
    if made is None:
        err.print(f"contactbot: no customer with external_id {args.external_id!r}", markup=False)
        return 1
    until = made[0].expires_at.strftime("%Y-%m-%d %H:%M UTC") if made else "-"
    if args.tier:
        with args.out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(invitations.CSV_COLUMNS)
            writer.writerows(invitations.csv_rows(made, username))
        out.print(
            f"{len(made)} invitations for tier {args.tier} written to {args.out} "
            f"(single-use, valid until {until})",
            markup=False,
        )
        return 0
    link = invitations.deep_link(username, made[0].token)
    out.print(link, markup=False, soft_wrap=True)
    err.print(f"single-use, valid until {until}", markup=False)
    if args.qr:
        import segno

        segno.make(link, error="m").save(str(args.qr), scale=8, border=4)
        err.print(f"QR code written to {args.qr}", markup=False)
    return 0


def _cmd_customers(settings: Settings, args: argparse.Namespace) -> int:
    from routing.clock import utcnow

    policy = settings.load_policy()
    if args.customers_command == "invite":
        return _cmd_invite(settings, args, policy)

    async def show(engine: AsyncEngine) -> report.CustomerReport:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await report.customer_report(s, args.external_id, policy, utcnow())

    async def override(engine: AsyncEngine) -> customers.RescoreResult:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await report.set_override(
                s,
                args.external_id,
                None if args.clear else args.tier,
                by=args.by,
                reason=args.reason,
                policy=policy,
                now=utcnow(),
            )

    try:
        if args.customers_command == "show":
            _print_report(asyncio.run(_with_engine(settings, show)), policy)
            return 0
        if args.clear == bool(args.tier):
            err.print("contactbot: give a TIER to pin, or --clear (not both)")
            return 2
        if args.tier and not (args.by and args.reason):
            err.print("contactbot: pinning a tier needs --by NAME and --reason TEXT")
            return 2
        result = asyncio.run(_with_engine(settings, override))
    except report.CustomerNotFound:
        err.print(f"contactbot: no customer with external_id {args.external_id!r}")
        return 1
    except ValueError as exc:
        err.print(f"contactbot: {shown(exc)}")
        return 2
    if result.changes:
        c = result.changes[0]
        out.print(
            f"{shown(args.external_id)}: {shown(c.from_tier)} -> {shown(c.to_tier)} "
            f"({shown(c.reason)})"
        )
    else:
        out.print(f"{shown(args.external_id)}: tier unchanged")
    return 0


def _print_report(rep: Any, policy: Policy) -> None:
    c = rep.customer
    # Stored values are data: a name such as "[/bold]" is printed, never read as markup.
    out.print(Text.assemble((shown(c.external_id), "bold"), " ", shown(c.name)))
    out.print(
        f"tier: {shown(c.tier)}   score: {rep.explanation.score:.1f} / 100   "
        f"mode: {policy.scoring.mode}"
    )
    out.print(f"model grade now: {shown(rep.model.tier)} ({shown(rep.model.reason)})")
    if c.tier_override:
        out.print(
            f"override: {shown(c.tier_override)} by {shown(c.tier_override_by or '(CSV import)')}"
            f" - {shown(c.tier_override_reason or 'no reason given')}"
        )
    if c.below_count:
        out.print(
            f"held above the model: {c.below_count}/{policy.scoring.downgrade_after} "
            "evaluations below"
        )
    dims = Table(title="Score by dimension")
    for col in ("dimension", "value", "weight", "points", "from"):
        dims.add_column(col)
    for d in rep.explanation.dimensions:
        dims.add_row(
            shown(d.name), f"{d.value:.2f}", f"{d.weight:.2f}", f"{d.points:+.1f}", shown(d.note)
        )
    out.print(dims)
    hist = Table(title=f"Tier history ({len(rep.history)} latest)")
    for col in ("when", "from", "to", "kind", "score", "reason"):
        hist.add_column(col)
    for h in rep.history:
        hist.add_row(
            h.changed_at.strftime("%Y-%m-%d %H:%M"),
            shown(h.from_tier),
            shown(h.to_tier),
            shown(h.kind),
            "" if h.score is None else f"{h.score:.1f}",
            shown(h.reason),
        )
    out.print(hist)


def _cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.policy_path()
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        if not exc.problems:  # unreadable, or not TOML: main() prints its one line
            raise
        n = len(exc.problems)
        err.print(
            f"contactbot: {exc.summary} ({n} problem{'s' if n > 1 else ''}):",
            markup=False,
            emoji=False,
        )
        for problem in exc.problems:  # one line each: "[table] key: what is wrong"
            err.print(f"  {problem}", markup=False, emoji=False)
        return 2
    source = str(path) if path else "built-in defaults"
    out.print(
        f"{source}: OK ({len(policy.tiers)} tiers: {', '.join(policy.tier_names)}; "
        f"{len(policy.selfservice.faq)} FAQ entries, {len(policy.selfservice.menus)} menus, "
        f"{len(policy.selfservice.actions)} actions)"
    )
    return 0


def _cmd_surveys(settings: Settings, args: argparse.Namespace) -> int:
    from surveys import status

    async def work(engine: AsyncEngine) -> tuple[status.SurveyStatus, list[Any]]:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            figures = await status.survey_status(s, args.campaign)
            runs = [] if args.campaign else await status.campaigns(s)
            return figures, runs

    figures, runs = asyncio.run(_with_engine(settings, work))
    if args.campaign and figures.total == 0:
        err.print(f"contactbot: no surveys in campaign {args.campaign!r}")
        return 1
    rate = figures.response_rate
    speed = figures.send_rate
    table = Table(title=f"Surveys: {args.campaign or 'all'} ({figures.total})")
    for col in ("sent", "answered", "pending", "failed", "skipped", "response rate", "rate"):
        table.add_column(col, justify="right")
    table.add_row(
        str(figures.delivered),
        str(figures.answered),
        str(figures.pending),
        str(figures.failed),
        str(figures.skipped),
        "-" if rate is None else f"{rate:.1%}",
        "-" if speed is None else f"{speed:.1f} msg/s",
    )
    out.print(table)
    out.print("by status: " + ", ".join(f"{k} {v}" for k, v in sorted(figures.by_status.items())))
    if runs:
        camp = Table(title="Campaign runs (latest first)")
        for col in ("key", "tier", "sample", "surveys", "finished"):
            camp.add_column(col)
        for r in runs:
            camp.add_row(
                r.key,
                r.tier,
                f"{r.sample_ratio:g}",
                str(r.surveys),
                r.finished_at.strftime("%Y-%m-%d %H:%M") if r.finished_at else "in progress",
            )
        out.print(camp)
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": _cmd_run,
    "db": _cmd_db,
    "import": _cmd_import,
    "agents": _cmd_agents,
    "score": _cmd_score,
    "customers": _cmd_customers,
    "policy": _cmd_policy,
    "surveys": _cmd_surveys,
    "simulate": _cmd_simulate,
}


def main(argv: Sequence[str] | None = None) -> int:
    _fit_output()
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        return COMMANDS[args.command](settings, args)
    except (ConfigError, PolicyError) as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    except (DatabaseUnavailable, DBAPIError, OSError, TimeoutError) as exc:
        # A database that is down, refusing or of an unsupported kind: one line, not a
        # traceback (`run` reports its own failures the same way).
        message = _database_failure(exc, settings)
        if message is None:
            raise
        err.print(f"contactbot: {message}", markup=False)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
