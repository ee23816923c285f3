"""``contactbot surveys status``: progress of surveys and campaign runs."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import err, out
from bot.config import Settings
from routing.store import db


def cmd_surveys(settings: Settings, args: argparse.Namespace) -> int:
    from surveys import status

    async def work(engine: AsyncEngine) -> tuple[status.SurveyStatus, list[Any]]:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            figures = await status.survey_status(s, args.campaign)
            runs = [] if args.campaign else await status.campaigns(s)
            return figures, runs

    figures, runs = asyncio.run(with_engine(settings, work))
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
