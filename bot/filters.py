"""Who an update is from, as decided by ``DbSessionMiddleware``."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from routing.store.models import Agent, Customer


class IsAgent(Filter):
    async def __call__(self, event: TelegramObject, agent: Agent | None = None) -> bool:
        return agent is not None


class IsSupervisor(Filter):
    async def __call__(self, event: TelegramObject, agent: Agent | None = None) -> bool:
        return agent is not None and agent.role == "supervisor"


class IsCustomer(Filter):
    async def __call__(self, event: TelegramObject, customer: Customer | None = None) -> bool:
        return customer is not None
