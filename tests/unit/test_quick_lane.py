"""The quick lanes (``bot.filters.NoFeatureWants`` for customers, ``NoDeskFeatureWants`` for
agents, tried before the features) take only messages that no feature handler would have
taken: they change how fast such a message reaches the fallback's handler, never where it
goes. A feature added later with a
handler for plain messages fails here until the filter knows about it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import Chat, Contact, Message, PhotoSize, User

from bot.filters import NoDeskFeatureWants, NoFeatureWants
from bot.handlers import fallback, get_routers
from bot.handlers.customer import human
from bot.handlers.customer.complaint import ComplaintFlow

CUSTOMER = 100
CHAT: Any = SimpleNamespace(id=7, status="assigned")  # an open conversation


def _message(**content: Any) -> Message:
    user = User(id=CUSTOMER, is_bot=False, first_name="Ann")
    return Message(
        message_id=1,
        date=datetime(2026, 12, 2, tzinfo=UTC),
        chat=Chat(id=CUSTOMER, type="private"),
        from_user=user,
        **content,
    )


PHOTO = [PhotoSize(file_id="f", file_unique_id="u", width=1, height=1)]
CONTACT = Contact(phone_number="+100", first_name="Ann", user_id=CUSTOMER)
# What the quick lane takes: (message, open conversation).
TAKEN = {
    "a question": (_message(text="where is my parcel"), None),
    "a greeting": (_message(text="hi"), None),
    "a photo": (_message(photo=PHOTO), None),
    "a photo with a caption": (_message(photo=PHOTO, caption="broken"), None),
    "a text in a chat": (_message(text="any news?"), CHAT),
    "a contact in a chat": (_message(contact=CONTACT), CHAT),
}
# What it leaves to the features: (message, open conversation, FSM state, awaiting survey).
LEFT = {
    "a command": (_message(text="/menu"), None, None, None),
    "a command in a chat": (_message(text="/human"), CHAT, None, None),
    "a caption command": (_message(photo=PHOTO, caption="/complaint"), None, None, None),
    "a contact outside a chat": (_message(contact=CONTACT), None, None, None),
    "an answer to a prompt": (_message(text="C-1"), None, "Identify:waiting", None),
    "a complaint's description": (
        _message(text="late"),
        CHAT,
        ComplaintFlow.description.state,
        None,
    ),
    "a survey comment": (_message(text="great"), None, None, 5),
}


async def _data(
    open_conversation: Any, raw_state: str | None, awaiting: int | None
) -> dict[str, Any]:
    storage = MemoryStorage()
    state = FSMContext(storage, StorageKey(bot_id=1, chat_id=CUSTOMER, user_id=CUSTOMER))
    await state.set_state(raw_state)
    return {
        "state": state,
        "raw_state": raw_state,
        "open_conversation": open_conversation,
        "awaiting_survey": awaiting,
        "customer": SimpleNamespace(id=1, tier="B", is_guest=False, unreachable_at=None),
        "agent": None,
        "event_from_user": User(id=CUSTOMER, is_bot=False, first_name="Ann"),
        "event_chat": Chat(id=CUSTOMER, type="private"),
        # Command filters read the bot's name only for a text that starts with "/".
        "bot": Bot("42:TEST"),
    }


def _features() -> list[Any]:
    _, customers = get_routers()
    return [r for r in customers.sub_routers if r not in (fallback.customers_quick,
                                                          fallback.customers)]  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAKEN))
async def test_what_it_takes_no_feature_would_have_taken(case: str) -> None:
    message, conversation = TAKEN[case]
    data = await _data(conversation, None, None)
    assert await NoFeatureWants()(message, raw_state=None, open_conversation=conversation)
    for router in _features():
        for handler in router.message.handlers:
            wanted, _ = await handler.check(message, **data)
            # The relay of an open chat: with no prompt open it only calls converse, as
            # customer_message does.
            if wanted and handler.callback is not human.in_a_chat:
                pytest.fail(f"{router.name}.{handler.callback.__name__} wants {case}")


@pytest.mark.parametrize("case", sorted(LEFT))
async def test_it_leaves_the_features_their_messages(case: str) -> None:
    message, conversation, raw_state, awaiting = LEFT[case]
    assert not await NoFeatureWants()(
        message, raw_state=raw_state, open_conversation=conversation, awaiting_survey=awaiting
    )


def test_it_is_tried_first_and_ends_where_the_fallback_would() -> None:
    _, customers = get_routers()
    assert customers.sub_routers[0] is fallback.customers_quick
    (quick,) = fallback.customers_quick.message.handlers
    assert quick.callback is fallback.customer_message


# --- the agents' quick lane ---------------------------------------------------------------
AGENT_TAKEN = {
    "an answer": _message(text="your parcel left today"),
    "a photo": _message(photo=PHOTO),
    "a photo with a caption": _message(photo=PHOTO, caption="the label"),
    "a contact": _message(contact=CONTACT),
}
AGENT_LEFT = {
    "a command": (_message(text="/close"), None),
    "a caption command": (_message(photo=PHOTO, caption="/note seen"), None),
    "a care note being written": (_message(text="visited, all fine"), "CareNote:note"),
}


def _desk_features() -> list[Any]:
    agents, _ = get_routers()
    return [r for r in agents.sub_routers if r not in (fallback.agents_quick, fallback.agents)]


@pytest.mark.parametrize("case", sorted(AGENT_TAKEN))
async def test_what_the_agents_lane_takes_no_desk_feature_would_have(case: str) -> None:
    message = AGENT_TAKEN[case]
    data = await _data(None, None, None)
    data["agent"] = SimpleNamespace(id=1, role="supervisor", telegram_id=CUSTOMER)
    assert await NoDeskFeatureWants()(message, raw_state=None)
    for router in _desk_features():
        for handler in router.message.handlers:
            wanted, _ = await handler.check(message, **data)
            if wanted:
                pytest.fail(f"{router.name}.{handler.callback.__name__} wants {case}")


@pytest.mark.parametrize("case", sorted(AGENT_LEFT))
async def test_the_agents_lane_leaves_the_desk_features_their_messages(case: str) -> None:
    message, raw_state = AGENT_LEFT[case]
    assert not await NoDeskFeatureWants()(message, raw_state=raw_state)


def test_the_agents_lane_is_tried_first_and_ends_at_the_relay() -> None:
    agents, _ = get_routers()
    assert agents.sub_routers[0] is fallback.agents_quick
    (quick,) = fallback.agents_quick.message.handlers
    assert quick.callback is fallback.agent_message
