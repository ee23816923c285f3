"""Customers: identification (Telegram id, shared contact, customer code) and rescoring.

Identity rests on what a stranger cannot produce: the customer's own shared contact (Telegram
vouches for ``contact.user_id``) or a one-time invitation (routing.customers.invitations). A typed
customer code is guessable (CRM ids), so it is a policy opt-in, rate-limited per Telegram
user and overall (:func:`code_attempt_allowed`), and never takes over a linked account.

Functions take an ``AsyncSession`` and run inside the caller's transaction, so a caller can
combine several steps into one unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from routing.customers.phones import normalize_phone
from routing.policy.root import Policy
from routing.scoring.rescoring import RescoreResult, TierChangeView, rescore
from routing.store.models import (
    OPEN_STATUSES,
    CodeAttempt,
    Conversation,
    Customer,
    Survey,
    open_chat_of,
)

__all__ = [
    "LinkResult",
    "LinkStatus",
    "RescoreResult",
    "TierChangeView",
    "by_telegram_id",
    "code_attempt_allowed",
    "ensure_customer",
    "link",
    "link_by_code",
    "link_by_phone",
    "rescore",
]


class LinkStatus(StrEnum):
    LINKED = "linked"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    TAKEN = "taken"


@dataclass(frozen=True)
class LinkResult:
    status: LinkStatus
    customer: Customer | None = None
    # A relink: the Telegram user the customer was linked to until now (to be told).
    previous_telegram_id: int | None = None


async def by_telegram_id(session: AsyncSession, telegram_id: int) -> Customer | None:
    return (
        await session.execute(select(Customer).where(Customer.telegram_id == telegram_id))
    ).scalar_one_or_none()


async def ensure_customer(
    session: AsyncSession,
    telegram_id: int,
    *,
    name: str | None,
    language: str | None,
    policy: Policy,
    now: datetime,
) -> Customer:
    """The customer linked to this Telegram user, or a guest row created for them.

    Guests get a row so that their conversations and transcripts have an owner; they are
    served at the lowest tier until they identify.
    """
    customer = await by_telegram_id(session, telegram_id)
    if customer is not None:
        return customer
    guest = Customer(
        telegram_id=telegram_id,
        name=name,
        language=language,
        tier=policy.lowest_tier,
        is_guest=True,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(guest)
    except IntegrityError:
        # Another instance created this user's row first (two first updates at once).
        existing = await by_telegram_id(session, telegram_id)
        if existing is None:  # pragma: no cover - the unique index guarantees one exists
            raise
        return existing
    return guest


async def link_by_phone(
    session: AsyncSession,
    telegram_id: int,
    phone: str,
    *,
    policy: Policy,
    now: datetime,
) -> LinkResult:
    """Link the Telegram user to the imported customer with this phone number.

    The caller must have checked that the contact is the sender's own (contact.user_id):
    a phone number is proof of identity only when Telegram vouches it is the user's.
    """
    e164 = normalize_phone(phone, policy.identification.default_region)
    if e164 is None:
        return LinkResult(LinkStatus.INVALID)
    customer = (
        await session.execute(
            select(Customer)
            .where(Customer.phone == e164, Customer.is_guest.is_(False))
            .order_by(Customer.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if customer is None:
        return LinkResult(LinkStatus.NOT_FOUND)
    previous = await link(session, customer, telegram_id, now)
    return LinkResult(LinkStatus.LINKED, customer, previous)


async def code_attempt_allowed(
    session: AsyncSession, telegram_id: int, *, policy: Policy, now: datetime
) -> bool:
    """Count one customer-code lookup against the limits; False (nothing recorded) when the
    user or everyone together is over ``[identification]``'s limits.

    Rows live in the database so that every instance shares the limits; a user's updates
    are handled one at a time (the per-chat lock), so the per-user limit is exact; the overall
    one may be passed by the number of lookups running at the same moment. Rows older than
    both windows are deleted on the way.
    """
    ident = policy.identification
    user_since = now - timedelta(minutes=ident.code_user_window_minutes)
    overall_since = now - timedelta(seconds=ident.code_overall_window_seconds)
    await session.execute(
        delete(CodeAttempt).where(CodeAttempt.attempted_at <= min(user_since, overall_since))
    )
    mine = await session.scalar(
        select(func.count())
        .select_from(CodeAttempt)
        .where(CodeAttempt.telegram_id == telegram_id, CodeAttempt.attempted_at > user_since)
    )
    if (mine or 0) >= ident.code_attempts_per_user:
        return False
    everyone = await session.scalar(
        select(func.count())
        .select_from(CodeAttempt)
        .where(CodeAttempt.attempted_at > overall_since)
    )
    if (everyone or 0) >= ident.code_attempts_overall:
        return False
    session.add(CodeAttempt(telegram_id=telegram_id, attempted_at=now))
    await session.flush()
    return True


async def link_by_code(
    session: AsyncSession, telegram_id: int, code: str, *, now: datetime
) -> LinkResult:
    """Link by customer code (the CRM's external id).

    A code is weaker proof than a phone Telegram vouches for, so it may not take over an
    account already linked to another Telegram user: that person must share their phone.
    """
    code = code.strip()
    if not code or len(code) > 64:
        return LinkResult(LinkStatus.INVALID)
    customer = (
        await session.execute(select(Customer).where(Customer.external_id == code))
    ).scalar_one_or_none()
    if customer is None:
        return LinkResult(LinkStatus.NOT_FOUND)
    if customer.telegram_id is not None and customer.telegram_id != telegram_id:
        return LinkResult(LinkStatus.TAKEN)
    await link(session, customer, telegram_id, now)
    return LinkResult(LinkStatus.LINKED, customer)


async def link(
    session: AsyncSession, customer: Customer, telegram_id: int, now: datetime
) -> int | None:
    """Link the Telegram user to ``customer``; returns the Telegram user it was linked to
    until now (a relink), else None.

    The sender's guest row hands its history over; an imported customer the sender was
    linked to before is only unlinked (their history stays theirs)."""
    if customer.telegram_id == telegram_id:
        return None
    previous = customer.telegram_id
    current = await by_telegram_id(session, telegram_id)
    if current is not None and current.id != customer.id:
        if current.is_guest:
            await _absorb_guest(session, current, customer)
        else:
            current.telegram_id = None
            current.updated_at = now
            await session.flush()
    customer.telegram_id = telegram_id
    customer.updated_at = now
    await session.flush()
    return previous


async def _absorb_guest(session: AsyncSession, guest: Customer, customer: Customer) -> None:
    """Hand a guest's history to the customer they turned out to be."""
    customer_has_open = (
        await session.execute(select(Conversation.id).where(open_chat_of(customer.id)))
    ).first() is not None
    moved = update(Conversation).where(Conversation.customer_id == guest.id)
    if customer_has_open:
        # The unique open-conversation index allows one; the guest's open chat stays theirs.
        moved = moved.where(Conversation.status.not_in(OPEN_STATUSES))
    await session.execute(moved.values(customer_id=customer.id))
    await session.execute(
        update(Survey).where(Survey.customer_id == guest.id).values(customer_id=customer.id)
    )
    guest.telegram_id = None
    await session.flush()
