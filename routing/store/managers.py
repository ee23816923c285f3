"""Who a customer's account manager is: the one reading of the CRM's ``account_manager``.

The CRM names the manager by an agent's Telegram id or by their name (any case). Only a
registered, active agent is a manager: a value no agent answers to names nobody, whether it
is a name or a number. The queue (manager-first window, paging), the tier notices, service
recovery and relink notes all ask here. It lives in the store room so that both the queue
and scoring rooms (which may not import each other) can use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store.models import Agent


def find_manager(agents: Iterable[Agent], account_manager: str | None) -> Agent | None:
    """The agent among ``agents`` the CRM's ``account_manager`` names: their Telegram id
    (digits), else their name regardless of case; None when none of them is."""
    if not account_manager:
        return None
    ref = account_manager.strip()
    if ref.isdigit():
        return next((a for a in agents if a.telegram_id == int(ref)), None)
    low = ref.casefold()
    return next((a for a in agents if a.name.casefold() == low), None)


async def manager_of(session: AsyncSession, account_manager: str | None) -> Agent | None:
    """The registered (active) agent who is this account manager, or None."""
    if not account_manager or not account_manager.strip():
        return None
    active = (await session.execute(select(Agent).where(Agent.active.is_(True)))).scalars()
    return find_manager(active, account_manager)
