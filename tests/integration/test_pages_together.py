"""A chat paged to several agents (a VIP's, with nobody reserved): the pages go out together,
and the ones that went out are linked in one write (issue 19).

One after the other, a VIP's chat paged to three agents waited for three sends and three
link writes before the VIP was told someone is coming; a slow or refused page held up the
rest. A refused page is still only logged, and the others are linked as before, so that
whoever claims the chat settles every page that went out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage
from sqlalchemy import select

from bot.desk import Desk
from routing.policy.root import Policy
from routing.queue.conversations import ORIGIN_REQUEST, open_conversation
from routing.store import lane
from routing.store.models import Agent, Customer, MessageLink
from tests.conftest import Db

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
AGENTS = (901, 902, 903)
REFUSES = 902


class _Sent:
    def __init__(self, chat_id: int, message_id: int) -> None:
        self.chat_id, self.message_id = chat_id, message_id


class _TogetherBot:
    """Answers a send only once every agent's page is in flight: pages sent one after the
    other never get there (the first waits for the others, which are not sent yet)."""

    def __init__(self, expected: int) -> None:
        self.in_flight: list[int] = []
        self.all_asked = asyncio.Event()
        self.expected = expected

    async def send_message(self, chat_id: int, text: str, **_: Any) -> _Sent:
        self.in_flight.append(chat_id)
        if len(self.in_flight) == self.expected:
            self.all_asked.set()
        await asyncio.wait_for(self.all_asked.wait(), 5)
        if chat_id == REFUSES:
            raise TelegramBadRequest(SendMessage(chat_id=chat_id, text=text), "chat not found")
        return _Sent(chat_id, 5000 + chat_id)


async def test_pages_go_out_together_and_are_linked_in_one_write(
    db: Db, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.sessions() as s, s.begin():
        agents = [
            Agent(telegram_id=t, name=f"Agent {t}", role="agent", max_chats=3, online=True,
                  active=True, created_at=NOW)
            for t in AGENTS
        ]  # fmt: skip
        s.add_all(agents)
        customer = Customer(
            external_id="V1", name="Vera", tier="VIP", telegram_id=700, created_at=NOW,
            updated_at=NOW,
        )  # fmt: skip
        s.add(customer)
        await s.flush()
        conv, _ = await open_conversation(s, customer, policy, ORIGIN_REQUEST, NOW)

    writes: list[int] = []
    real = lane.write_all

    async def counting(engine: Any, steps: Any) -> list[int]:
        writes.append(len(steps))
        return await real(engine, steps)

    monkeypatch.setattr(lane, "write_all", counting)
    bot = _TogetherBot(len(AGENTS))
    desk = Desk(bot, policy, lambda: NOW)  # type: ignore[arg-type]
    async with db.sessions() as s:
        # Nobody is Vera's account manager: every online agent is paged.
        assert await desk.page(s, conv, customer, "my order arrived broken") == len(AGENTS)

    assert sorted(bot.in_flight) == list(AGENTS)
    assert writes == [2]  # the two pages that went out, in one write
    async with db.sessions() as s:
        links = (await s.execute(select(MessageLink.chat_id, MessageLink.message_id,
                                        MessageLink.kind))).all()  # fmt: skip
    assert sorted(links) == [(901, 5901, "notification"), (903, 5903, "notification")]
