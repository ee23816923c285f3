"""A customer's message committing while the hand-over runs keeps its place (PostgreSQL).

The hand-over used to move the waiting messages behind the briefing by deleting and
re-inserting them. A message whose transaction took its id before that re-insert but
committed after the hand-over had looked kept the older id and overtook the moved ones: the
agent saw them out of order (found by the scale-out benchmark). Interleaving reproduced with
two sessions: the message's transaction is open while the hand-over runs and commits."""

from __future__ import annotations

from datetime import UTC, datetime

from routing.delivery import enqueue, sending
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.models import TO_AGENT, Customer
from tests.conftest import Db

NOW = datetime(2026, 11, 23, tzinfo=UTC)
CUST = 700


async def test_a_message_committing_during_the_hand_over_keeps_its_place(
    pg_db: Db, policy: Policy
) -> None:
    db = pg_db
    async with db.sessions() as s, s.begin():
        agent, _ = await add_agent(s, 900, "Bob", now=NOW)
        cust = Customer(external_id="C", name="C", tier="B", telegram_id=CUST,
                        created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(cust)
        await s.flush()
        conv, _ = await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW)
        # Written while the chat waited for an agent.
        await enqueue.to_agent(s, conv.id, from_chat_id=CUST, message_id=1, now=NOW)
        claimed = await claim_next(s, agent, NOW)
        assert claimed is not None
        await enqueue.hold_for_hand_over(s, conv.id, agent.id, now=NOW)
        conv_id, agent_id, assigned_at = conv.id, agent.id, claimed.assigned_at

    # The customer's next message: its transaction takes its row (and id) now ...
    writer = db.sessions()
    await writer.begin()
    await enqueue.to_agent(writer, conv_id, from_chat_id=CUST, message_id=2, now=NOW)
    # ... the hand-over runs and commits meanwhile ...
    async with db.sessions() as s, s.begin():
        await enqueue.hand_over(
            s, conv_id, agent_id, assigned_at, [enqueue.Briefing(text="You took it")], now=NOW
        )
    # ... and the message commits last.
    await writer.commit()
    await writer.close()

    sent: list[str] = []
    for _ in range(5):
        async with db.sessions() as s, s.begin():
            head = await sending.claim_head(s, conv_id, TO_AGENT, now=NOW, lease=30)
            if head.claimed is None:
                break
            c = head.claimed
            sent.append(c.text or f"copy {c.message_ids}")
            await sending.mark_sent(s, c.id, now=NOW, agent_id=c.agent_id)
    assert sent == ["You took it", "copy [1]", "copy [2]"]
