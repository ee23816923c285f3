"""Agents: registration, removal, lookups.

Whom to page for a chat is ``routing.queue.assignment``'s; who an account manager is,
``routing.store.managers`` (re-exported here as :func:`find_manager` and :func:`manager_of`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.queue import claims
from routing.store.care_models import (
    CARE_OPEN,
    CARE_SNOOZED,
    CARE_STARTED,
    CareTask,
    Complaint,
    ComplaintEvent,
)
from routing.store.managers import find_manager as find_manager
from routing.store.managers import manager_of as manager_of
from routing.store.models import (
    ASSIGNED,
    Agent,
    Conversation,
    Delivery,
    Message,
    QueueOffer,
    Survey,
)

ROLES = ("agent", "supervisor")
# What the columns hold: agents.telegram_id is a signed 64-bit integer, agents.max_chats a
# signed 32-bit one, agents.name a String(100).
MAX_TELEGRAM_ID = 2**63 - 1
MAX_NAME_LENGTH = 100
MAX_CHATS_LIMIT = 2**31 - 1


class AgentError(Exception):
    pass


class AgentNotFound(AgentError):
    pass


def check_telegram_id(telegram_id: int) -> None:
    """Refuse what the database cannot store (and what Telegram never issues)."""
    if not 0 < telegram_id <= MAX_TELEGRAM_ID:
        raise AgentError(
            "TELEGRAM_ID must be a positive integer below 2^63 (the agent's Telegram user id), "
            f"not {telegram_id}"
        )


def check_name(name: str) -> str:
    """The name as stored: stripped, non-empty, at most 100 characters, no control characters."""
    name = name.strip()
    if not name:
        raise AgentError("--name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise AgentError(f"--name must be at most {MAX_NAME_LENGTH} characters, not {len(name)}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise AgentError("--name must not contain control characters (tabs, newlines, escapes)")
    return name


async def name_clash(session: AsyncSession, name: str, telegram_id: int) -> Agent | None:
    """Another agent (active or removed) whose name equals ``name`` regardless of case."""
    key = name.casefold()
    stmt = select(Agent).where(Agent.telegram_id != telegram_id)
    others = (await session.execute(stmt)).scalars()
    return next((a for a in others if a.name.casefold() == key), None)


async def add_agent(
    session: AsyncSession,
    telegram_id: int,
    name: str,
    *,
    role: str = "agent",
    max_chats: int = 3,
    now: datetime,
) -> tuple[Agent, bool]:
    """Register an agent, or update an existing one's name, role and capacity.

    Returns (agent, created).
    """
    if role not in ROLES:
        raise AgentError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    check_telegram_id(telegram_id)
    if not 1 <= max_chats <= MAX_CHATS_LIMIT:
        raise AgentError(f"--max-chats must be between 1 and {MAX_CHATS_LIMIT}, not {max_chats}")
    name = check_name(name)
    clash = await name_clash(session, name, telegram_id)
    if clash is not None:
        state = "" if clash.active else "removed "
        raise AgentError(
            f"the name {name!r} is taken by {state}agent {clash.name!r} ({clash.telegram_id}): "
            "agent names are unique regardless of case"
        )
    existing = await by_telegram_id(session, telegram_id, include_inactive=True)
    if existing is not None:
        existing.name, existing.role, existing.max_chats = name, role, max_chats
        existing.active = True
        try:
            await session.flush()
        except IntegrityError as exc:  # pragma: no cover - a concurrent add of the same name
            raise AgentError(f"the name {name!r} was taken concurrently") from exc
        return existing, False
    agent = Agent(
        telegram_id=telegram_id,
        name=name,
        role=role,
        max_chats=max_chats,
        online=False,
        active=True,
        created_at=now,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError as exc:  # pragma: no cover - a concurrent add of the id or name
        raise AgentError(
            f"agent {telegram_id} or the name {name!r} was added concurrently"
        ) from exc
    return agent, True


@dataclass(frozen=True)
class Removal:
    """What ``remove_agent`` did: deleted the row, or deactivated it (kept for the history
    of the conversations that name it), and which chats went back to the queue."""

    telegram_id: int
    name: str
    deleted: bool
    requeued: int
    already_removed: bool = False


async def remove_agent(session: AsyncSession, telegram_id: int) -> Removal:
    """Remove an agent: their open chats go back to the front of the queue (database only:
    the customers are told nothing from here), then the agent is deleted, or only
    deactivated when any conversation, transcript, offer, survey, delivery, complaint or
    care task names them. Their care tasks still to do go to the pool.

    A deactivated agent is no longer an agent to the bot (every lookup skips inactive ones)
    and `agents add` with their Telegram id brings them back."""
    check_telegram_id(telegram_id)
    agent = await by_telegram_id(session, telegram_id, include_inactive=True)
    if agent is None:
        raise AgentNotFound(f"no agent with TELEGRAM_ID {telegram_id}")
    if not agent.active:
        return Removal(telegram_id, agent.name, False, 0, already_removed=True)
    # Asked before the requeue, which clears the open chats' agent_id.
    referenced = await _referenced(session, agent.id)
    requeued = await claims.requeue_agent(session, agent)
    # Their care tasks still to do go to the pool: assigned to someone who is gone, nobody
    # would be reminded of a VIP's follow-up. Done ones keep the name, as history.
    await session.execute(
        update(CareTask)
        .where(
            CareTask.agent_id == agent.id,
            CareTask.status.in_((CARE_OPEN, CARE_SNOOZED, CARE_STARTED)),
        )
        .values(agent_id=None)
    )
    agent.active = False
    agent.online = False
    agent.focus_conversation_id = None
    if referenced:
        await session.flush()
        return Removal(telegram_id, agent.name, False, len(requeued))
    await session.delete(agent)
    await session.flush()
    return Removal(telegram_id, agent.name, True, len(requeued))


async def _referenced(session: AsyncSession, agent_id: int) -> bool:
    """Whether any row names the agent (most of these columns carry no foreign key)."""
    c = Conversation
    checks = [
        select(c.id).where(
            or_(
                c.agent_id == agent_id,
                c.reserved_agent_id == agent_id,
                c.offered_agent_id == agent_id,
                c.transferred_by == agent_id,
            )
        ),
        select(Message.id).where(Message.agent_id == agent_id),
        select(QueueOffer.id).where(QueueOffer.agent_id == agent_id),
        select(Survey.id).where(Survey.agent_id == agent_id),
        select(Delivery.id).where(Delivery.agent_id == agent_id),
        # Complaints, their events and care tasks done name whoever handled them: deleting
        # the row would let a later agent take over the id (SQLite reuses the largest) and
        # with it that history.
        select(Complaint.id).where(Complaint.agent_id == agent_id),
        select(ComplaintEvent.id).where(ComplaintEvent.agent_id == agent_id),
        select(CareTask.id).where(CareTask.agent_id == agent_id),
    ]
    for stmt in checks:
        if (await session.execute(stmt.limit(1))).first() is not None:
            return True
    return False


async def by_telegram_id(
    session: AsyncSession, telegram_id: int, *, include_inactive: bool = False
) -> Agent | None:
    stmt = select(Agent).where(Agent.telegram_id == telegram_id)
    if not include_inactive:
        stmt = stmt.where(Agent.active.is_(True))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_agents(session: AsyncSession) -> list[tuple[Agent, int]]:
    """Every active agent with their count of open (assigned) chats."""
    load = (
        select(Conversation.agent_id, func.count().label("n"))
        .where(Conversation.status == ASSIGNED)
        .group_by(Conversation.agent_id)
        .subquery()
    )
    rows = await session.execute(
        select(Agent, func.coalesce(load.c.n, 0))
        .outerjoin(load, load.c.agent_id == Agent.id)
        .where(Agent.active.is_(True))
        .order_by(Agent.name)
    )
    return [(a, int(n)) for a, n in rows.all()]


async def by_name(session: AsyncSession, ref: str) -> Agent | None:
    """The one active agent with this name (any case) or Telegram id, for /transfer NAME.

    None if there is none, or more than one: a transfer never guesses between agents."""
    active = list((await session.execute(select(Agent).where(Agent.active.is_(True)))).scalars())
    ref = ref.strip()
    if ref.isdigit():
        matches = [a for a in active if a.telegram_id == int(ref)]
    else:
        key = ref.casefold()
        matches = [a for a in active if a.name.casefold() == key]
    return matches[0] if len(matches) == 1 else None
