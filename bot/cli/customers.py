"""``contactbot score`` and ``contactbot customers show|override`` (``customers invite`` is in
bot.cli.invite): scores, tiers, pins and the tier history of customers."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.invite import cmd_invite
from bot.cli.output import err, out, shown
from bot.config import Settings
from routing.customers import identity as customers
from routing.policy.root import Policy
from routing.scoring import report
from routing.store import db


def print_rescore(result: customers.RescoreResult, policy: Policy, *, limit: int = 50) -> None:
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


async def rescore(
    engine: AsyncEngine, policy: Policy, trigger: str = "cli"
) -> customers.RescoreResult:
    from routing.clock import utcnow

    sessions = db.make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        return await customers.rescore(s, policy, utcnow(), trigger=trigger)


def cmd_score(settings: Settings, _args: argparse.Namespace) -> int:
    policy = settings.load_policy()
    result = asyncio.run(with_engine(settings, lambda e: rescore(e, policy)))
    print_rescore(result, policy)
    return 0


def cmd_customers(settings: Settings, args: argparse.Namespace) -> int:
    from routing.clock import utcnow

    policy = settings.load_policy()
    if args.customers_command == "invite":
        return cmd_invite(settings, args, policy)

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
            _print_report(asyncio.run(with_engine(settings, show)), policy)
            return 0
        if args.clear == bool(args.tier):
            err.print("contactbot: give a TIER to pin, or --clear (not both)")
            return 2
        if args.tier and not (args.by and args.reason):
            err.print("contactbot: pinning a tier needs --by NAME and --reason TEXT")
            return 2
        result = asyncio.run(with_engine(settings, override))
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
