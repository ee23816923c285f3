"""One-time invitations: a deep link ``https://t.me/<bot>?start=<token>`` that identifies
whoever opens it as one customer.

The token is random (``secrets.token_urlsafe(24)``: 32 characters of ``A-Za-z0-9_-``, which
Telegram's start parameter accepts), single-use and expiring. Only its SHA-256 is stored, so
neither a database copy nor a backup hands out accounts. Redemption is one conditional
UPDATE: of two people opening the same link at once exactly one gets the account. An
unknown, used and expired token fail alike
(:data:`~routing.customers.identity.LinkStatus.NOT_FOUND`),
so the reply tells a guesser nothing.

Functions take an ``AsyncSession`` and run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.customers.identity import LinkResult, LinkStatus, link
from routing.spreadsheet import spreadsheet_safe
from routing.store.models import Customer, Invitation

__all__ = [
    "CSV_COLUMNS",
    "NewInvitation",
    "create",
    "create_for_customer",
    "create_for_tier",
    "csv_rows",
    "deep_link",
    "hash_token",
    "is_token",
    "parse_duration",
    "redeem",
    "spreadsheet_safe",
]

# Telegram's start parameter: up to 64 characters of A-Za-z0-9_-.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TOKEN_BYTES = 24  # 32 characters: 192 random bits
_DURATION_RE = re.compile(r"\s*(\d{1,6})\s*([mhdw])\s*", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_TTL = timedelta(days=365)
CSV_COLUMNS = ("external_id", "name", "link", "expires_at")


@dataclass(frozen=True)
class NewInvitation:
    """A freshly made invitation: the raw token exists only here, never in the database."""

    token: str
    customer_id: int
    external_id: str | None
    name: str | None
    expires_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_token(text: str) -> bool:
    """Whether ``text`` could be an invitation token (what a deep link's start parameter is)."""
    return _TOKEN_RE.fullmatch(text) is not None


def deep_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username.lstrip('@')}?start={token}"


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> a timedelta (positive, at most a year)."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad duration {text!r}: use a number and m, h, d or w (e.g. 7d)")
    ttl = timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"bad duration {text!r}: between 1 minute and 365 days")
    return ttl


async def create(
    session: AsyncSession,
    customer: Customer,
    *,
    now: datetime,
    ttl: timedelta,
    created_by: str | None = None,
) -> NewInvitation:
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    expires_at = now + ttl
    session.add(
        Invitation(
            token_hash=hash_token(token),
            customer_id=customer.id,
            created_at=now,
            expires_at=expires_at,
            created_by=created_by,
        )
    )
    await session.flush()
    return NewInvitation(token, customer.id, customer.external_id, customer.name, expires_at)


async def create_for_customer(
    session: AsyncSession,
    external_id: str,
    *,
    now: datetime,
    ttl: timedelta,
    created_by: str | None = None,
) -> NewInvitation | None:
    """An invitation for the customer with this external id (None: no such customer)."""
    customer = (
        await session.execute(select(Customer).where(Customer.external_id == external_id))
    ).scalar_one_or_none()
    if customer is None:
        return None
    return await create(session, customer, now=now, ttl=ttl, created_by=created_by)


async def create_for_tier(
    session: AsyncSession,
    tier: str,
    *,
    now: datetime,
    ttl: timedelta,
    created_by: str | None = None,
) -> list[NewInvitation]:
    """One invitation for every imported (non-guest) customer of ``tier``, by external id."""
    members = (
        await session.execute(
            select(Customer)
            .where(Customer.tier == tier, Customer.is_guest.is_(False))
            .order_by(Customer.external_id, Customer.id)
        )
    ).scalars()
    return [
        await create(session, c, now=now, ttl=ttl, created_by=created_by) for c in list(members)
    ]


def csv_rows(invites: Sequence[NewInvitation], bot_username: str) -> list[list[str]]:
    """Rows for a mail merge (:data:`CSV_COLUMNS`), every cell spreadsheet-safe."""
    return [
        [
            spreadsheet_safe(cell)
            for cell in (
                inv.external_id or "",
                inv.name or "",
                deep_link(bot_username, inv.token),
                inv.expires_at.isoformat(timespec="seconds"),
            )
        ]
        for inv in invites
    ]


async def redeem(
    session: AsyncSession, token: str, telegram_id: int, *, now: datetime
) -> LinkResult:
    """Use the invitation: link ``telegram_id`` to its customer, once.

    One conditional UPDATE marks it used only if it is unused and unexpired; a zero-row
    result means unknown, used or expired (one status for all three). A relink (the customer
    was linked to another Telegram user) carries that user in ``previous_telegram_id``.
    """
    if not is_token(token):
        return LinkResult(LinkStatus.NOT_FOUND)
    customer_id = (
        await session.execute(
            update(Invitation)
            .where(
                Invitation.token_hash == hash_token(token),
                Invitation.used_at.is_(None),
                Invitation.expires_at > now,
            )
            .values(used_at=now, used_by=telegram_id)
            .returning(Invitation.customer_id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if customer_id is None:
        # Opened again by the person who used it, still linked: they are who they were.
        mine = (
            await session.execute(
                select(Customer)
                .join(Invitation, Invitation.customer_id == Customer.id)
                .where(
                    Invitation.token_hash == hash_token(token),
                    Invitation.used_by == telegram_id,
                    Customer.telegram_id == telegram_id,
                )
            )
        ).scalar_one_or_none()
        if mine is not None:
            return LinkResult(LinkStatus.LINKED, mine)
        return LinkResult(LinkStatus.NOT_FOUND)
    customer = await session.get(Customer, customer_id)
    if customer is None:  # pragma: no cover - the foreign key keeps it
        return LinkResult(LinkStatus.NOT_FOUND)
    previous = await link(session, customer, telegram_id, now)
    return LinkResult(LinkStatus.LINKED, customer, previous)
