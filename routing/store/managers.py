"""Who a customer's account manager is: the one reading of the CRM's ``account_manager``.

The CRM names the manager by an agent's Telegram id or by their name (any case). Only a
registered, active agent is a manager: a value no agent answers to names nobody, whether it
is a name or a number. The queue (manager-first window, paging), the tier notices, service
recovery and relink notes all ask here. It lives in the store room so that both the queue
and scoring rooms (which may not import each other) can use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, String, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store import direct
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


_KEYS, _COLUMNS = direct.columns(Agent, "a")
# Built once: the manager is looked up on every VIP chat opened (issue 19). Loading every
# active agent through the ORM for it was a seventh of a VIP's first message.
_BY_TELEGRAM_ID = direct.Statement(
    select(*_COLUMNS).where(
        Agent.active.is_(True), Agent.telegram_id == bindparam("tid", type_=BigInteger)
    )
)
# ``lower`` is what the unique index on names uses; on SQLite it folds ASCII letters only,
# so a name it does not find is looked for again by find_manager's own rule (below).
_BY_NAME = direct.Statement(
    select(*_COLUMNS).where(
        Agent.active.is_(True),
        func.lower(Agent.name) == func.lower(bindparam("name", type_=String)),
    )
)


async def manager_of(session: AsyncSession, account_manager: str | None) -> Agent | None:
    """The registered (active) agent who is this account manager, or None."""
    if not account_manager or not account_manager.strip():
        return None
    ref = account_manager.strip()
    if ref.isdigit():
        if int(ref).bit_length() > 63:
            return None  # no Telegram id is that long
        row = await _BY_TELEGRAM_ID.first(session, {"tid": int(ref)})
        return direct.attach(session, Agent, _KEYS, row) if row is not None else None
    row = await _BY_NAME.first(session, {"name": ref})
    if row is not None:
        found = direct.attach(session, Agent, _KEYS, row)
        if found is not None and find_manager([found], ref) is found:
            return found
    # Not found by the database's case folding (non-ASCII letters on SQLite, or a fold
    # such as "ß"/"ss" that ``lower`` does not make): the rule itself, over every agent.
    active = (await session.execute(select(Agent).where(Agent.active.is_(True)))).scalars()
    return find_manager(active, account_manager)
