"""Telling people about tier changes: the customer on an upgrade, the account manager when
the top tier is gained or lost.

Rescoring writes each change to ``tier_changes`` with ``notice = 'pending'`` when someone is to
be told (``routing.scoring.rescoring.notice_for``); ``send_pending`` is the sweep that sends them
through a ``TierNotifier`` (the bot implements it with aiogram; the domain never imports it).
The database is the outbox: a change made by ``contactbot score`` while the bot is down is
announced when the bot's sweep next runs.

A notice is decided at send time, per customer, from what is true then, not from the row as it
was written: of a customer's open notices only the newest is kept (the others are marked
``superseded``), and it names the customer's *current* tier, compared with the tier they had
when they were last told (the baseline). So after any run of changes nobody could be told of,
the customer gets one notice at most (an upgrade over the baseline), the account manager one
(the top tier gained or lost over their baseline), and nothing when the tier went back to
where it was (``unchanged``) or the news is over ``max_age`` old (``stale``).

The customer's part waits (``waiting``) while it cannot be delivered: they have not linked a
Telegram account yet, or they are in an open conversation with the contact centre (a "you
are now VIP" in the middle of a chat with an agent reads as part of that chat). The account
manager's part does not wait; ``waiting`` means that part is settled.

A customer's open notices are claimed with one conditional UPDATE, so two sweeps never send
one twice: the second finds nothing left to claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Exists, Table, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.scoring.model import INITIAL
from routing.store import managers
from routing.store.models import Conversation, Customer, TierChange, open_chat_of

PENDING, SENDING, SENT, FAILED, NONE = "pending", "sending", "sent", "failed", "none"
# The customer's part waits for them to be reachable; the manager's part is settled.
WAITING = "waiting"
# Claimed by a sweep: from pending, from waiting (never committed: claim and outcome are
# written in the sweep's one transaction).
SENDING_WAITING = "sending_waiting"
# Dropped at send time, never sent: a newer notice replaces it; its news is over ``max_age``
# old; or there is nothing to tell (the tier is back to what they were last told).
SUPERSEDED, STALE, UNCHANGED = "superseded", "stale", "unchanged"
# Changes nobody was told of: looked past when finding what someone was last told.
_UNTOLD = (NONE, SUPERSEDED, STALE, UNCHANGED)

_TC: Table = TierChange.__table__  # type: ignore[assignment]


class TierNotifier(Protocol):
    async def send(self, telegram_id: int, text: str) -> bool:
        """Deliver ``text`` as plain text; False when it could not be delivered."""
        ...


def pick_text(texts: dict[str, str], language: str | None, policy: Policy) -> str | None:
    """The text in the customer's language (``en-GB`` falls back to ``en``), else the
    default language's, else None (that notice is switched off)."""
    if not texts:
        return None
    for lang in (
        language,
        (language or "").split("-")[0],
        policy.scoring.messages.default_language,
    ):
        if lang and lang in texts:
            return texts[lang]
    return next(iter(texts.values()))


async def resolve_manager(session: AsyncSession, manager: str) -> int | None:
    """The Telegram id of the account manager as the CRM names them (an agent's Telegram id
    or name): only a registered agent (``routing.store.managers``, the queue's rule too)."""
    agent = await managers.manager_of(session, manager)
    return agent.telegram_id if agent is not None else None


@dataclass(frozen=True)
class Change:
    """A row of ``tier_changes`` as the sweep sees it."""

    id: int
    from_tier: str | None
    to_tier: str
    notice: str | None
    kind: str | None
    changed_at: datetime


def told_tier(history: Sequence[Change], start: int) -> str:
    """The tier someone was last told of, before ``history[start]``: its ``from_tier``, or
    further back past changes nobody was told of (silent downgrades, dropped notices). A
    first grading, a sent or failed notice, or one settled in this sweep ends the walk."""
    tier = history[start].from_tier or ""
    for change in reversed(history[:start]):
        if change.notice not in _UNTOLD or change.kind == INITIAL:
            break
        tier = change.from_tier or ""
    return tier


def _open_chat(customer_id: Any) -> Exists:
    return select(Conversation.id).where(open_chat_of(customer_id)).exists()


async def send_pending(
    session: AsyncSession,
    notifier: TierNotifier,
    policy: Policy,
    now: datetime,
    *,
    limit: int = 200,
    max_age: timedelta = timedelta(days=7),
) -> int:
    """Settle the open notices of up to ``limit`` customers; returns how many notices were
    settled (sent, failed or dropped; those left waiting are not counted).

    Customers whose only open notices are waiting, and who still cannot be told, are not
    picked, so they never crowd out new notices. News older than ``max_age`` is dropped as
    stale: a week-old "you are now VIP" helps no one.
    """
    cutoff = now - max_age
    tc = _TC.c
    due = (
        select(Customer.id)
        .join(_TC, tc.customer_id == Customer.id)
        .where(tc.notice.in_((PENDING, WAITING)))
        .group_by(Customer.id, Customer.telegram_id)
        .having(
            or_(
                func.sum(case((tc.notice == PENDING, 1), else_=0)) > 0,
                func.max(tc.changed_at) < cutoff,
                and_(Customer.telegram_id.is_not(None), ~_open_chat(Customer.id)),
            )
        )
        .order_by(func.min(tc.id))
        .limit(limit)
    )
    handled = 0
    for customer_id in list(await session.scalars(due)):
        handled += await _settle(session, notifier, policy, now, customer_id, max_age)
    return handled


async def _settle(
    session: AsyncSession,
    notifier: TierNotifier,
    policy: Policy,
    now: datetime,
    customer_id: int,
    max_age: timedelta,
) -> int:
    tc = _TC.c
    # The claim: every open notice of the customer, in one conditional UPDATE. A second sweep
    # blocks on these rows (PostgreSQL) or on the database (SQLite), then finds none open.
    claimed = set(
        await session.scalars(
            update(_TC)
            .where(tc.customer_id == customer_id, tc.notice.in_((PENDING, WAITING)))
            .values(notice=case((tc.notice == PENDING, SENDING), else_=SENDING_WAITING))
            .returning(tc.id)
        )
    )
    if not claimed:
        return 0  # another sweep has them
    rows = await session.execute(
        select(tc.id, tc.from_tier, tc.to_tier, tc.notice, tc.kind, tc.changed_at)
        .where(tc.customer_id == customer_id, tc.id <= max(claimed))
        .order_by(tc.id.desc())
        .limit(len(claimed) + 100)
    )
    history = [Change(*row) for row in reversed(rows.all())]
    first = next(i for i, c in enumerate(history) if c.id in claimed)
    group = [c for c in history if c.id in claimed]
    newest, older = group[-1], [c.id for c in group[:-1]]
    customer = (
        await session.execute(
            select(Customer)
            .where(Customer.id == customer_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()

    if now - newest.changed_at > max_age:
        await _mark(session, claimed, STALE, now)
        return len(claimed)

    current, top, m = customer.tier, policy.tiers[0].name, policy.scoring.messages
    fields: dict[str, object] = {
        "name": customer.name or customer.external_id or "",
        "tier": current,
        "external_id": customer.external_id or "",
        "to_tier": current,
        "score": round(customer.score or 0.0, 1),
    }
    # The customer: an upgrade over the tier they were last told of.
    was = told_tier(history, first)
    to_customer = None
    if policy.rank(current) < policy.rank(was):
        text = pick_text(m.upgrade, customer.language, policy)
        to_customer = text.format(**fields, from_tier=was) if text else None
    # The account manager: the top tier gained or lost since their last notice. Notices
    # left waiting have had their manager's part already.
    to_manager = None
    fresh = next((i for i, c in enumerate(history) if c.notice == SENDING), None)
    if fresh is not None and customer.account_manager:
        was_m = told_tier(history, fresh)
        if was_m != current and top in (was_m, current):
            up = policy.rank(current) < policy.rank(was_m)
            text = pick_text(m.manager_vip_upgrade if up else m.manager_vip_downgrade, None, policy)
            to_manager = text.format(**fields, from_tier=was_m) if text else None

    wait = to_customer is not None and (
        customer.telegram_id is None or bool(await session.scalar(select(_open_chat(customer.id))))
    )
    ok = True
    if to_customer is not None and customer.telegram_id is not None and not wait:
        ok = await notifier.send(customer.telegram_id, to_customer)
    if to_manager is not None:
        target = await resolve_manager(session, customer.account_manager or "")
        ok = target is not None and await notifier.send(target, to_manager) and ok
    if wait:
        # Not now: not on Telegram yet, or in a chat with the contact centre. The manager's
        # part is settled; the sweep comes back for the customer's.
        await session.execute(update(_TC).where(tc.id.in_(claimed)).values(notice=WAITING))
        return 0
    await _mark(session, older, SUPERSEDED, now)
    if to_customer is None and to_manager is None:
        status = UNCHANGED if was == current else STALE
    else:
        status = SENT if ok else FAILED
    await _mark(session, [newest.id], status, now)
    return len(claimed)


async def _mark(session: AsyncSession, ids: Any, status: str, now: datetime) -> None:
    if ids:
        await session.execute(
            update(_TC).where(_TC.c.id.in_(list(ids))).values(notice=status, notified_at=now)
        )
