"""Who may take a chat: the one eligibility check (tier, capacity) and the online agents
it is asked of. Claims, offers, paging, announcements and the simulator all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.queue import priority
from routing.store.models import ASSIGNED, Agent, Conversation


def parse_tiers(raw: str | None) -> frozenset[str] | None:
    """An agent's tier list (``"VIP,A"``); None means every tier."""
    if raw is None or not raw.strip():
        return None
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def serves(tiers: frozenset[str] | None, tier: str) -> bool:
    return tiers is None or tier in tiers


def has_capacity(load: int, max_chats: int) -> bool:
    return load < max_chats


@dataclass
class AgentSlot:
    """What routing needs to know about one online agent."""

    id: int
    load: int
    max_chats: int
    tiers: frozenset[str] | None = None
    # When they last took a chat (seconds; any origin): the longest idle wins ties.
    last_assigned: float = -math.inf


def eligible(slot: AgentSlot, tier: str) -> bool:
    return serves(slot.tiers, tier) and has_capacity(slot.load, slot.max_chats)


def pick_agent(
    slots: Iterable[AgentSlot], tier: str, exclude: frozenset[int] = frozenset()
) -> AgentSlot | None:
    """The least-loaded eligible agent (then the longest idle, then the lowest id)."""
    best: AgentSlot | None = None
    for s in slots:
        if s.id in exclude or not eligible(s, tier):
            continue
        if best is None or (s.load, s.last_assigned, s.id) < (
            best.load,
            best.last_assigned,
            best.id,
        ):
            best = s
    return best


async def online_slots(session: AsyncSession) -> dict[int, tuple[Agent, AgentSlot]]:
    """Every online active agent with their current load."""
    loads = (
        select(Conversation.agent_id, func.count().label("n"))
        .where(Conversation.status == ASSIGNED)
        .group_by(Conversation.agent_id)
        .subquery()
    )
    last = (
        select(Conversation.agent_id, func.max(Conversation.assigned_at).label("at"))
        .where(Conversation.agent_id.is_not(None))
        .group_by(Conversation.agent_id)
        .subquery()
    )
    rows = await session.execute(
        select(Agent, func.coalesce(loads.c.n, 0), last.c.at)
        .outerjoin(loads, loads.c.agent_id == Agent.id)
        .outerjoin(last, last.c.agent_id == Agent.id)
        .where(Agent.online.is_(True), Agent.active.is_(True))
        .order_by(Agent.id)
    )
    out: dict[int, tuple[Agent, AgentSlot]] = {}
    for a, n, at in rows.all():
        at_s = priority.epoch_seconds(at) if at is not None else -math.inf
        out[a.id] = (a, AgentSlot(a.id, int(n), a.max_chats, parse_tiers(a.tiers), at_s))
    return out
