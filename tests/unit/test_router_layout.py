"""The routers' layout keeps their order from deciding correctness (bot/handlers/__init__.py):
disjoint audiences, no catch-all among the features, each audience's fallback last."""

from __future__ import annotations

from types import SimpleNamespace

from bot.filters import IsAgent, IsCustomer
from bot.handlers import fallback, get_routers


def test_each_audience_ends_with_its_fallback() -> None:
    agents, customers = get_routers()
    assert agents.sub_routers[-1] is fallback.agents
    assert customers.sub_routers[-1] is fallback.customers


def test_no_feature_router_has_a_catch_all() -> None:
    for audience in get_routers():
        for feature in audience.sub_routers[:-1]:
            for observer in (feature.message, feature.callback_query, feature.inline_query):
                for handler in observer.handlers:
                    name = f"{feature.name}.{handler.callback.__name__}"
                    assert handler.filters, f"{name} takes everything: move it to fallback.py"


async def test_the_audiences_are_disjoint() -> None:
    agent, customer = SimpleNamespace(role="agent"), SimpleNamespace(is_guest=False)
    event = SimpleNamespace()
    # A registered agent who also has a customer row is an agent only.
    assert await IsAgent()(event, agent=agent)  # type: ignore[arg-type]
    assert not await IsCustomer()(event, customer=customer, agent=agent)  # type: ignore[arg-type]
    assert await IsCustomer()(event, customer=customer)  # type: ignore[arg-type]
    assert not await IsAgent()(event)  # type: ignore[arg-type]
