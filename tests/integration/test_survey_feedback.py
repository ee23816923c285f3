"""Answers: recorded once, into satisfaction and scoring; detractors get service recovery."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from routing.policy.root import Policy
from routing.queue import conversations
from routing.store.models import Agent, Conversation, Customer, Message, Survey
from surveys import feedback, status
from surveys.feedback import AnswerStatus
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def setup(db: Db, tier: str = "C", kind: str = "csat", **kw: Any) -> tuple[int, int]:
    """A customer and a survey sent to them at NOW."""
    async with db.sessions() as s, s.begin():
        c = Customer(
            external_id="F1", telegram_id=4242, tier=tier, created_at=NOW, updated_at=NOW, **kw
        )
        s.add(c)
        await s.flush()
        row = Survey(
            kind=kind,
            customer_id=c.id,
            status="sent",
            due_at=NOW,
            created_at=NOW,
            sent_at=NOW,
            expires_at=NOW + timedelta(hours=24),
            chat_id=4242,
            message_id=7,
        )
        s.add(row)
        await s.flush()
        return c.id, row.id


async def answer(db: Db, policy: Policy, cid: int, sid: int, score: int, at: datetime = NOW) -> Any:
    async with db.sessions() as s, s.begin():
        return await feedback.answer(s, sid, cid, score, at, policy)


async def test_an_answer_moves_satisfaction_and_rescores(db: Db, policy: Policy) -> None:
    cid, sid = await setup(db)
    result = await answer(db, policy, cid, sid, 5)
    assert result.status is AnswerStatus.RECORDED and result.recovery is None
    async with db.sessions() as s:
        c = await s.get(Customer, cid)
        row = await s.get(Survey, sid)
    assert c is not None and row is not None
    assert c.satisfaction is not None and c.satisfaction > policy.scoring.satisfaction.neutral
    assert c.satisfaction_answers == 1 and c.scored_at == NOW  # rescored now
    assert (row.status, row.score, row.answered_at, row.comment_state) == (
        "answered",
        5,
        NOW,
        "asked",
    )


async def test_a_second_press_or_a_late_one_changes_nothing(db: Db, policy: Policy) -> None:
    cid, sid = await setup(db)
    assert (await answer(db, policy, cid, sid, 4)).status is AnswerStatus.RECORDED
    again = await answer(db, policy, cid, sid, 1)
    assert again.status is AnswerStatus.ALREADY_ANSWERED and again.score == 4
    async with db.sessions() as s:
        c = await s.get(Customer, cid)
        row = await s.get(Survey, sid)
    assert c is not None and c.satisfaction_answers == 1 and c.complaints == 0
    assert row is not None and row.score == 4
    # Another survey, pressed after it expired (before the expiry job even ran).
    async with db.sessions() as s, s.begin():
        late = Survey(
            kind="nps", customer_id=cid, status="sent", due_at=NOW, created_at=NOW,
            sent_at=NOW, expires_at=NOW + timedelta(hours=72),
        )  # fmt: skip
        s.add(late)
        await s.flush()
        late_id = late.id
    res = await answer(db, policy, cid, late_id, 9, NOW + timedelta(hours=72))
    assert res.status is AnswerStatus.EXPIRED
    # Someone else's survey, or a score off the scale: unknown, nothing recorded.
    assert (await answer(db, policy, cid + 1, late_id, 9)).status is AnswerStatus.UNKNOWN
    assert (await answer(db, policy, cid, late_id, 11)).status is AnswerStatus.UNKNOWN


@dataclass
class Pager:
    agents: list[tuple[int, str]] = field(default_factory=list)
    managers: list[tuple[int, int, bool]] = field(default_factory=list)

    async def page_agents(self, conversation_id: int, summary: str) -> int:
        self.agents.append((conversation_id, summary))
        return 1

    async def page_manager(
        self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
    ) -> bool:
        self.managers.append((customer_id, conversation_id, agents_paged))
        return True


async def test_a_detractor_gets_a_boosted_recovery_chat_with_the_answer(
    db: Db, policy: Policy
) -> None:
    cid, sid = await setup(db, tier="C")
    result = await answer(db, policy, cid, sid, 2)  # csat_detractor_max = 2
    assert result.update.detractor and result.recovery is not None
    rec = result.recovery
    assert rec.created and not rec.vip
    async with db.sessions() as s:
        conv = await s.get(Conversation, rec.conversation_id)
        msgs = list((await s.execute(select(Message))).scalars())
        c = await s.get(Customer, cid)
    assert conv is not None and conv.origin == "service_recovery" and conv.status == "queued"
    assert conv.priority == policy.rank("C") - 1  # recovery_priority_boost = 1
    [m] = msgs
    assert m.sender == "bot" and "CSAT 2" in (m.text or "") and m.message_id == 7
    assert c is not None and c.complaints == 1
    pager = Pager()
    await feedback.notify_recovery(pager, result)
    assert pager.agents == [(rec.conversation_id, rec.summary)] and pager.managers == []
    # A comment after the score lands in the recovery chat's transcript too.
    async with db.sessions() as s, s.begin():
        waiting = await feedback.awaiting_comment(s, cid, NOW + timedelta(minutes=1), policy)
        assert waiting is not None and waiting.id == sid
        res = await feedback.comment(
            s, sid, cid, "Nobody answered for an hour", chat_id=4242, message_id=9,
            now=NOW + timedelta(minutes=1), policy=policy,
        )  # fmt: skip
    assert res.saved and res.conversation is not None
    async with db.sessions() as s, s.begin():
        texts = [m.text for m in await conversations.transcript(s, rec.conversation_id)]
        assert texts[-1] == "Nobody answered for an hour"
        assert (await s.get(Survey, sid)).comment == "Nobody answered for an hour"  # type: ignore[union-attr]
        assert await feedback.awaiting_comment(s, cid, NOW + timedelta(minutes=2), policy) is None


async def test_a_vip_detractor_pages_the_account_manager(db: Db, policy: Policy) -> None:
    cid, sid = await setup(db, tier="VIP", kind="nps", account_manager="Mia", tier_override="VIP")
    result = await answer(db, policy, cid, sid, 6)  # nps_detractor_max = 6
    assert result.recovery is not None and result.recovery.vip
    pager = Pager()
    await feedback.notify_recovery(pager, result)
    assert pager.managers == [(cid, result.recovery.conversation_id, True)]
    async with db.sessions() as s:
        conv = await s.get(Conversation, result.recovery.conversation_id)
    assert conv is not None and conv.priority == 0  # the top rank cannot go higher
    # A promoter opens nothing.
    cid2, sid2 = await _second(db)
    assert (await answer(db, policy, cid2, sid2, 9)).recovery is None


async def _second(db: Db) -> tuple[int, int]:
    async with db.sessions() as s, s.begin():
        c = Customer(external_id="F2", telegram_id=4343, tier="C", created_at=NOW, updated_at=NOW)
        s.add(c)
        await s.flush()
        row = Survey(
            kind="nps", customer_id=c.id, status="sent", due_at=NOW, created_at=NOW,
            sent_at=NOW, expires_at=NOW + timedelta(hours=1),
        )  # fmt: skip
        s.add(row)
        await s.flush()
        return c.id, row.id


async def test_skip_comment_and_comment_window(db: Db, policy: Policy) -> None:
    cid, sid = await setup(db)
    await answer(db, policy, cid, sid, 4)
    async with db.sessions() as s, s.begin():
        # Past comment_minutes (30) the next text is an ordinary message again.
        assert await feedback.awaiting_comment(s, cid, NOW + timedelta(minutes=31), policy) is None
        assert await feedback.skip_comment(s, sid, cid)
        assert not await feedback.skip_comment(s, sid, cid)
        assert await feedback.awaiting_comment(s, cid, NOW, policy) is None


async def test_agent_csat_for_supervisor_stats(db: Db, policy: Policy) -> None:
    async with db.sessions() as s, s.begin():
        ann = Agent(telegram_id=1, name="Ann", created_at=NOW)
        bob = Agent(telegram_id=2, name="Bob", created_at=NOW)
        c = Customer(external_id="S", telegram_id=9, tier="C", created_at=NOW, updated_at=NOW)
        s.add_all([ann, bob, c])
        await s.flush()
        for agent, score, status_ in [
            (ann, 5, "answered"), (ann, 4, "answered"), (bob, 2, "answered"),
            (bob, None, "expired"), (ann, 1, "skipped"),
        ]:  # fmt: skip
            s.add(
                Survey(
                    kind="csat", customer_id=c.id, agent_id=agent.id, status=status_,
                    score=score, due_at=NOW, created_at=NOW,
                )
            )  # fmt: skip
    async with db.sessions() as s:
        rows = await status.agent_csat(s)
    assert [(r.name, r.answers, r.average) for r in rows] == [("Ann", 2, 4.5), ("Bob", 1, 2.0)]


async def test_a_detractor_whose_chat_already_waits_moves_up_the_queue(
    db: Db, policy: Policy
) -> None:
    """The recovery bump on a chat that already waits changes its place in the queue, not
    only the rank it shows: the queue is ordered by the stored virtual arrival (queue_key),
    which the bump once left as it was."""
    from routing.queue import claims
    from routing.queue.agents import add_agent
    from routing.queue.conversations import ORIGIN_REQUEST, open_conversation

    cid, sid = await setup(db)
    async with db.sessions() as s, s.begin():
        other = Customer(
            external_id="F2", tier="C", telegram_id=4343, created_at=NOW, updated_at=NOW
        )
        s.add(other)
        await s.flush()
        # Another C customer queued a minute earlier: ahead, until the detractor's bump.
        await open_conversation(s, other, policy, ORIGIN_REQUEST, NOW - timedelta(minutes=11))
        mine = await s.get(Customer, cid)
        assert mine is not None
        waiting, _ = await open_conversation(
            s, mine, policy, ORIGIN_REQUEST, NOW - timedelta(minutes=10)
        )
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
    result = await answer(db, policy, cid, sid, 1)
    assert result.recovery is not None and not result.recovery.created
    async with db.sessions() as s, s.begin():
        bob = await s.get(Agent, agent.id)
        assert bob is not None
        first = await claims.claim_next(s, bob, NOW)
    assert first is not None and first.id == waiting.id
