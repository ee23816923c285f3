"""``contactbot conversations show ID``: one chat's facts and its transcript, who said what
and when, internal notes marked: the transcript a transfer shows the next agent
(``bot/desk/briefing.py``), as text. Times in ``[desk] timezone``."""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from html import escape, unescape
from zoneinfo import ZoneInfo

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.adapters.content import Content
from bot.cli.database import with_engine
from bot.cli.output import err, out, shown
from bot.config import Settings
from bot.desk import briefing
from routing.queue import conversations
from routing.store import db
from routing.store.models import Conversation, Customer, Message


@dataclass(frozen=True)
class ChatView:
    conversation: Conversation
    customer: Customer | None
    messages: list[Message]
    agents: dict[int, str]


def _chat_id(text: str) -> int | None:
    m = re.fullmatch(r"\s*#?(\d{1,18})\s*", text)
    return int(m.group(1)) if m else None


def cmd_conversations(settings: Settings, args: argparse.Namespace) -> int:
    policy = settings.load_policy()
    chat = _chat_id(args.id)
    if chat is None:
        err.print(f"contactbot: {shown(args.id)} is not a chat number (e.g. 12)", markup=False)
        return 2

    async def work(engine: AsyncEngine) -> ChatView | None:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            conv = await s.get(Conversation, chat)
            if conv is None:
                return None
            rows = await conversations.transcript(s, conv.id)
            ids = {m.agent_id for m in rows if m.agent_id is not None}
            ids |= {i for i in (conv.agent_id, conv.transferred_by) if i is not None}
            names = await briefing.agent_names(s, ids)
            return ChatView(conv, await s.get(Customer, conv.customer_id), rows, names)

    view = asyncio.run(with_engine(settings, work))
    if view is None:
        err.print(f"contactbot: no chat #{chat}", markup=False)
        return 1
    zone = ZoneInfo(policy.desk.timezone)
    c, cu = view.conversation, view.customer

    def at(moment: datetime | None) -> str:
        return "" if moment is None else briefing.when(moment, zone)

    def agent(agent_id: int | None) -> str:
        return "" if agent_id is None else shown(view.agents.get(agent_id, f"agent #{agent_id}"))

    facts = Table(title=f"Chat #{c.id}", show_header=False)
    facts.add_column("field")
    facts.add_column("value")
    who = " ".join(x for x in (shown(cu.external_id), shown(cu.name)) if x) if cu else ""
    for k, v in (
        ("customer", who or f"#{c.customer_id}"),
        ("tier", shown(c.tier)),
        ("status", shown(c.status)),
        ("origin", shown(c.origin)),
        ("agent", agent(c.agent_id)),
        ("queued", at(c.queued_at)),
        ("assigned", at(c.assigned_at)),
        ("closed", at(c.closed_at)),
        ("transferred by", agent(c.transferred_by)),
        ("transfer note", shown(c.transfer_note)),
    ):
        facts.add_row(k, v)
    out.print(facts)
    out.print(f"Transcript ({len(view.messages)} messages, times {policy.desk.timezone}):")
    for m in view.messages:
        media = briefing.is_media(m)
        text = Content(m.content_type, m.text, None).preview() if media else (m.text or "")
        line = unescape(briefing.line_of(m, escape(text), view.agents, at(m.created_at)))
        # A message of several lines stays one entry: its next lines indented.
        out.print("\n  ".join(shown(part) for part in line.split("\n")))
    return 0
