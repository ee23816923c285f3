"""Removing an agent keeps the complaints and care history that names them, and hands their
care tasks still to do to the pool (routing/queue/agents.py, ``remove_agent``).

Before, only chats, transcripts, offers, surveys and deliveries kept an agent's row: one who
had handled only complaints or care visits was deleted, the next agent added could take over
the id (SQLite reuses the largest) and with it that history, and their pending VIP
follow-ups stayed assigned to nobody who could do them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.queue.agents import add_agent, remove_agent
from routing.store.care_models import CARE_DONE, CARE_OPEN, CareTask, Complaint
from routing.store.models import Agent, Customer
from tests.conftest import Db

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)


async def _customer(s: AsyncSession) -> int:
    cust = Customer(external_id="V1", name="Vera", tier="VIP", created_at=NOW, updated_at=NOW)
    s.add(cust)
    await s.flush()
    return cust.id


async def test_an_agent_who_handled_a_complaint_is_kept_not_deleted(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        ann, _ = await add_agent(s, 1, "Ann", now=NOW)
        cid = await _customer(s)
        s.add(
            Complaint(
                customer_id=cid, tier="VIP", category="delivery", severity=1.0,
                opened_by="customer", agent_id=ann.id, status="resolved", opened_at=NOW,
            )
        )  # fmt: skip
    async with db.sessions() as s, s.begin():
        removal = await remove_agent(s, 1)
    assert not removal.deleted
    async with db.sessions() as s:
        kept = await s.scalar(select(Agent).where(Agent.telegram_id == 1))
    assert kept is not None and not kept.active


async def test_care_tasks_to_do_go_to_the_pool_and_done_ones_keep_the_name(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        ann, _ = await add_agent(s, 1, "Ann", now=NOW)
        cid = await _customer(s)
        for key, status in (("todo", CARE_OPEN), ("done", CARE_DONE)):
            s.add(
                CareTask(
                    customer_id=cid, agent_id=ann.id, reason="cadence", status=status,
                    due_at=NOW, created_at=NOW, dedupe_key=key,
                )
            )  # fmt: skip
        ann_id = ann.id
    async with db.sessions() as s, s.begin():
        removal = await remove_agent(s, 1)
    assert not removal.deleted
    async with db.sessions() as s:
        owners = dict((await s.execute(select(CareTask.dedupe_key, CareTask.agent_id))).all())
    assert owners == {"todo": None, "done": ann_id}
