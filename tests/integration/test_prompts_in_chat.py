"""A self-service prompt left open must not swallow a chat with a person (issue 13, point 3).

Seen before: a customer pressed *Status of an order*, then *Talk to a person*; once an agent
claimed, "my parcel never arrived ..." was answered "I could not find an order ..." instead
of being relayed, and a contact card sent inside the chat was taken as identification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from routing.policy.root import Policy
from routing.store.models import ASSIGNED
from tests.conftest import Db
from tests.integration.test_queue_bot import BC, BOB, Harness, _harness


@pytest.fixture
async def h(db: Db, policy: Policy) -> AsyncIterator[Harness]:
    async for x in _harness(db, policy):
        yield x


async def _copied_to(h: Harness, agent: int, message_id: int) -> bool:
    for _ in range(100):
        if any(
            c.ok
            and c.chat_id == agent
            and c.method in ("copyMessage", "copyMessages")
            and message_id in (c.params.get("message_ids") or [c.params.get("message_id")])
            for c in h.api.calls
        ):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_an_open_order_prompt_does_not_swallow_the_chat(h: Harness) -> None:
    await h.say(BC, "/menu")
    menu = h.last(BC, "")
    h.api.press(BC, int(menu.result["message_id"]), "ss:order_status")
    await h.feed()
    assert any("order" in t.lower() for t in h.texts(BC)[-2:])  # the prompt is open
    h.api.press(BC, int(menu.result["message_id"]), "human")
    await h.feed()
    conv = await h.conv(BC)
    await h.say(BOB, "/next")
    assert (await h.conv(BC)).status == ASSIGNED and conv.id == (await h.conv(BC)).id

    mark = h.api.mark()
    parcel = h.api.user_message(BC, "my parcel never arrived, order 12345")
    await h.feed()
    assert await _copied_to(h, BOB, parcel["message_id"])
    assert not [t for t in h.texts(BC, mark) if "could not find" in t.lower()]

    card = h.api.user_message(BC, contact={"phone_number": "+4915112345678", "user_id": 1})
    await h.feed()
    assert await _copied_to(h, BOB, card["message_id"])
