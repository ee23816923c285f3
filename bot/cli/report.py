"""``contactbot report [--since 30d] [--until DATE] [--format table|csv|json|html] [--out FILE]``:
the service figures of a period, per tier, per agent and overall (``routing/reports``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import DataConsole, err, out
from bot.clock import make_clock
from bot.config import Settings
from routing.reports import columns, export, page
from routing.reports import formatting as f
from routing.reports.build import Group, Report, build
from routing.reports.period import Period, period
from routing.store import db

FORMATS = ("table", "csv", "json", "html")


def _groups_table(
    title: str, first: str, groups: list[Group], cols: tuple[columns.Column, ...]
) -> Table:
    table = Table(title=title)
    table.add_column(first)
    for header, _ in cols:
        table.add_column(header, justify="right")
    for g in groups:
        table.add_row(g.name, *(cell(g) for _, cell in cols))
    return table


def _pairs_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


def print_tables(report: Report, console: DataConsole) -> None:
    """The report as rich tables, like the other commands' output."""
    heading = columns.heading(report)
    groups = [report.overall, *report.tiers]
    agents = list(report.agents)
    console.print(_groups_table(f"Conversations {heading}", "tier", groups, columns.CONVERSATIONS))
    console.print(
        _groups_table(
            "Satisfaction, self-service, complaints", "tier", groups, columns.SATISFACTION
        )
    )
    console.print(_groups_table("Conversations by agent", "agent", agents, columns.CONVERSATIONS))
    no_deflection = tuple(c for c in columns.SATISFACTION if c[0] != "deflected")
    console.print(_groups_table("Satisfaction by agent", "agent", agents, no_deflection))
    dist = Table(title=f"Tiers now (guests, not counted: {report.guests})")
    for col in ("tier", "customers", "12-month spend"):
        dist.add_column(col, justify="left" if col == "tier" else "right")
    for t in report.distribution:
        dist.add_row(t.tier, f.number(t.customers), f.money(t.spend))
    console.print(dist)
    moves = Table(title="Tier movements in the period")
    for col in ("from", "to", "direction", "changes"):
        moves.add_column(col, justify="right" if col == "changes" else "left")
    for m in report.movements:
        moves.add_row(m.from_tier or "new", m.to_tier, m.direction, f.number(m.customers))
    console.print(moves)
    console.print(_pairs_table("Revenue concentration", columns.concentration_rows(report)))
    console.print(_pairs_table("Revenue at risk (12-month spend)", columns.at_risk_rows(report)))


def _render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return export.to_json(report)
    if fmt == "csv":
        return export.to_csv(report)
    return page.render(report)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    policy = settings.load_policy()
    now = make_clock(settings.clock_file)()
    try:
        when: Period = period(args.since, args.until, now)
    except ValueError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    target: Path | None = args.out
    if target is not None and not target.parent.is_dir():
        err.print(f"contactbot: --out {target}: no such directory {target.parent}", markup=False)
        return 2

    async def work(engine: AsyncEngine) -> Report:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            return await build(s, policy, when)

    report = asyncio.run(with_engine(settings, work))
    try:
        if args.format == "table":
            if target is None:
                print_tables(report, out)
            else:
                with target.open("w", encoding="utf-8") as fh:
                    print_tables(report, DataConsole(file=fh, width=100_000, soft_wrap=True))
        elif target is None:
            # Plain write: rich would wrap or colour what scripts and browsers read.
            sys.stdout.write(_render(report, args.format))
        else:
            # newline="": the CSV's own CRLF row ends are kept as they are.
            with target.open("w", encoding="utf-8", newline="") as fh:
                fh.write(_render(report, args.format))
    except OSError as exc:
        err.print(f"contactbot: cannot write {target}: {exc.strerror or exc}", markup=False)
        return 2
    if target is not None:
        err.print(f"report ({args.format}) written to {target}", markup=False)
    return 0
