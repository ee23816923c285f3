"""Agent commands that pick their chat are not redone when their update is handled again.

A crash between a handler's commit and the inbox's done mark makes the next start handle the
stored update again. A relay guards itself (the transcript row), but /next takes whichever
chat is next, and /close and /transfer act on "the chat I am in": handled again, each acted
on a second chat. Seen in the e2e test "restart after SIGKILL": the agent's /next, killed
before its done mark, took the VIP who had queued since, and the agent's next line was
refused as ambiguous. Each act now records itself with the update (``inbound_updates.effect``)
and a second handling resumes what the first did not get to, the hand-over, instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import select, update

from bot.app import make_dispatcher
from bot.desk import Desk
from bot.intake import Intake
from routing.policy.root import Policy
from routing.queue.agents import add_agent
from routing.queue.claims import claim_next
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store.models import (
    ASSIGNED,
    INBOX_DONE,
    INBOX_PENDING,
    QUEUED,
    Agent,
    Conversation,
    Customer,
    InboundUpdate,
)
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import _detach_routers

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
BOB = 900
BETH, BEN = 700, 701


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    _detach_routers()
    yield
    _detach_routers()


async def _seed(db: Db, policy: Policy, *, bob_holds: int) -> None:
    """Bob online; Beth and Ben each with a chat; Bob holds the first ``bob_holds`` of them."""
    async with db.sessions() as s, s.begin():
        bob, _ = await add_agent(s, BOB, "Bob", now=NOW)
        await add_agent(s, 901, "Ann", now=NOW)
        await s.execute(update(Agent).values(online=True))
        for i, (tg, name) in enumerate(((BETH, "Beth"), (BEN, "Ben"))):
            cust = Customer(
                external_id=name, name=name, tier="B", telegram_id=tg,
                created_at=NOW, updated_at=NOW,
            )  # fmt: skip
            s.add(cust)
            await s.flush()
            await open_conversation(s, cust, policy, ORIGIN_REQUEST, NOW + timedelta(seconds=i))
        for _ in range(bob_holds):
            assert await claim_next(s, bob, NOW) is not None


async def _bob_in_beths_chat(db: Db) -> None:
    """Bob, holding both chats, addresses Beth's (/chats, then her button)."""
    async with db.sessions() as s, s.begin():
        beth = await s.scalar(
            select(Conversation.id).join(Customer).where(Customer.telegram_id == BETH)
        )
        await s.execute(
            update(Agent).where(Agent.telegram_id == BOB).values(focus_conversation_id=beth)
        )


@dataclass
class Run:
    db: Db
    api: FakeBotAPI
    bot: Bot
    dp: Any
    next_id: int = 1

    async def handle(self, user_id: int, text: str) -> int:
        """One update through the inbox, to the end; its update id."""
        update_id, self.next_id = self.next_id, self.next_id + 1
        raw = {"update_id": update_id, "message": self.api.user_message(user_id, text)}
        intake = Intake(self.dp, self.bot, self.db.sessions, lambda: NOW, retry_first=0.01)
        assert await intake.accept([raw]) == 1
        await intake.wait_idle()
        await self.api.wait_idle(quiet=0.3)
        return update_id

    async def crash_before_done_mark_and_restart(self, update_id: int) -> None:
        """The done mark never committed: the next start handles the update again."""
        async with self.db.sessions() as s, s.begin():
            await s.execute(
                update(InboundUpdate)
                .where(InboundUpdate.update_id == update_id)
                .values(status=INBOX_PENDING, handled_at=None)
            )
        restarted = Intake(self.dp, self.bot, self.db.sessions, lambda: NOW, retry_first=0.01)
        assert await restarted.recover() == 1
        await restarted.wait_idle()
        await self.api.wait_idle(quiet=0.3)
        async with self.db.sessions() as s:
            row = await s.get(InboundUpdate, update_id)
            assert row is not None and row.status == INBOX_DONE

    async def chats(self) -> dict[str, tuple[str, str | None]]:
        """Customer name -> (status, holder's name)."""
        async with self.db.sessions() as s:
            rows = await s.execute(
                select(Customer.name, Conversation.status, Agent.name)
                .join(Customer, Customer.id == Conversation.customer_id)
                .outerjoin(Agent, Agent.id == Conversation.agent_id)
            )
            return {c: (st, a) for c, st, a in rows.all()}


@pytest.fixture
async def run(db: Db, policy: Policy) -> AsyncIterator[Run]:
    async with FakeBotAPI() as api:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.url)))
        dp = make_dispatcher(db.sessions, policy, bot, clock=lambda: NOW)
        yield Run(db, api, bot, dp)
        await bot.session.close()


def _took(api: FakeBotAPI, name: str) -> int:
    return sum(
        1
        for c in api.calls_of("sendMessage", chat_id=BOB)
        if "You took chat" in (c.text or "") and name in (c.text or "")
    )


async def test_next_handled_again_does_not_take_a_second_chat(
    db: Db, policy: Policy, run: Run
) -> None:
    await _seed(db, policy, bob_holds=0)
    first = await run.handle(BOB, "/next")
    assert await run.chats() == {"Beth": (ASSIGNED, "Bob"), "Ben": (QUEUED, None)}
    assert _took(run.api, "Beth") == 1

    await run.crash_before_done_mark_and_restart(first)

    # Ben still waits for whoever presses next; Beth's briefing came once.
    assert await run.chats() == {"Beth": (ASSIGNED, "Bob"), "Ben": (QUEUED, None)}
    assert _took(run.api, "Beth") == 1 and _took(run.api, "Ben") == 0


async def test_next_cut_off_between_claim_and_hand_over_resumes_the_hand_over(
    db: Db, policy: Policy, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim committed, the briefing was never queued (the handling died between): the
    update handled again hands that chat over, and claims nothing more."""
    await _seed(db, policy, bob_holds=0)
    real = Desk.hand_over
    cut = [1]

    async def dies_once(self: Desk, *args: Any, **kwargs: Any) -> None:
        if cut:
            cut.pop()
            raise RuntimeError("killed between the claim and the hand-over")
        await real(self, *args, **kwargs)

    monkeypatch.setattr(Desk, "hand_over", dies_once)
    # The intake retries the failed update at once: the same path as the next start's.
    await run.handle(BOB, "/next")

    assert await run.chats() == {"Beth": (ASSIGNED, "Bob"), "Ben": (QUEUED, None)}
    assert _took(run.api, "Beth") == 1 and _took(run.api, "Ben") == 0
    # Beth hears Bob joined, once.
    joined = [c for c in run.api.calls_of("sendMessage", chat_id=BETH) if "Bob" in (c.text or "")]
    assert len(joined) == 1


async def test_close_handled_again_leaves_the_agents_other_chat_open(
    db: Db, policy: Policy, run: Run
) -> None:
    await _seed(db, policy, bob_holds=2)
    await _bob_in_beths_chat(db)  # then closes it
    closing = await run.handle(BOB, "/close")
    assert await run.chats() == {"Beth": ("closed", "Bob"), "Ben": (ASSIGNED, "Bob")}

    # Handled again, "the chat I am in" would now be Ben's, the only one left.
    await run.crash_before_done_mark_and_restart(closing)

    assert await run.chats() == {"Beth": ("closed", "Bob"), "Ben": (ASSIGNED, "Bob")}


async def test_transfer_handled_again_moves_no_second_chat(
    db: Db, policy: Policy, run: Run
) -> None:
    await _seed(db, policy, bob_holds=2)
    await _bob_in_beths_chat(db)
    moving = await run.handle(BOB, "/transfer Ann")
    assert await run.chats() == {"Beth": (ASSIGNED, "Ann"), "Ben": (ASSIGNED, "Bob")}

    await run.crash_before_done_mark_and_restart(moving)

    assert await run.chats() == {"Beth": (ASSIGNED, "Ann"), "Ben": (ASSIGNED, "Bob")}
    # Ann was briefed once.
    briefed = [c for c in run.api.calls_of("sendMessage", chat_id=901) if "Beth" in (c.text or "")]
    assert len(briefed) == 1


async def test_a_claim_button_handled_again_is_done_not_retried_into_quarantine(
    db: Db, policy: Policy, run: Run
) -> None:
    """Handled again, the press cannot be answered any more (Telegram: 400 "query is too old",
    as for any press handled more than a few seconds late, after a restart or a backlog).
    That refusal failed the update, which was retried and quarantined, its hand-over never
    resumed; now the answer is best-effort and the second handling finishes cleanly."""
    from bot import keyboards

    await _seed(db, policy, bob_holds=0)
    async with db.sessions() as s:
        beth = await s.scalar(
            select(Conversation.id).join(Customer).where(Customer.telegram_id == BETH)
        )
    assert beth is not None
    page = await run.bot.send_message(BOB, "New chat", reply_markup=keyboards.claim(beth))
    run.api.press(BOB, page.message_id, keyboards.ClaimCb(conv=beth).pack())
    raw = run.api._pending.popleft()
    intake = Intake(run.dp, run.bot, db.sessions, lambda: NOW, retry_first=0.01)
    assert await intake.accept([raw]) == 1
    await intake.wait_idle()
    await run.api.wait_idle(quiet=0.3)
    assert await run.chats() == {"Beth": (ASSIGNED, "Bob"), "Ben": (QUEUED, None)}

    await run.crash_before_done_mark_and_restart(raw["update_id"])

    assert await run.chats() == {"Beth": (ASSIGNED, "Bob"), "Ben": (QUEUED, None)}
    assert _took(run.api, "Beth") == 1


async def test_a_menu_press_handled_again_is_done_and_answered_once_more_at_most(
    db: Db, policy: Policy, run: Run
) -> None:
    """The same refusal through the answer sent when the handler returns (aiogram's
    CallbackAnswerMiddleware): the update was retried five times, its reply sent each time,
    then quarantined."""
    from bot import keyboards

    await _seed(db, policy, bob_holds=0)
    menu = await run.bot.send_message(BEN, "Menu", reply_markup=keyboards.claim(1))
    run.api.press(BEN, menu.message_id, keyboards.NodeCb(id="orders").pack())
    raw = run.api._pending.popleft()
    intake = Intake(run.dp, run.bot, db.sessions, lambda: NOW, retry_first=0.01)
    assert await intake.accept([raw]) == 1
    await intake.wait_idle()
    await run.api.wait_idle(quiet=0.3)
    first = len(run.api.calls_of("sendMessage", chat_id=BEN)) + len(
        run.api.calls_of("editMessageText", chat_id=BEN)
    )

    await run.crash_before_done_mark_and_restart(raw["update_id"])

    again = len(run.api.calls_of("sendMessage", chat_id=BEN)) + len(
        run.api.calls_of("editMessageText", chat_id=BEN)
    )
    assert again - first <= first - 1  # the menu shown once more at most, not five times
