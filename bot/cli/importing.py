"""``contactbot import customers|orders``: load CRM data from CSV, then rescore."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.customers import print_rescore, rescore
from bot.cli.database import with_engine
from bot.cli.output import err, out
from bot.config import Settings
from routing.customers import identity as customers
from routing.store import db


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
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
            None if args.dry_run or report.ok == 0 else await rescore(engine, policy, "import")
        )
        return report, rescored

    try:
        report, rescored = asyncio.run(with_engine(settings, work))
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
        print_rescore(rescored, policy, limit=20)
    return 1 if report.errors else 0
