"""One-time invitations and the customer-code limits, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from routing.customers import identity as customers
from routing.customers import invitations
from routing.customers.identity import LinkStatus
from routing.policy.root import parse_policy
from routing.store.models import Customer, Invitation
from tests.conftest import Db

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


async def _seed(db: Db, **kw: object) -> int:
    async with db.sessions() as s, s.begin():
        c = Customer(created_at=NOW, updated_at=NOW, **kw)
        s.add(c)
        await s.flush()
        return c.id


async def _invite(db: Db, external_id: str, ttl: timedelta = WEEK) -> str:
    async with db.sessions() as s, s.begin():
        made = await invitations.create_for_customer(
            s, external_id, now=NOW, ttl=ttl, created_by="test"
        )
    assert made is not None
    return made.token


async def _redeem(db: Db, token: str, user: int, now: datetime = NOW) -> customers.LinkResult:
    async with db.sessions() as s, s.begin():
        return await invitations.redeem(s, token, user, now=now)


async def test_an_invitation_links_once_and_fails_alike_when_used_expired_or_unknown(
    db: Db,
) -> None:
    await _seed(db, external_id="V1", name="Vic", tier="VIP")
    await _seed(db, external_id="C1", name="Cat", tier="C")
    token = await _invite(db, "V1")
    # Telegram's start parameter: A-Za-z0-9_- and at most 64 characters.
    assert invitations.is_token(token) and len(token) <= 64
    first = await _redeem(db, token, 11)
    assert first.status is LinkStatus.LINKED and first.customer is not None
    assert first.customer.telegram_id == 11 and first.previous_telegram_id is None
    used = await _redeem(db, token, 12)
    expiring = await _invite(db, "C1", ttl=timedelta(hours=1))
    expired = await _redeem(db, expiring, 12, now=NOW + timedelta(hours=1))
    unknown = await _redeem(db, "y" * 32, 12)
    junk = await _redeem(db, "not a token!", 12)
    assert used == expired == unknown == junk == customers.LinkResult(LinkStatus.NOT_FOUND)
    async with db.sessions() as s:
        inv = (await s.execute(select(Invitation).order_by(Invitation.id))).scalars().first()
        assert inv is not None and inv.used_by == 11 and inv.used_at == NOW
        assert inv.created_by == "test" and inv.expires_at == NOW + WEEK
        assert await customers.by_telegram_id(s, 12) is None


async def test_only_the_hash_is_stored(db: Db, tmp_path: Path) -> None:
    await _seed(db, external_id="V1", name="Vic", tier="VIP")
    token = await _invite(db, "V1")
    async with db.sessions() as s:
        rows = (await s.execute(text("SELECT * FROM invitations"))).all()
    assert len(rows) == 1
    assert all(token not in str(cell) for cell in rows[0])
    assert invitations.hash_token(token) in rows[0]
    if db.backend == "sqlite":
        await db.engine.dispose()  # checkpoints the WAL into the file
        files = Path(db.url.split("///", 1)[1]).parent.glob("test.db*")
        assert all(token.encode() not in f.read_bytes() for f in files)


async def test_concurrent_redemption_has_exactly_one_winner(db: Db) -> None:
    cid = await _seed(db, external_id="V1", name="Vic", tier="VIP")
    token = await _invite(db, "V1")
    users = list(range(100, 110))
    results = await asyncio.gather(*(_redeem(db, token, u) for u in users))
    winners = [u for u, r in zip(users, results, strict=True) if r.status is LinkStatus.LINKED]
    assert len(winners) == 1
    async with db.sessions() as s:
        customer = await s.get(Customer, cid)
        inv = (await s.execute(select(Invitation))).scalar_one()
        assert customer is not None and customer.telegram_id == winners[0] == inv.used_by


async def test_a_relink_reports_the_previous_user_and_keeps_their_other_account(db: Db) -> None:
    await _seed(db, external_id="V1", name="Vic", tier="VIP", telegram_id=21)
    other = await _seed(db, external_id="A1", name="Ann", tier="A", telegram_id=22)
    # User 22 (linked to A1) opens V1's invitation: V1 moves from 21 to 22, and A1 is only
    # unlinked, its history staying its own.
    result = await _redeem(db, await _invite(db, "V1"), 22)
    assert result.status is LinkStatus.LINKED and result.previous_telegram_id == 21
    async with db.sessions() as s:
        a1 = await s.get(Customer, other)
        assert a1 is not None and a1.telegram_id is None and not a1.is_guest
        v1 = await customers.by_telegram_id(s, 22)
        assert v1 is not None and v1.external_id == "V1"
        assert await customers.by_telegram_id(s, 21) is None


async def test_code_limits_per_user_and_overall(db: Db) -> None:
    policy = parse_policy(
        {
            "identification": {
                "allow_code": True,
                "code_attempts_per_user": 2,
                "code_user_window_minutes": 10,
                "code_attempts_overall": 3,
                "code_overall_window_seconds": 60,
            }
        }
    )

    async def attempt(user: int, at: datetime) -> bool:
        async with db.sessions() as s, s.begin():
            return await customers.code_attempt_allowed(s, user, policy=policy, now=at)

    assert [await attempt(1, NOW), await attempt(1, NOW), await attempt(1, NOW)] == [
        True,
        True,
        False,
    ]
    assert await attempt(2, NOW)
    assert not await attempt(3, NOW)  # 3 lookups overall in the last minute
    later = NOW + timedelta(seconds=61)
    assert await attempt(3, later)
    assert not await attempt(1, later)  # still 2 in user 1's 10 minutes
    assert await attempt(1, NOW + timedelta(minutes=11))


def test_durations_and_spreadsheet_cells() -> None:
    assert invitations.parse_duration("7d") == WEEK
    assert invitations.parse_duration("12h") == timedelta(hours=12)
    assert invitations.parse_duration("2W") == timedelta(weeks=2)
    for bad in ("", "7", "0d", "-1d", "400d", "1y"):
        with pytest.raises(ValueError, match="bad duration"):
            invitations.parse_duration(bad)
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert invitations.spreadsheet_safe(cell) == "'" + cell
    assert invitations.spreadsheet_safe("Ann") == "Ann"
