"""Customers: identification (Telegram id, shared contact, customer code) and rescoring.

Functions take an ``AsyncSession`` and run inside the caller's transaction, so a caller can
combine several steps into one unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.models import OPEN_STATUSES, Conversation, Customer, Survey
from routing.phones import normalize_phone
from routing.policy import Policy
from routing.rescoring import RescoreResult, TierChangeView, rescore

__all__ = [
    "LinkResult",
    "LinkStatus",
    "RescoreResult",
    "TierChangeView",
    "by_telegram_id",
    "ensure_customer",
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
    session.add(guest)
    await session.flush()
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
    await _link(session, customer, telegram_id, now)
    return LinkResult(LinkStatus.LINKED, customer)


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
    await _link(session, customer, telegram_id, now)
    return LinkResult(LinkStatus.LINKED, customer)


async def _link(session: AsyncSession, customer: Customer, telegram_id: int, now: datetime) -> None:
    if customer.telegram_id == telegram_id:
        return
    guest = await by_telegram_id(session, telegram_id)
    if guest is not None and guest.id != customer.id:
        await _absorb_guest(session, guest, customer)
    customer.telegram_id = telegram_id
    customer.updated_at = now
    await session.flush()


async def _absorb_guest(session: AsyncSession, guest: Customer, customer: Customer) -> None:
    """Hand a guest's history to the customer they turned out to be."""
    customer_has_open = (
        await session.execute(
            select(Conversation.id).where(
                Conversation.customer_id == customer.id, Conversation.status.in_(OPEN_STATUSES)
            )
        )
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
