"""Linking Telegram users to imported customers."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from routing.customers import identity as customers
from routing.customers.identity import LinkStatus
from routing.policy.root import Policy
from routing.queue.conversations import ORIGIN_REQUEST, close, open_conversation
from routing.store.models import Conversation, Customer, Survey
from tests.conftest import Db

NOW = datetime(2026, 11, 23, tzinfo=UTC)


async def _seed(db: Db, **kw: object) -> None:
    async with db.sessions() as s, s.begin():
        s.add(Customer(created_at=NOW, updated_at=NOW, **kw))


async def test_phone_link_normalises_and_absorbs_the_guest(db: Db, policy: Policy) -> None:
    await _seed(db, external_id="C1", name="Alice", phone="+442079460958", tier="A")
    async with db.sessions() as s, s.begin():
        guest = await customers.ensure_customer(
            s, 77, name="alice", language="en", policy=policy, now=NOW
        )
        assert guest.is_guest and guest.tier == "C"
        conv, _ = await open_conversation(s, guest, policy, ORIGIN_REQUEST, NOW)
        await close(s, conv, guest, policy, NOW)
    async with db.sessions() as s, s.begin():
        result = await customers.link_by_phone(s, 77, "442079460958", policy=policy, now=NOW)
    assert result.status is LinkStatus.LINKED
    async with db.sessions() as s, s.begin():
        alice = await customers.by_telegram_id(s, 77)
        assert alice is not None and alice.external_id == "C1"
        # The guest's history now belongs to Alice, and the guest row holds no Telegram id.
        owners = set((await s.execute(select(Conversation.customer_id))).scalars())
        assert owners == {alice.id}
        assert set((await s.execute(select(Survey.customer_id))).scalars()) == {alice.id}


async def test_phone_link_unknown_and_invalid(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        r = await customers.link_by_phone(s, 78, "12025550199", policy=policy, now=NOW)
        assert r.status is LinkStatus.NOT_FOUND
        r = await customers.link_by_phone(s, 78, "12", policy=policy, now=NOW)
        assert r.status is LinkStatus.INVALID


async def test_code_link_cannot_take_over_a_linked_account(db: Db, policy: Policy) -> None:
    await _seed(db, external_id="C1", name="Alice", tier="A", telegram_id=1)
    await _seed(db, external_id="C2", name="Bob", tier="B")
    async with db.sessions() as s, s.begin():
        assert (await customers.link_by_code(s, 2, "C1", now=NOW)).status is LinkStatus.TAKEN
        assert (await customers.link_by_code(s, 2, "nope", now=NOW)).status is LinkStatus.NOT_FOUND
        r = await customers.link_by_code(s, 2, " C2 ", now=NOW)
        assert r.status is LinkStatus.LINKED and r.customer is not None
        assert r.customer.telegram_id == 2
        # Linking again is harmless.
        assert (await customers.link_by_code(s, 2, "C2", now=NOW)).status is LinkStatus.LINKED


async def test_guest_conversations_close_without_a_survey_to_send(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        guest = await customers.ensure_customer(
            s, 9, name=None, language=None, policy=policy, now=NOW
        )
        conv, _ = await open_conversation(s, guest, policy, ORIGIN_REQUEST, NOW)
        survey = await close(s, conv, guest, policy, NOW)
        assert survey is not None and survey.status == "skipped" and survey.reason == "guest"
        # A second close is a no-op, not a second survey.
        assert await close(s, conv, guest, policy, NOW) is None
