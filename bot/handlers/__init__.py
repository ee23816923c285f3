"""Routers, one per audience. Agents first: a registered agent never gets the customer flow."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import agent, customer, survey
from bot.handlers import queue as queue_handlers


def get_routers() -> list[Router]:
    # Surveys before the customer router: its catch-alls would swallow survey button presses
    # and follow-up comments.
    # Queue (/transfer, offers) before agent: agent's catch-alls would swallow them.
    return [queue_handlers.router, agent.router, survey.router, customer.router]
