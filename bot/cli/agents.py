"""``contactbot agents add|list|remove``: who answers chats, their capacity and tiers."""

from __future__ import annotations

import argparse
import asyncio

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import err, out, shown
from bot.config import Settings
from routing.policy.root import Policy
from routing.queue import agents
from routing.store import db
from routing.store.models import Agent


def cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
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
                _print_removal(asyncio.run(with_engine(settings, remove)))
                return 0
            out.print(asyncio.run(with_engine(settings, add)))
        except agents.AgentNotFound as exc:
            err.print(f"contactbot: {shown(exc)}")
            return 1
        except agents.AgentError as exc:
            err.print(f"contactbot: {shown(exc)}")
            return 2
        return 0
    rows = asyncio.run(with_engine(settings, list_))
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
