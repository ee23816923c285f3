"""Who an update is from, and what it is for: the filters the routers are built on.

None of them queries the database. They read what ``DbSessionMiddleware`` loaded in the
update's one opening statement (bot/middlewares.py): ``agent``, ``customer``,
``open_conversation`` and ``awaiting_survey``. So a filter costs nothing on the hot path,
and the routers can check them on every update.

Why each is there (see bot/handlers/__init__.py for how the routers use them):

- :class:`IsAgent`: the agents' router. A registered, active agent gets the desk flow
  (claims, relaying to customers), never the customer flow.
- :class:`IsCustomer`: the customers' router. Everyone else in a private chat, and *not*
  an agent: the two audiences are disjoint, so which router the dispatcher tries first
  does not matter (before, the agents' router had to come first).
- :class:`IsSupervisor`: supervisor-only agent commands (``/stats``).
- :class:`InAChat`: the customer has a chat with a person open (queued or assigned). Then
  whatever they send is for that person: the prompts (an order number, a customer code)
  and the contact handler say ``~InAChat()`` instead of relying on being registered after
  the relay.
- :class:`SurveyComment`: the text answers a survey's follow-up question. The relay of an
  open chat says ``~SurveyComment()`` instead of relying on the survey router coming first.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, TelegramObject

from routing.store.models import Agent, Conversation, Customer


class IsAgent(Filter):
    async def __call__(self, event: TelegramObject, agent: Agent | None = None) -> bool:
        return agent is not None


class IsSupervisor(Filter):
    async def __call__(self, event: TelegramObject, agent: Agent | None = None) -> bool:
        return agent is not None and agent.role == "supervisor"


class IsCustomer(Filter):
    async def __call__(
        self,
        event: TelegramObject,
        customer: Customer | None = None,
        agent: Agent | None = None,
    ) -> bool:
        return customer is not None and agent is None


class InAChat(Filter):
    async def __call__(
        self, event: TelegramObject, open_conversation: Conversation | None = None
    ) -> bool:
        return open_conversation is not None


class SurveyComment(Filter):
    """Passes ``survey_id`` to the handler.

    ``awaiting_survey`` is set (by bot.handlers.survey.find_awaiting_comment, in the update's
    opening statement) only for a customer's plain text while a survey's follow-up question
    is open; the FSM state is read only then. A customer in the middle of another flow (an
    order number, say) is answering that, not the survey.
    """

    async def __call__(
        self,
        event: TelegramObject,
        awaiting_survey: int | None = None,
        state: FSMContext | None = None,
    ) -> bool | dict[str, Any]:
        if awaiting_survey is None:
            return False
        if state is not None and await state.get_state() is not None:
            return False
        return {"survey_id": awaiting_survey}


class NoFeatureWants(Filter):
    """A customer's message that none of the customers' feature routers takes, known from
    what the update's lookup and the FSM middleware already loaded: not a command (text or
    caption starting with "/"), not a shared contact outside a chat (identification), no
    conversation step pending (an FSM state: a code, an order number, a complaint), and not
    the comment a survey asked for.

    Such a message is the common case (a question for self-service, a message in an open
    chat) and goes straight to ``bot.handlers.fallback.customer_message``, where it would
    end anyway, instead of past every feature's filters first (bench/RESULTS.md, issue 19).
    tests/unit/test_quick_lane.py checks that no feature handler would have taken what
    this filter lets through.
    """

    async def __call__(
        self,
        event: TelegramObject,
        raw_state: str | None = None,
        open_conversation: Conversation | None = None,
        awaiting_survey: int | None = None,
    ) -> bool:
        if not _plain(event, raw_state) or awaiting_survey is not None:
            return False
        assert isinstance(event, Message)
        return event.contact is None or open_conversation is not None


class NoDeskFeatureWants(Filter):
    """An agent's message that none of the agents' feature routers takes: not a command
    and no conversation step pending (a care note being written). It is a message for a
    customer, and goes straight to ``bot.handlers.fallback.agent_message`` (the relay), as
    :class:`NoFeatureWants` does for customers; tests/unit/test_quick_lane.py checks it."""

    async def __call__(self, event: TelegramObject, raw_state: str | None = None) -> bool:
        return _plain(event, raw_state)


def _plain(event: TelegramObject, raw_state: str | None) -> bool:
    """A message that is not a command (text or caption starting with "/", as aiogram's
    Command filter reads it), with no FSM state set."""
    if not isinstance(event, Message) or raw_state is not None:
        return False
    said = event.text if event.text is not None else event.caption
    return said is None or not said.startswith("/")
