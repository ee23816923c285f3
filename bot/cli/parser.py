"""The argparse parser: every command, option, help text and the exit statuses in --help.

The command line is a contract that scripts rely on: names, options and help stay as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# routing.queue.agents.ROLES (tests/unit/test_cli_startup.py keeps them equal): importing
# that module here would load SQLAlchemy and the models before --help could answer.
AGENT_ROLES = ("agent", "supervisor")


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

REPORT_EXIT_CODES = """\
exit status:
  0  the report was written
  2  a bad --since or --until (one line on stderr says why), --out in a missing directory
  3  the database is unreachable or refusing"""

BROADCAST_EXIT_CODES = """\
exit status:
  0  the broadcast was written (or already was), or --dry-run printed its figures
  1  broadcast status KEY: no such broadcast
  2  a bad --tier, --at or text file (one line on stderr says why)
  3  the database is unreachable or refusing"""

COMPLAINTS_EXIT_CODES = """\
exit status:
  0  the cases (or the case) were printed; an empty list too
  1  complaints show ID: no such case
  2  a bad --since, --tier or ID (one line on stderr says why)
  3  the database is unreachable or refusing"""

CONVERSATIONS_EXIT_CODES = """\
exit status:
  0  the chat was printed
  1  no such chat
  2  a bad ID (one line on stderr says why)
  3  the database is unreachable or refusing"""

DB_EXIT_CODES = """\
Commands that use the database (db, import, agents, score, customers, surveys, report) exit
3, with one line on stderr, when CONTACTBOT_DATABASE_URL has an unsupported scheme or the
database cannot be reached within CONTACTBOT_PREFLIGHT_TIMEOUT seconds (default 5)."""


def build_parser() -> argparse.ArgumentParser:
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
    add.add_argument("--role", choices=AGENT_ROLES, default="agent")
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

    cp = sub.add_parser(
        "complaints",
        help="complaint cases: list them, or show one with its timeline",
        description="Complaint cases (the case number is the one customers and agents see).",
        epilog=COMPLAINTS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cpsub = cp.add_subparsers(dest="complaints_command", required=True, metavar="ACTION")
    cl = cpsub.add_parser(
        "list",
        help="cases, newest first (at most 500)",
        description="Cases newest first: status, whether a target was missed, remedy, "
        "follow-up answer, weight in the score.",
        epilog=COMPLAINTS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cl.add_argument(
        "--status",
        choices=("open", "resolved", "breached"),
        help="open: not resolved (reopened included); breached: missed an acknowledgement or "
        "resolution target, whatever its state now",
    )
    cl.add_argument("--tier", metavar="T", help="the tier the case was opened in")
    cl.add_argument(
        "--since",
        metavar="30d|DATE",
        help="opened since: a duration back from now (90m, 12h, 30d, 2w) or a date "
        "(YYYY-MM-DD, UTC) (default: any time)",
    )
    cs = cpsub.add_parser(
        "show",
        help="one case: its facts, timeline, remedy and follow-up answer",
        epilog=COMPLAINTS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cs.add_argument("id", metavar="ID", help="the case number, e.g. 12 or #12")

    cv = sub.add_parser(
        "conversations",
        help="one chat and its transcript, internal notes marked",
        description="A chat's facts and its transcript: who said what and when (times in "
        "[desk] timezone), agents' internal notes marked, media as [kind] and caption.",
        epilog=CONVERSATIONS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cvsub = cv.add_subparsers(dest="conversations_command", required=True, metavar="ACTION")
    cvs = cvsub.add_parser(
        "show",
        help="one chat: its facts and transcript",
        epilog=CONVERSATIONS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cvs.add_argument("id", metavar="ID", help="the chat number agents see, e.g. 12 or #12")

    bc = sub.add_parser(
        "broadcast",
        help="announce a text to every customer of some tiers (or: broadcast status)",
        description="Queue an announcement to every customer of the tiers (survey outbox). The\n"
        "running bot sends it from --at on (default: now) at the sender's pace, outside quiet\n"
        "hours, to customers who have not sent /stop_news, under [care.announcements] caps.\n\n"
        "FILE: plain text in the default language, or a .toml file with one key per\n"
        "language (en = '''...''' and zh_Hans = '''...'''); customers get their language's\n"
        "text, else the default one. The same command run again finishes what a crash left\n"
        "unfinished; nobody gets one broadcast twice.",
        epilog=BROADCAST_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bc.add_argument("--tier", metavar="T[,T]", help="comma-separated tiers, e.g. VIP,A")
    bc.add_argument("--text-file", type=Path, metavar="FILE", help="the text (see above)")
    bc.add_argument(
        "--at",
        metavar="ISO-8601",
        help="when to start sending, with a zone: 2026-12-10T09:00+01:00 (default: now)",
    )
    bc.add_argument(
        "--dry-run",
        action="store_true",
        help="print who would get it (per tier and language) and who not (by reason); "
        "write nothing",
    )
    bcsub = bc.add_subparsers(dest="broadcast_command", metavar="ACTION")
    bst = bcsub.add_parser("status", help="broadcasts with their progress")
    bst.add_argument("key", nargs="?", metavar="KEY", help="one broadcast (default: the latest 20)")

    rep = sub.add_parser(
        "report",
        help="service figures of a period: per tier, per agent and overall",
        description="Figures of the conversations queued in [since, until): waits (p50, p90, "
        "max), SLA met, abandonment, handle and resolution time, CSAT, NPS, self-service "
        "deflection, complaints; the tier distribution and movements, revenue concentration "
        "and revenue at risk. --format csv adds one row per conversation.",
        epilog=REPORT_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument(
        "--since",
        metavar="30d|DATE",
        help="the start: a duration back from --until (90m, 12h, 30d, 2w) or a date "
        "(YYYY-MM-DD, midnight UTC) (default: 30d)",
    )
    rep.add_argument(
        "--until",
        metavar="DATE",
        help="the end, exclusive: YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM (default: now)",
    )
    rep.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    rep.add_argument("--out", type=Path, metavar="FILE", help="write there (default: stdout)")

    pol = sub.add_parser("policy", help="the policy file")
    polsub = pol.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    chk = polsub.add_parser("check", help="validate a policy file")
    chk.add_argument(
        "file", nargs="?", type=Path, help="default: CONTACTBOT_CONFIG or ./contactbot.toml"
    )
    return p
