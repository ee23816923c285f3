"""A complaint case from open to follow-up: acknowledgement, remedy, resolution (not by
closing the chat), a "no" that reopens and requeues it above the tier, and its weight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from routing.complaints import cases, chats, events, follow_up, queries, remedies
from routing.policy.root import Policy, parse_policy
from routing.queue import conversations
from routing.store.care_models import Complaint, ComplaintEvent
from routing.store.models import Agent, Conversation, Customer, Survey
from tests.conftest import Db

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


async def customer(db: Db, tier: str = "B", ext: str = "K1", **kw: object) -> int:
    """A customer pinned to ``tier`` (they have no orders: unpinned, every rescore a case
    causes would move them down to the lowest tier)."""
    async with db.sessions() as s, s.begin():
        c = Customer(
            external_id=ext,
            telegram_id=int(ext[1:]) + 5000,
            tier=tier,
            tier_override=tier,
            created_at=NOW - timedelta(days=400),
            updated_at=NOW,
            **kw,
        )
        s.add(c)
        await s.flush()
        return c.id


async def agent(db: Db, telegram_id: int = 900, name: str = "Ann") -> int:
    async with db.sessions() as s, s.begin():
        a = Agent(telegram_id=telegram_id, name=name, created_at=NOW, online=True)
        s.add(a)
        await s.flush()
        return a.id


async def open_case(
    db: Db, policy: Policy, cid: int, category: str = "delivery", at: datetime = NOW
) -> cases.Opened:
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, cid)
        assert cu is not None
        return await cases.open_by_customer(s, cu, category, "parcel lost", at, policy)


async def row(db: Db, complaint_id: int) -> Complaint:
    async with db.sessions() as s:
        c = await s.get(Complaint, complaint_id)
        assert c is not None
        return c


async def kinds(db: Db, complaint_id: int) -> list[str]:
    async with db.sessions() as s:
        return [e.kind for e in await events.timeline(s, complaint_id)]


async def resolve(db: Db, policy: Policy, complaint_id: int, aid: int, at: datetime) -> None:
    async with db.sessions() as s, s.begin():
        assert await remedies.resolve(s, complaint_id, at, policy, agent_id=aid) is not None


async def test_a_customer_complaint_is_queued_one_rank_above_the_tier(
    db: Db, policy: Policy
) -> None:
    cid = await customer(db, "B")
    opened = await open_case(db, policy, cid, "billing")
    c = opened.complaint
    assert opened.queued is not None and opened.queued.created and not opened.queued.vip
    assert (c.status, c.tier, c.category, c.severity, c.opened_by) == (
        "open",
        "B",
        "billing",
        1.5,
        "customer",
    )
    assert c.ack_due_at == NOW + timedelta(seconds=14400)
    assert c.resolve_due_at == NOW + timedelta(seconds=432000)
    async with db.sessions() as s:
        conv = await s.get(Conversation, opened.queued.conversation_id)
        assert conv is not None and c.conversation_id == conv.id
        # B is rank 2; the complaint queues it at rank 1 (as an A would).
        assert (conv.status, conv.origin, conv.priority) == ("queued", "complaint", 1)
        notes = await conversations.transcript(s, conv.id)
        assert [m.sender for m in notes] == ["bot"]
        assert f"Complaint #{c.id} (billing" in (notes[0].text or "")
        cu = await s.get(Customer, cid)
    # open weight 1.0 x severity 1.5 counts against the customer at once, rescored.
    assert cu is not None and cu.complaints == pytest.approx(1.5) and cu.scored_at == NOW
    assert c.weight == pytest.approx(1.5)
    assert await kinds(db, c.id) == ["opened"]


async def test_a_complaint_moves_a_waiting_chat_up_never_down(db: Db, policy: Policy) -> None:
    cid = await customer(db, "C")
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, cid)
        assert cu is not None
        conv, _ = await conversations.open_conversation(s, cu, policy, "customer_request", NOW)
        before = conv.queue_key
    opened = await open_case(db, policy, cid, at=NOW + timedelta(minutes=1))
    assert opened.queued is not None and not opened.queued.created
    async with db.sessions() as s:
        conv2 = await s.get(Conversation, opened.queued.conversation_id)
    assert conv2 is not None and conv2.priority == 2  # C (3) one rank up
    # The queue is ordered by the virtual arrival: it moved by one tier's head start.
    assert conv2.queue_key == pytest.approx(before - policy.queue.aging_outrank_seconds)


async def test_vip_complaint_is_flagged_for_the_manager(db: Db, policy: Policy) -> None:
    cid = await customer(db, "VIP")
    opened = await open_case(db, policy, cid)
    assert opened.queued is not None and opened.queued.vip
    calls: list[tuple[str, int]] = []

    class Pager:
        async def page_agents(self, conversation_id: int, summary: str) -> int:
            calls.append(("agents", conversation_id))
            return 1

        async def page_manager(
            self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
        ) -> bool:
            calls.append(("manager", customer_id))
            return True

    await chats.notify_queued(Pager(), cid, opened.queued)
    assert calls == [("agents", opened.queued.conversation_id), ("manager", cid)]


async def test_lifecycle_through_a_no_and_a_reopen(db: Db, policy: Policy) -> None:
    cid = await customer(db, "B")
    aid = await agent(db)
    opened = await open_case(db, policy, cid)
    case_id, conv_id = opened.complaint.id, opened.complaint.conversation_id
    assert conv_id is not None
    # The first agent message acknowledges the case; the second changes nothing.
    t1 = NOW + timedelta(minutes=5)
    async with db.sessions() as s, s.begin():
        assert await cases.acknowledge_for_conversation(s, conv_id, aid, t1, policy) == [case_id]
        assert await cases.acknowledge_for_conversation(s, conv_id, aid, t1, policy) == []
        assert not await cases.acknowledge(s, case_id, aid, t1, policy)
    c = await row(db, case_id)
    assert (c.status, c.acknowledged_at, c.agent_id) == ("acknowledged", t1, aid)
    # Remedy: only the policy's kinds; case-insensitive; amount in cents.
    async with db.sessions() as s, s.begin():
        with pytest.raises(remedies.RemedyError, match="kinds: refund, replacement"):
            await remedies.record_remedy(s, case_id, remedies.Remedy("cash"), t1, policy)
        with pytest.raises(remedies.RemedyError, match="negative"):
            await remedies.record_remedy(s, case_id, remedies.Remedy("refund", -1), t1, policy)
        remedy = remedies.parse_remedy("Refund 25,50 sorry for the wait", policy)
        await remedies.record_remedy(s, case_id, remedy, t1, policy, agent_id=aid)
    c = await row(db, case_id)
    assert (c.remedy_kind, c.remedy_amount_cents, c.remedy_note) == (
        "refund",
        2550,
        "sorry for the wait",
    )
    # Closing the chat does not resolve the case.
    async with db.sessions() as s, s.begin():
        conv = await s.get(Conversation, conv_id)
        cu = await s.get(Customer, cid)
        assert conv is not None and cu is not None
        await conversations.close(s, conv, cu, policy, t1)
    assert (await row(db, case_id)).status == "acknowledged"
    # Resolution: resolved weight, and the follow-up in the survey outbox.
    t2 = NOW + timedelta(hours=2)
    await resolve(db, policy, case_id, aid, t2)
    async with db.sessions() as s, s.begin():
        assert await remedies.resolve(s, case_id, t2, policy) is None  # once
        survey = (
            await s.execute(select(Survey).where(Survey.complaint_id == case_id))
        ).scalar_one()
    assert (survey.kind, survey.status, survey.conversation_id) == ("complaint", "scheduled", None)
    assert survey.due_at == t2 + timedelta(minutes=60)
    assert survey.expires_at == survey.due_at + timedelta(hours=72)
    c = await row(db, case_id)
    assert (c.status, c.resolved_at, round(c.weight, 6)) == ("resolved", t2, 0.5)
    # "No": the case reopens, a new cycle, and a chat queued one rank above B again.
    t3 = t2 + timedelta(hours=3)
    async with db.sessions() as s, s.begin():
        answer = await follow_up.record_follow_up(s, case_id, False, t3, policy)
        assert answer.recorded and answer.reopened is not None
        assert not (await follow_up.record_follow_up(s, case_id, True, t3, policy)).recorded
        assert await follow_up.record_follow_up_score(s, case_id, 2, t3)
        assert not await follow_up.record_follow_up_score(s, case_id, 5, t3)
    c = await row(db, case_id)
    assert (c.status, c.reopen_count, c.reopened_at, c.outcome, c.follow_up_score) == (
        "reopened",
        1,
        t3,
        "unsatisfied",
        2,
    )
    assert (c.acknowledged_at, c.resolved_at) == (None, None)
    assert c.ack_due_at == t3 + timedelta(seconds=14400)
    assert c.weight == pytest.approx(1.5)  # reopened
    assert answer.reopened.queued.created and c.conversation_id != conv_id
    async with db.sessions() as s:
        conv2 = await s.get(Conversation, c.conversation_id)
    assert conv2 is not None and (conv2.status, conv2.priority) == ("queued", 1)
    # Acknowledged again in the new cycle, resolved, and this time "yes".
    async with db.sessions() as s, s.begin():
        assert await cases.acknowledge(s, case_id, aid, t3 + timedelta(minutes=1), policy)
    await resolve(db, policy, case_id, aid, t3 + timedelta(hours=1))
    c = await row(db, case_id)
    # Resolved again, the customer's last word still "no": the unsatisfied weight.
    assert (c.status, round(c.weight, 6)) == ("resolved", 1.0)
    async with db.sessions() as s, s.begin():
        answer = await follow_up.record_follow_up(s, case_id, True, t3 + timedelta(hours=2), policy)
        assert answer.recorded and answer.reopened is None
    c = await row(db, case_id)
    assert (c.status, c.outcome, c.follow_up_score, round(c.weight, 6)) == (
        "resolved",
        "satisfied",
        None,
        0.2,
    )
    assert await kinds(db, case_id) == [
        "opened",
        "acknowledged",
        "remedy",
        "resolved",
        "follow_up",
        "reopened",
        "follow_up",
        "acknowledged",
        "resolved",
        "follow_up",
    ]
    async with db.sessions() as s:
        cycles = (
            await s.execute(
                select(ComplaintEvent.kind, ComplaintEvent.cycle)
                .where(ComplaintEvent.complaint_id == case_id)
                .order_by(ComplaintEvent.id)
            )
        ).all()
    assert cycles[-1] == ("follow_up", 1) and cycles[0] == ("opened", 0)
    # Two follow-ups in the outbox, one per resolution.
    async with db.sessions() as s:
        n = len((await s.execute(select(Survey).where(Survey.complaint_id == case_id))).all())
    assert n == 2


async def test_a_no_past_max_reopens_keeps_the_case_resolved(db: Db) -> None:
    policy = parse_policy({"complaints": {"max_reopens": 0}})
    cid = await customer(db)
    aid = await agent(db)
    case_id = (await open_case(db, policy, cid)).complaint.id
    await resolve(db, policy, case_id, aid, NOW + timedelta(hours=1))
    async with db.sessions() as s, s.begin():
        answer = await follow_up.record_follow_up(
            s, case_id, False, NOW + timedelta(hours=2), policy
        )
    assert answer.recorded and answer.reopened is None
    c = await row(db, case_id)
    assert (c.status, c.outcome, round(c.weight, 6)) == ("resolved", "unsatisfied", 1.0)


async def test_an_agent_turns_the_chat_in_hand_into_a_complaint(db: Db, policy: Policy) -> None:
    cid = await customer(db, "A")
    aid = await agent(db)
    async with db.sessions() as s, s.begin():
        cu = await s.get(Customer, cid)
        a = await s.get(Agent, aid)
        assert cu is not None and a is not None
        conv, _ = await conversations.open_conversation(s, cu, policy, "customer_request", NOW)
        conv.status, conv.agent_id = "assigned", aid
        with pytest.raises(cases.UnknownCategory, match="categories: delivery, product"):
            await cases.open_by_agent(s, conv, a, "weather", None, NOW, policy)
        opened = await cases.open_by_agent(s, conv, a, "product", "arrived broken", NOW, policy)
    c = opened.complaint
    assert opened.queued is None
    async with db.sessions() as s, s.begin():
        closed = await s.get(Conversation, conv.id)
        a = await s.get(Agent, aid)
        assert closed is not None and a is not None
        closed.status = "closed"
        with pytest.raises(cases.ComplaintError, match="is closed"):
            await cases.open_by_agent(s, closed, a, "product", None, NOW, policy)
    assert (c.status, c.opened_by, c.agent_id, c.acknowledged_at, c.conversation_id) == (
        "acknowledged",
        "agent",
        aid,
        NOW,
        conv.id,
    )
    assert c.description == "arrived broken"
    assert await kinds(db, c.id) == ["opened", "acknowledged"]


async def test_complaints_off_and_message_summaries(db: Db) -> None:
    cid = await customer(db)
    with pytest.raises(cases.ComplaintsOff):
        await open_case(db, parse_policy({"complaints": {"enabled": False}}), cid)
    assert cases.describe_message("text", "  late again ") == "late again"
    assert cases.describe_message("photo", "the box") == "[photo] the box"
    assert cases.describe_message("voice", None) == "[voice]"


async def test_list_and_show(db: Db, policy: Policy) -> None:
    b = await customer(db, "B", "K1")
    v = await customer(db, "VIP", "K2")
    aid = await agent(db)
    old = (await open_case(db, policy, b, at=NOW - timedelta(days=40))).complaint.id
    await resolve(db, policy, old, aid, NOW - timedelta(days=40) + timedelta(hours=1))
    late = (await open_case(db, policy, v, at=NOW - timedelta(days=2))).complaint.id
    fresh = (await open_case(db, policy, b, at=NOW)).complaint.id
    async with db.sessions() as s:

        async def ids(**kw: object) -> list[int]:
            return [r.complaint.id for r in await queries.list_complaints(s, NOW, **kw)]  # type: ignore[arg-type]

        assert await ids() == [fresh, late, old]
        assert await ids(status="open") == [fresh, late]
        assert await ids(status="resolved") == [old]
        # The VIP case is past its acknowledgement target (15 min) and not acknowledged.
        assert await ids(status="breached") == [late]
        assert await ids(tier="VIP") == [late]
        assert await ids(since=NOW - timedelta(days=30)) == [fresh, late]
        with pytest.raises(ValueError, match="open, resolved, breached"):
            await ids(status="lost")
        assert [c.id for c in await queries.open_cases(s, b)] == [fresh]
        first = (await s.get(Complaint, fresh)) or Complaint()
        assert first.conversation_id is not None
        # The fresh case joined the chat the old one opened (still open): it carries both.
        assert [c.id for c in await queries.carried_by(s, first.conversation_id)] == [old, fresh]
        picked = await queries.case_in_chat(s, first.conversation_id)
        assert picked is not None and picked.id == fresh  # the unresolved one
        assert await queries.case_in_chat(s, 424242) is None
        view = await queries.show(s, old, NOW)
        assert await queries.show(s, 99999, NOW) is None
    assert view is not None and view.customer.external_id == "K1" and not view.breached
    assert [e.kind for e in view.timeline] == ["opened", "resolved"]
    assert view.agents == {aid: "Ann"}
    # Resolved a day after open with no agent message: a late acknowledgement, on record.
    await resolve(db, policy, fresh, aid, NOW + timedelta(days=1))
    async with db.sessions() as s:
        rows = await queries.list_complaints(s, NOW + timedelta(days=1), status="breached")
    assert [r.complaint.id for r in rows] == [fresh, late]
    assert await kinds(db, fresh) == ["opened", "resolved", "breach"]
