"""``contactbot complaints list [--status open|resolved|breached] [--tier T] [--since 30d]``
and ``contactbot complaints show ID``: complaint cases, and one case with its timeline,
remedy and follow-up answer (``routing/complaints/queries.py``)."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import datetime

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import err, out, shown
from bot.clock import make_clock
from bot.config import Settings
from routing.complaints import queries
from routing.complaints.remedies import format_amount
from routing.policy.root import Policy
from routing.reports.period import parse_duration, parse_instant
from routing.store import db
from routing.store.care_models import Complaint

LIST_LIMIT = 500


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M")


def _remedy(c: Complaint) -> str:
    if c.remedy_kind is None:
        return ""
    amount = f" {format_amount(c.remedy_amount_cents)}" if c.remedy_amount_cents is not None else ""
    return f"{c.remedy_kind}{amount}"


def _answer(c: Complaint) -> str:
    if c.outcome is None:
        return ""
    rating = f", rated {c.follow_up_score}/5" if c.follow_up_score is not None else ""
    return f"{c.outcome}{rating}"


def _since(text: str, now: datetime) -> datetime:
    """``30d`` / ``12h`` back from now, or a date or instant (``2026-11-01``)."""
    if re.match(r"\s*\d{4}-", text):
        return parse_instant(text)
    return now - parse_duration(text)


def cmd_complaints(settings: Settings, args: argparse.Namespace) -> int:
    policy = settings.load_policy()
    now = make_clock(settings.clock_file)()
    if args.complaints_command == "show":
        return _show(settings, args, now)
    return _list(settings, args, policy, now)


def _list(settings: Settings, args: argparse.Namespace, policy: Policy, now: datetime) -> int:
    if args.tier is not None and args.tier not in policy.tier_names:
        err.print(
            f"contactbot: no tier {args.tier!r} (tiers: {', '.join(policy.tier_names)})",
            markup=False,
        )
        return 2
    try:
        since = _since(args.since, now) if args.since else None
    except ValueError as exc:
        err.print(f"contactbot: --since: {exc}", markup=False)
        return 2

    async def work(engine: AsyncEngine) -> list[queries.CaseRow]:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await queries.list_complaints(
                s, now, status=args.status, tier=args.tier, since=since, limit=LIST_LIMIT
            )

    rows = asyncio.run(with_engine(settings, work))
    filters = [
        f"{k} {shown(v)}"
        for k, v in (("status", args.status), ("tier", args.tier), ("since", args.since))
        if v
    ]
    title = f"Complaints ({len(rows)}{', ' + ', '.join(filters) if filters else ''})"
    if not rows:
        out.print(f"{title}: none")
        return 0
    table = Table(title=title)
    for col in ("case", "opened (UTC)", "customer", "tier", "category", "status", "breached",
                "remedy", "follow-up", "weight"):  # fmt: skip
        table.add_column(col, justify="right" if col in ("case", "weight") else "left")
    for r in rows:
        c = r.complaint
        who = " ".join(x for x in (shown(r.external_id), shown(r.name)) if x) or f"#{c.customer_id}"
        status = f"{c.status} ({c.reopen_count}x reopened)" if c.reopen_count else c.status
        table.add_row(
            f"#{c.id}",
            _when(c.opened_at),
            who,
            shown(c.tier),
            shown(c.category),
            shown(status),
            "yes" if r.breached else "no",
            shown(_remedy(c)),
            shown(_answer(c)),
            f"{c.weight:.2f}",
        )
    out.print(table)
    if len(rows) == LIST_LIMIT:
        out.print(f"(the newest {LIST_LIMIT}; narrow with --since, --status or --tier)")
    return 0


def _case_id(text: str) -> int | None:
    m = re.fullmatch(r"\s*#?(\d{1,18})\s*", text)
    return int(m.group(1)) if m else None


def _show(settings: Settings, args: argparse.Namespace, now: datetime) -> int:
    case = _case_id(args.id)
    if case is None:
        err.print(f"contactbot: {shown(args.id)} is not a case number (e.g. 12)", markup=False)
        return 2

    async def work(engine: AsyncEngine) -> queries.CaseView | None:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await queries.show(s, case, now)

    view = asyncio.run(with_engine(settings, work))
    if view is None:
        err.print(f"contactbot: no complaint #{case}", markup=False)
        return 1
    c, cu = view.complaint, view.customer

    def agent(agent_id: int | None) -> str:
        if agent_id is None:
            return ""
        return shown(view.agents.get(agent_id, f"agent #{agent_id}"))

    facts = Table(title=f"Complaint #{c.id}", show_header=False)
    facts.add_column("field")
    facts.add_column("value")
    rows: list[tuple[str, str]] = [
        ("status", shown(c.status) + (f", reopened {c.reopen_count}x" if c.reopen_count else "")),
        ("breached", "yes" if view.breached else "no"),
        ("customer", " ".join(x for x in (shown(cu.external_id), shown(cu.name)) if x)),
        ("tier (at open)", shown(c.tier)),
        ("category", f"{shown(c.category)} (severity {c.severity:g})"),
        ("opened by", shown(c.opened_by)),
        ("description", shown(c.description)),
        ("chat", f"#{c.conversation_id}" if c.conversation_id else ""),
        ("agent", agent(c.agent_id)),
        ("opened", _when(c.opened_at)),
        ("acknowledged", _when(c.acknowledged_at)),
        ("resolved", _when(c.resolved_at)),
        ("reopened", _when(c.reopened_at)),
        ("acknowledge by", _when(c.ack_due_at)),
        ("resolve by", _when(c.resolve_due_at)),
        ("remedy", shown(_remedy(c))),
        ("remedy note", shown(c.remedy_note)),
        ("follow-up answer", shown(_answer(c))),
        ("answered", _when(c.followed_up_at)),
        ("weight", f"{c.weight:.2f}"),
    ]
    for k, v in rows:
        facts.add_row(k, v)
    out.print(facts)
    timeline = Table(title=f"Timeline ({len(view.timeline)} events, times UTC)")
    for col in ("when", "event", "target", "cycle", "agent", "detail"):
        timeline.add_column(col)
    for e in view.timeline:
        timeline.add_row(
            _when(e.at),
            shown(e.kind),
            shown(e.target),
            str(e.cycle),
            agent(e.agent_id),
            shown(e.detail),
        )
    out.print(timeline)
    return 0
