"""The handlers' routers: one per audience, each holding its features and then its fallback.

::

    dispatcher
    ├── agents      IsAgent()      first fallback.agents_quick,     then fallback.agents
    │                              features: queue, agent,
    │                              desk_tools, care, complaint
    └── customers   IsCustomer()   first fallback.customers_quick,  then fallback.customers
                                   features: survey, news,
                                   identify, selfservice, human,
                                   complaint

Why the order of routers no longer decides correctness:

- **Between audiences** the filters are disjoint (``IsCustomer`` excludes registered agents,
  bot/filters.py), so the dispatcher may try them in any order. Before, agents had to come
  first so that an agent never got the customer flow.
- **Among an audience's features** each matches only its own updates: its commands, its
  callback data prefix, its FSM state, and an explicit filter where two could both want a
  message (``~InAChat()`` on the prompts and the contact handler, ``~SurveyComment()`` on
  the relay of an open chat). So features may be listed in any order. Before, the survey
  and queue routers had to come before the customer and agent routers.
- **Inline queries** (``@bot`` + words) are filtered by audience like messages and,
  having no command or prefix a feature could match, are fallbacks' work: an agent's picks
  a canned reply (bot/handlers/desk_tools.py), anyone else's gets no results.
- **The quick lanes** (``fallback.customers_quick`` and ``agents_quick``, with
  ``bot.filters.NoFeatureWants`` and ``NoDeskFeatureWants``) take, before the features,
  only a message that none of them would take (most messages: a question, a message in an
  open chat, an agent's answer) and hand it to the handler the fallback would have reached,
  past no feature's filters; tests/unit/test_quick_lane.py checks every feature handler
  against what they let through.
- **Catch-alls** (stale buttons, unknown commands, free messages) exist only in
  bot/handlers/fallback.py, and :func:`_audience` always attaches an audience's fallback
  after its features.

The routers are built once, at import (aiogram attaches a router to one parent): tests that
build several dispatchers detach the two :func:`get_routers` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Router
from aiogram.filters import Filter

from bot.filters import IsAgent, IsCustomer
from bot.handlers import agent, care, complaint, customer, desk_tools, fallback, news, survey
from bot.handlers import queue as queue_handlers
from bot.middlewares import Preload


def _audience(name: str, who: Filter, features: Sequence[Router], last: Router) -> Router:
    router = Router(name=name)
    router.message.filter(who)
    router.callback_query.filter(who)
    router.inline_query.filter(who)
    router.include_routers(*features)
    router.include_router(last)  # always after every feature
    return router


_AGENTS = _audience(
    "agents",
    IsAgent(),
    [
        fallback.agents_quick,  # first: a message for a customer goes to the relay at once
        queue_handlers.router,
        agent.router,
        desk_tools.router,
        care.router,
        complaint.router,
    ],
    fallback.agents,
)
_CUSTOMERS = _audience(
    "customers",
    IsCustomer(),
    # customers_quick first: a message no feature wants goes to the fallback's handler at once.
    [fallback.customers_quick, survey.router, news.router, *customer.routers()],
    fallback.customers,
)
# Inner middlewares: they run for whichever handler of the audience takes the update.
_CUSTOMERS.message.middleware(customer.CustomerContextMiddleware())
_CUSTOMERS.callback_query.middleware(customer.CustomerContextMiddleware())
_CUSTOMERS.message.middleware(survey.ReachableAgain())

# Run by DbSessionMiddleware after the sender's lookup (see bot/middlewares.py).
PRELOADS: tuple[Preload, ...] = (survey.find_awaiting_comment,)


def get_routers() -> list[Router]:
    """The audiences' routers, for the dispatcher (in any order)."""
    return [_AGENTS, _CUSTOMERS]
