"""Telling people about tier changes: the customer on an upgrade, the account manager when
the top tier is gained or lost.

Rescoring writes each change to ``tier_changes`` with ``notice = 'pending'`` when someone is to
be told (``routing.rescoring.notice_for``); ``send_pending`` is the sweep that sends them
through a ``TierNotifier`` (the bot implements it with aiogram; the domain never imports it).
The database is the outbox: a change made by ``contactbot score`` while the bot is down is
announced when the bot's sweep next runs, and each notice is claimed atomically, so two
instances never send it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.models import Agent, Customer, TierChange
from routing.policy import Policy

PENDING, SENDING, SENT, FAILED, NONE = "pending", "sending", "sent", "failed", "none"


class TierNotifier(Protocol):
    async def send(self, telegram_id: int, text: str) -> bool:
        """Deliver ``text`` as plain text; False when it could not be delivered."""
        ...


@dataclass(frozen=True)
class Notice:
    change_id: int
    customer_tg: int | None
    manager: str | None
    language: str | None
    fields: dict[str, object]
    upgrade: bool
    top_changed: bool


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


def compose(n: Notice, policy: Policy) -> list[tuple[str, str]]:
    """What to send to whom: [("customer" | "manager", text)]."""
    m = policy.scoring.messages
    out: list[tuple[str, str]] = []
    if n.upgrade and n.customer_tg is not None:
        text = pick_text(m.upgrade, n.language, policy)
        if text:
            out.append(("customer", text.format(**n.fields)))
    if n.top_changed and n.manager:
        texts = m.manager_vip_upgrade if n.upgrade else m.manager_vip_downgrade
        text = pick_text(texts, None, policy)
        if text:
            out.append(("manager", text.format(**n.fields)))
    return out


async def resolve_manager(session: AsyncSession, manager: str) -> int | None:
    """An account manager as the CRM names them: a Telegram id, or an agent's name."""
    manager = manager.strip()
    if manager.isdigit():
        return int(manager)
    return (
        await session.execute(
            select(Agent.telegram_id)
            .where(func.lower(Agent.name) == manager.lower(), Agent.active.is_(True))
            .limit(1)
        )
    ).scalar_one_or_none()


async def send_pending(
    session: AsyncSession,
    notifier: TierNotifier,
    policy: Policy,
    now: datetime,
    *,
    limit: int = 200,
    max_age: timedelta = timedelta(days=7),
) -> int:
    """Send up to ``limit`` pending notices; returns how many were handled. Notices older than
    ``max_age`` are dropped as stale (marked failed): a week-old "you are now VIP" helps no one.
    """
    rows = (
        await session.execute(
            select(TierChange, Customer)
            .join(Customer, Customer.id == TierChange.customer_id)
            .where(TierChange.notice == PENDING)
            .order_by(TierChange.id)
            .limit(limit)
        )
    ).all()
    top = policy.tiers[0].name
    handled = 0
    for change, customer in rows:
        claimed = await session.execute(
            update(TierChange)
            .where(TierChange.id == change.id, TierChange.notice == PENDING)
            .values(notice=SENDING)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another instance has it
        handled += 1
        if now - change.changed_at > max_age:
            await _mark(session, change.id, FAILED, now)
            continue
        notice = Notice(
            change_id=change.id,
            customer_tg=customer.telegram_id,
            manager=customer.account_manager,
            language=customer.language,
            fields={
                "name": customer.name or customer.external_id or "",
                "tier": change.to_tier,
                "external_id": customer.external_id or "",
                "from_tier": change.from_tier or "",
                "to_tier": change.to_tier,
                "score": round(change.score or 0.0, 1),
            },
            upgrade=policy.rank(change.to_tier) < policy.rank(change.from_tier or ""),
            top_changed=top in (change.from_tier, change.to_tier),
        )
        ok = True
        for who, text in compose(notice, policy):
            target = customer.telegram_id
            if who == "manager":
                target = await resolve_manager(session, customer.account_manager or "")
            if target is None:
                ok = False
                continue
            ok = await notifier.send(target, text) and ok
        await _mark(session, change.id, SENT if ok else FAILED, now)
    return handled


async def _mark(session: AsyncSession, change_id: int, status: str, now: datetime) -> None:
    await session.execute(
        update(TierChange).where(TierChange.id == change_id).values(notice=status, notified_at=now)
    )
