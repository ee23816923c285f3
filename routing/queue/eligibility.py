"""Who may take a chat: the one eligibility check and the online agents it is asked of.

:func:`refusal` is the rule, in this order:

1. **tier**: the agent serves the chat's tier (``agents.tiers``; empty: every tier);
2. **reservation**: the chat is not held for another agent (a manager-first or sticky window
   that has not ended);
3. **business hours**: the tier is open (:func:`hours_open`), when the caller asks: hours
   decide whether agents are *paged*, never whether an agent on duty may take a chat;
4. **capacity**: the agent holds fewer than ``max_chats`` chats.

Claims (``claims.claim``, ``claims.transfer_to``), offers (``offers.make_offers`` through
:func:`pick_agent`), paging and announcements (``assignment``) and the simulator
(``routing.simulate``) all ask it. Paging asks it too but lets a full agent be paged
(:func:`may_page`): the notice stays, and they can take the chat once they have room.
``claims.claim_next`` picks in SQL: :func:`sql_open_to` is the same tier and reservation
rule as WHERE conditions, and capacity rides in its claiming UPDATE.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue import priority
from routing.store import direct
from routing.store.models import ASSIGNED, Agent, Conversation

# Why an agent may not take a chat (the order :func:`refusal` checks in).
REFUSED_TIER = "tier"
REFUSED_RESERVED = "reserved"
REFUSED_CLOSED = "closed"
REFUSED_CAPACITY = "capacity"


def parse_tiers(raw: str | None) -> frozenset[str] | None:
    """An agent's tier list (``"VIP,A"``); None means every tier."""
    if raw is None or not raw.strip():
        return None
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def serves(tiers: frozenset[str] | None, tier: str) -> bool:
    return tiers is None or tier in tiers


def has_capacity(load: int, max_chats: int) -> bool:
    return load < max_chats


def hours_open(policy: Policy, tier: str, now: datetime) -> bool:
    """Whether people answer this tier's chats now (``selfservice.tiers.<tier>.hours``)."""
    return policy.selfservice.access(tier).is_open(now)


@dataclass
class AgentSlot:
    """What routing needs to know about one online agent."""

    id: int
    load: int
    max_chats: int
    tiers: frozenset[str] | None = None
    # When they last took a chat (seconds; any origin): the longest idle wins ties.
    last_assigned: float = -math.inf

    @classmethod
    def of(cls, agent: Agent, load: int) -> AgentSlot:
        return cls(agent.id, load, agent.max_chats, parse_tiers(agent.tiers))


@dataclass(frozen=True)
class Chat:
    """What the rule needs to know about a waiting chat."""

    tier: str
    reserved_agent_id: int | None = None
    reserved_until: datetime | None = None

    @classmethod
    def of(cls, conv: Conversation) -> Chat:
        return cls(conv.tier, conv.reserved_agent_id, conv.reserved_until)


def reserved_for_other(chat: Chat, agent_id: int, now: datetime) -> bool:
    """Held for someone else: a reservation for another agent that has not ended."""
    return (
        chat.reserved_agent_id is not None
        and chat.reserved_agent_id != agent_id
        and chat.reserved_until is not None
        and chat.reserved_until > now
    )


def refusal(
    slot: AgentSlot, chat: Chat, now: datetime | None = None, *, open_now: bool = True
) -> str | None:
    """Why ``slot`` may not take ``chat`` now (a ``REFUSED_*``), or None: they may.

    ``now`` None: no reservation is looked at (a chat that has none, the simulator's).
    ``open_now``: the tier's business hours (:func:`hours_open`) where the caller applies them.
    """
    if not serves(slot.tiers, chat.tier):
        return REFUSED_TIER
    if now is not None and reserved_for_other(chat, slot.id, now):
        return REFUSED_RESERVED
    if not open_now:
        return REFUSED_CLOSED
    if not has_capacity(slot.load, slot.max_chats):
        return REFUSED_CAPACITY
    return None


def eligible(slot: AgentSlot, tier: str) -> bool:
    """May take a chat of ``tier`` that nobody holds (tier and capacity)."""
    return refusal(slot, Chat(tier)) is None


def may_page(slot: AgentSlot, chat: Chat, now: datetime, *, open_now: bool = True) -> bool:
    """Whether to tell ``slot`` of ``chat``: :func:`refusal`, except that a full agent is
    told too (they may close a chat and take this one)."""
    return refusal(slot, chat, now, open_now=open_now) in (None, REFUSED_CAPACITY)


def pick_agent(
    slots: Iterable[AgentSlot], tier: str, exclude: frozenset[int] = frozenset()
) -> AgentSlot | None:
    """The least-loaded eligible agent (then the longest idle, then the lowest id)."""
    chat = Chat(tier)
    best: AgentSlot | None = None
    for s in slots:
        if s.id in exclude or refusal(s, chat) is not None:
            continue
        if best is None or (s.load, s.last_assigned, s.id) < (
            best.load,
            best.last_assigned,
            best.id,
        ):
            best = s
    return best


def sql_open_to(agent: Agent, now: datetime) -> list[ColumnElement[bool]]:
    """:func:`refusal`'s tier and reservation steps as SQL conditions on ``Conversation``
    (for picking in the database); capacity is the caller's (``claims.claim_next``)."""
    conds: list[ColumnElement[bool]] = [
        or_(
            Conversation.reserved_agent_id.is_(None),
            Conversation.reserved_agent_id == agent.id,
            Conversation.reserved_until.is_(None),
            Conversation.reserved_until <= now,
        )
    ]
    tiers = parse_tiers(agent.tiers)
    if tiers is not None:
        conds.append(Conversation.tier.in_(sorted(tiers)))
    return conds


_AGENT_KEYS, _AGENT_COLS = direct.columns(Agent, "a")


def _online_slots_statement() -> direct.Statement:
    loads = (
        select(Conversation.agent_id, func.count().label("n"))
        .where(Conversation.status == ASSIGNED)
        .group_by(Conversation.agent_id)
        .subquery()
    )
    # The latest assignment per online agent, as one index seek each
    # (ix_conversations_agent_assigned), not a grouping of every chat ever held.
    last = (
        select(func.max(Conversation.assigned_at))
        .where(Conversation.agent_id == Agent.id)
        .correlate(Agent)
        .scalar_subquery()
    )
    return direct.Statement(
        select(*_AGENT_COLS, func.coalesce(loads.c.n, 0), last)
        .select_from(Agent)
        .outerjoin(loads, loads.c.agent_id == Agent.id)
        .where(Agent.online.is_(True), Agent.active.is_(True))
        .order_by(Agent.id)
    )


# Built once: read for every chat queued, paged, claimed or offered, on the driver's
# connection; the agents become the session's instances as the ORM would load them.
_ONLINE_SLOTS = _online_slots_statement()


async def online_slots(session: AsyncSession) -> dict[int, tuple[Agent, AgentSlot]]:
    """Every online active agent with their current load, by id."""
    out: dict[int, tuple[Agent, AgentSlot]] = {}
    k = len(_AGENT_KEYS)
    # Outside a transaction it begins none (PostgreSQL: a VIP's page plans outside one),
    # and the chats planned at the same time share the read (direct.rows_shared).
    for row in await _ONLINE_SLOTS.rows_shared(session, {}):
        a = direct.attach(session, Agent, _AGENT_KEYS, row[:k])
        assert a is not None
        n, at = row[k], row[k + 1]
        at_s = priority.epoch_seconds(at) if at is not None else -math.inf
        out[a.id] = (a, AgentSlot(a.id, int(n), a.max_chats, parse_tiers(a.tiers), at_s))
    return out
