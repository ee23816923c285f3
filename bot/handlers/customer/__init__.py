"""Customers' feature routers, one module each, all taking a :class:`CustomerContext`:

- :mod:`.identify`: a shared phone number, an invitation link, a customer code;
- :mod:`.selfservice`: the menu tree, FAQ answers and search, order and tier actions;
- :mod:`.human`: asking for a person, and what is sent while a chat with one is open;
- :mod:`.complaint`: filing a complaint, and answering its follow-up.

bot/handlers/__init__.py puts them (with the survey router) under the customers' router,
whose :class:`CustomerContextMiddleware` builds each update's ``ctx``.
"""

from __future__ import annotations

from aiogram import Router

from bot.handlers.customer import complaint, human, identify, selfservice
from bot.handlers.customer.context import CustomerContext, CustomerContextMiddleware

__all__ = ["CustomerContext", "CustomerContextMiddleware", "routers"]


def routers() -> tuple[Router, ...]:
    return identify.router, selfservice.router, human.router, complaint.router
