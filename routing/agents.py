"""Agents: registration, presence, and who to page for a conversation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.models import ASSIGNED, Agent, Conversation, Customer

ROLES = ("agent", "supervisor")


class AgentError(Exception):
    pass


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
    if telegram_id <= 0:
        raise AgentError("TELEGRAM_ID must be a positive integer (the agent's Telegram user id)")
    if max_chats < 1:
        raise AgentError("--max-chats must be at least 1")
    name = name.strip()
    if not name:
        raise AgentError("--name must not be empty")
    existing = await by_telegram_id(session, telegram_id, include_inactive=True)
    if existing is not None:
        existing.name, existing.role, existing.max_chats = name, role, max_chats
        existing.active = True
        await session.flush()
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
    except IntegrityError as exc:  # pragma: no cover - a concurrent add of the same id
        raise AgentError(f"agent {telegram_id} was added concurrently") from exc
    return agent, True


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


async def page_targets(session: AsyncSession, customer: Customer) -> list[Agent]:
    """Online agents to notify of a new chat: the account manager first, then everyone else."""
    online = list(
        (
            await session.execute(
                select(Agent)
                .where(Agent.online.is_(True), Agent.active.is_(True))
                .order_by(Agent.id)
            )
        ).scalars()
    )
    manager = find_manager(online, customer.account_manager)
    if manager is None:
        return online
    return [manager, *(a for a in online if a.id != manager.id)]


async def by_name(session: AsyncSession, ref: str) -> Agent | None:
    """An active agent by name (any case) or Telegram id, for /transfer NAME."""
    active = list((await session.execute(select(Agent).where(Agent.active.is_(True)))).scalars())
    return find_manager(active, ref)


def find_manager(agents: list[Agent], account_manager: str | None) -> Agent | None:
    """Match the CRM's ``account_manager`` value: an agent's Telegram id, else their name."""
    if not account_manager:
        return None
    ref = account_manager.strip()
    if ref.isdigit():
        return next((a for a in agents if a.telegram_id == int(ref)), None)
    low = ref.casefold()
    return next((a for a in agents if a.name.casefold() == low), None)
